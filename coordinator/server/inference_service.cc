#include "coordinator/server/inference_service.h"

#include <mutex>

#include "spdlog/spdlog.h"

namespace olmo::server {
namespace {

using service::Clock;

v1::FinishReason ToProto(requests::Finish f) {
  switch (f) {
    case requests::Finish::kStop:
      return v1::FINISH_REASON_STOP;
    case requests::Finish::kLength:
      return v1::FINISH_REASON_LENGTH;
    case requests::Finish::kAbort:
      return v1::FINISH_REASON_ABORT;
    case requests::Finish::kShutdown:
      return v1::FINISH_REASON_SHUTDOWN;
    default:
      return v1::FINISH_REASON_UNSPECIFIED;
  }
}

class GenerateReactor;

// The stream's side of a request: coalesces events into one pending response and keeps at most
// one write in flight. A recursive mutex, because gRPC may run a reaction inline.
class GenerateStream final : public service::StreamSink {
 public:
  explicit GenerateStream(std::string request_id) : request_id_(std::move(request_id)) {}

  void Attach(grpc::ServerWriteReactor<v1::GenerateResponse>* reactor) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    reactor_ = reactor;
  }
  void set_request_id(const std::string& id) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    request_id_ = id;
  }

  void Push(const requests::OutputEvent& e) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (finish_called_ || finish_pending_) return;
    if (!has_pending_) {
      pending_.Clear();
      pending_.set_request_id(request_id_);
      has_pending_ = true;
    }
    for (size_t i = 0; i < e.tokens.size(); ++i) {
      v1::TokenOutput* t = pending_.add_tokens();
      t->set_id(e.tokens[i].id);
      t->set_logprob(e.tokens[i].logprob);
      if (i < e.top_logprobs.size()) {
        for (const TokenLogprob& tl : e.top_logprobs[i]) {
          v1::TopLogprob* p = t->add_top_logprobs();
          p->set_id(tl.id);
          p->set_logprob(tl.logprob);
        }
      }
    }
    pending_.mutable_text()->append(e.text);
    if (e.finish != requests::Finish::kNone) {
      pending_.set_finish_reason(ToProto(e.finish));
      pending_.set_matched_stop(e.matched_stop);
      pending_.mutable_usage()->set_prompt_tokens(e.prompt_tokens);
      pending_.mutable_usage()->set_completion_tokens(e.completion_tokens);
      finish_pending_ = true;
      final_ = grpc::Status::OK;
    }
    Pump();
  }

  void Close(const absl::Status& status) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (finish_called_) return;
    finish_pending_ = true;
    final_ = ToGrpc(status);
    has_pending_ = false;  // an error status ends the stream at once
    Pump();
  }

  double stalled_seconds() const override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (!writing_) return 0.0;
    return std::chrono::duration<double>(Clock::now() - write_started_).count();
  }

  void OnWriteDone(bool ok) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    writing_ = false;
    if (!ok) {  // the client is gone; OnCancel follows
      has_pending_ = false;
      if (!finish_pending_) {
        finish_pending_ = true;
        final_ = grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke");
      }
    }
    Pump();
  }

  void Detach() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    reactor_ = nullptr;
  }

 private:
  // Starts the next write, or the finish once nothing is left to write. Locked.
  void Pump() {
    if (reactor_ == nullptr || writing_ || finish_called_) return;
    if (has_pending_) {
      in_flight_.Swap(&pending_);
      has_pending_ = false;
      writing_ = true;
      write_started_ = Clock::now();
      reactor_->StartWrite(&in_flight_);
      return;
    }
    if (finish_pending_) {
      finish_called_ = true;
      reactor_->Finish(final_);
    }
  }

  mutable std::recursive_mutex mu_;
  std::string request_id_;
  grpc::ServerWriteReactor<v1::GenerateResponse>* reactor_ = nullptr;
  v1::GenerateResponse pending_, in_flight_;
  bool has_pending_ = false;
  bool writing_ = false;
  bool finish_pending_ = false;
  bool finish_called_ = false;
  grpc::Status final_;
  Clock::time_point write_started_;
};

