#include "coordinator/server/control_service.h"

#include <mutex>

#include "coordinator/server/inference_service.h"
#include "spdlog/spdlog.h"

namespace olmo::server {
namespace {

class StreamAdapter final : public service::ControlStream {
 public:
  StreamAdapter(grpc::ServerContext* ctx,
                grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::WorkerMessage>* stream)
      : ctx_(ctx), stream_(stream) {}
  bool Write(const v1::CoordinatorMessage& message) override {
    std::lock_guard<std::mutex> lock(mu_);  // one writer at a time on a sync stream
    return stream_->Write(message);
  }
  void Cancel() override { ctx_->TryCancel(); }

 private:
  grpc::ServerContext* ctx_;
  grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::WorkerMessage>* stream_;
  std::mutex mu_;
};

}  // namespace

grpc::Status ControlService::Attach(grpc::ServerContext* ctx, const v1::AttachRequest* request,
                                    v1::ShardPlan* response) {
  auto plan = coordinator_->Attach(*request);
  if (!plan.ok()) {
    spdlog::warn("attach from {} refused: {}", ctx->peer(), plan.status().ToString());
    return ToGrpc(plan.status());
  }
  *response = std::move(*plan);
  return grpc::Status::OK;
}

grpc::Status ControlService::Run(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::WorkerMessage>* stream) {
  v1::WorkerMessage first;
  if (!stream->Read(&first)) return grpc::Status(grpc::StatusCode::CANCELLED, "no ready");
  if (!first.has_ready()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be Ready");
  }
  StreamAdapter adapter(ctx, stream);
  auto group = coordinator_->AddGroup(&adapter, first.ready());
  if (!group.ok()) return ToGrpc(group.status());
  v1::WorkerMessage msg;
  while (stream->Read(&msg)) (*group)->OnMessage(msg);
  coordinator_->RemoveGroup(*group, absl::UnavailableError("the group's control stream ended"));
  return grpc::Status::OK;
}

}  // namespace olmo::server
