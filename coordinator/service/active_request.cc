#include "coordinator/service/active_request.h"

namespace olmo::service {

engine::Request ActiveRequest::EngineRequest() const {
  engine::Request r = request_;
  r.seq_id = seq_id_;
  std::lock_guard<std::mutex> lock(mu_);
  r.resumed_output_ids = generated_;
  return r;
}

bool ActiveRequest::AddUpdate(const engine::SeqUpdate& update) {
  std::lock_guard<std::mutex> lock(mu_);
  if (update.has_token) generated_.push_back(update.token_id);
  if (done_) return false;
  pending_.push_back(update);
  if (scheduled_) return false;
  scheduled_ = true;
  return true;
}

bool ActiveRequest::AddEnd(requests::Finish reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (done_) return false;
  pending_.push_back(reason);
  if (scheduled_) return false;
  scheduled_ = true;
  return true;
}

void ActiveRequest::SetSink(std::shared_ptr<StreamSink> sink) {
  std::lock_guard<std::mutex> lock(mu_);
  sink_ = std::move(sink);
}

void ActiveRequest::Fail(const absl::Status& status) {
  std::shared_ptr<StreamSink> sink;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_.exchange(true)) return;
    sink = sink_;
    pending_.clear();
  }
  if (sink) sink->Close(status);
}

bool ActiveRequest::Process() {
  while (true) {
    std::vector<Work> work;
    std::shared_ptr<StreamSink> sink;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pending_.empty() || done_) {
        scheduled_ = false;
        return done_;
      }
      work.swap(pending_);
      sink = sink_;
    }
    // Coalesce everything queued into one event: one stream write per pool pass.
    requests::OutputEvent merged;
    bool any = false;
    for (const Work& w : work) {
      requests::OutputEvent e;
      if (const auto* u = std::get_if<engine::SeqUpdate>(&w)) {
        e = processor_.Apply(*u);
      } else {
        e = processor_.End(std::get<requests::Finish>(w));
      }
      if (e.tokens.empty() && e.text.empty() && e.finish == requests::Finish::kNone) continue;
      if (!any) {
        merged = std::move(e);
        any = true;
      } else {
        merged.tokens.insert(merged.tokens.end(), e.tokens.begin(), e.tokens.end());
        merged.top_logprobs.insert(merged.top_logprobs.end(), e.top_logprobs.begin(),
                                   e.top_logprobs.end());
        merged.text += e.text;
        merged.finish = e.finish;
        merged.matched_stop = e.matched_stop;
        merged.completion_tokens = e.completion_tokens;
      }
      if (processor_.finished()) break;
    }
    if (!merged.tokens.empty()) {
      tokens_out += static_cast<int32_t>(merged.tokens.size());
      if (!first_token_time) first_token_time = Clock::now();
    }
    const bool finished = processor_.finished();
    if (finished) {
      needs_engine_abort_ = processor_.needs_abort();
      done_ = true;
    }
    if (any && sink) sink->Push(merged);
    if (finished) {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.clear();
      scheduled_ = false;
      return true;
    }
  }
}

}  // namespace olmo::service