class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(service::Coordinator* coordinator, std::shared_ptr<GenerateStream> stream)
      : coordinator_(coordinator), stream_(std::move(stream)) {
    stream_->Attach(this);
  }
  void set_request(std::shared_ptr<service::ActiveRequest> r) {
    std::lock_guard<std::mutex> lock(mu_);
    request_ = r;
  }
  void OnWriteDone(bool ok) override { stream_->OnWriteDone(ok); }
  void OnCancel() override {
    std::shared_ptr<service::ActiveRequest> r;
    {
      std::lock_guard<std::mutex> lock(mu_);
      r = request_.lock();
    }
    const absl::Status st = absl::CancelledError("the client cancelled or its deadline passed");
    if (r) {
      coordinator_->Cancel(r, st);
    } else {
      stream_->Close(st);
    }
  }
  void OnDone() override {
    stream_->Detach();
    delete this;
  }

 private:
  service::Coordinator* coordinator_;
  std::shared_ptr<GenerateStream> stream_;
  std::mutex mu_;
  std::weak_ptr<service::ActiveRequest> request_;
};

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const grpc::Status& st) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(st);
  return r;
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Start(
    grpc::CallbackServerContext* ctx, const std::string& request_id,
    absl::StatusOr<service::BuiltRequest> built) {
  auto stream = std::make_shared<GenerateStream>(request_id);
  auto* reactor = new GenerateReactor(coordinator_, stream);
  if (!built.ok()) {
    spdlog::info("request {}: rejected: {}", request_id.empty() ? "-" : request_id,
                 built.status().ToString());
    stream->Close(built.status());
    return reactor;
  }
  Clock::time_point deadline = coordinator_->DefaultDeadline();
  const auto client_deadline = ctx->deadline();
  if (client_deadline != std::chrono::system_clock::time_point::max()) {
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  client_deadline - std::chrono::system_clock::now());
  }
  auto r = coordinator_->Submit(std::move(*built), request_id, deadline, stream);
  if (!r.ok()) {
    stream->Close(r.status());
    return reactor;
  }
  stream->set_request_id((*r)->request_id());
  reactor->set_request(*r);
  if (ctx->IsCancelled()) coordinator_->Cancel(*r, absl::CancelledError("cancelled"));
  return reactor;
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) {
  return Start(ctx, request->request_id(), coordinator_->builder().FromGenerate(*request));
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Chat(
    grpc::CallbackServerContext* ctx, const v1::ChatRequest* request) {
  return Start(ctx, request->request_id(), coordinator_->builder().FromChat(*request));
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx,
                                                     const v1::TokenizeRequest* request,
                                                     v1::TokenizeResponse* response) {
  auto ids = coordinator_->tokenizer().Encode(request->text(),
                                              request->allow_special_tokens()
                                                  ? tokenizer::AddedTokens::kMatch
                                                  : tokenizer::AddedTokens::kPlain,
                                              tokenizer::InvalidUtf8::kReject);
  if (!ids.ok()) {
    return Done(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "text: " + std::string(ids.status().message())));
  }
  for (int32_t id : *ids) response->add_ids(id);
  return Done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* ctx,
                                                       const v1::DetokenizeRequest* request,
                                                       v1::DetokenizeResponse* response) {
  std::vector<int32_t> ids(request->ids().begin(), request->ids().end());
  for (int32_t id : ids) {
    if (id < 0 || id >= coordinator_->tokenizer().vocab_size()) {
      return Done(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                    "ids: " + std::to_string(id) + " is outside the vocabulary"));
    }
  }
  auto text = coordinator_->tokenizer().Decode(ids, request->skip_special_tokens());
  if (!text.ok()) return Done(ctx, ToGrpc(text.status()));
  response->set_text(*text);
  return Done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                         const v1::GetModelInfoRequest*,
                                                         v1::ModelInfo* response) {
  *response = coordinator_->ModelInfo();
  return Done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::GetStats(grpc::CallbackServerContext* ctx,
                                                     const v1::GetStatsRequest*,
                                                     v1::Stats* response) {
  *response = coordinator_->Stats();
  return Done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::Abort(grpc::CallbackServerContext* ctx,
                                                  const v1::AbortRequest* request,
                                                  v1::AbortResponse* response) {
  response->set_found(coordinator_->Abort(request->request_id()));
  return Done(ctx, grpc::Status::OK);
}

}  // namespace olmo::server
