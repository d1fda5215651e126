#include "coordinator/service/group_session.h"

#include "absl/strings/str_format.h"
#include "proto/plan_proto.h"
#include "spdlog/spdlog.h"

namespace olmo::service {

absl::Status GrpcExecutor::Submit(const StepPlan& plan) {
  v1::CoordinatorMessage msg;
  server::ToProto(plan, msg.mutable_plan());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failed_.ok()) return failed_;
  }
  if (!stream_->Write(msg)) {
    return absl::UnavailableError(
        absl::StrFormat("control stream broken while sending step %d", plan.step_id));
  }
  return absl::OkStatus();
}

absl::StatusOr<StepResult> GrpcExecutor::Collect() {
  std::unique_lock<std::mutex> lock(mu_);
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(step_timeout_s_));
  if (!cv_.wait_until(lock, deadline, [&] { return !results_.empty() || !failed_.ok(); })) {
    return absl::DeadlineExceededError(
        absl::StrFormat("no step result within %.1f s: the group is hung", step_timeout_s_));
  }
  if (!results_.empty()) {
    StepResult r = std::move(results_.front());
    results_.pop_front();
    return r;
  }
  return failed_;
}

absl::StatusOr<StepResult> GrpcExecutor::Execute(const StepPlan& plan) {
  absl::Status st = Submit(plan);
  if (!st.ok()) return st;
  return Collect();
}

void GrpcExecutor::OnResult(StepResult result) {
  std::lock_guard<std::mutex> lock(mu_);
  results_.push_back(std::move(result));
  cv_.notify_all();
}

void GrpcExecutor::Fail(const absl::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failed_.ok()) failed_ = status;
  cv_.notify_all();
}

GroupSession::GroupSession(int id, std::string name, ControlStream* stream, ExecutorInfo info,
                           int pp, engine::SchedulerConfig config, double step_timeout_s,
                           Callbacks callbacks)
    : id_(id),
      name_(std::move(name)),
      stream_(stream),
      executor_(stream, info, pp, step_timeout_s),
      engine_(&executor_, config),
      max_model_len_(engine_.max_model_len()),
      callbacks_(std::move(callbacks)) {
  last_message_ns_ = Clock::now().time_since_epoch().count();
  Publish();
}

GroupSession::~GroupSession() {
  Fail(absl::CancelledError("group session destroyed"));
  Join();
}

void GroupSession::Start() {
  thread_ = std::thread([this] { Loop(); });
}

bool GroupSession::Add(std::shared_ptr<ActiveRequest> request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!alive_ || !failure_.ok()) return false;
  adds_.push_back(std::move(request));
  ++load_;
  cv_.notify_all();
  return true;
}

void GroupSession::Abort(int64_t seq_id) {
  std::lock_guard<std::mutex> lock(mu_);
  aborts_.push_back(seq_id);
  cv_.notify_all();
}

void GroupSession::OnMessage(const v1::WorkerMessage& message) {
  last_message_ns_ = Clock::now().time_since_epoch().count();
  if (message.has_result()) {
    absl::StatusOr<StepResult> r = server::FromProto(message.result());
    if (!r.ok()) {
      Fail(absl::InternalError(absl::StrFormat("group %s sent a bad result: %s", name_,
                                               std::string(r.status().message()))));
      return;
    }
    executor_.OnResult(std::move(*r));
  }
}

void GroupSession::Fail(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failure_.ok()) failure_ = status;
    cv_.notify_all();
  }
  executor_.Fail(status);
}

void GroupSession::Join() {
  if (thread_.joinable()) thread_.join();
}

void GroupSession::SendShutdown() {
  v1::CoordinatorMessage msg;
  msg.mutable_shutdown();
  std::lock_guard<std::mutex> lock(stream_mu_);
  if (stream_ != nullptr) stream_->Write(msg);
}

void GroupSession::DetachStream() {
  std::lock_guard<std::mutex> lock(stream_mu_);
  stream_ = nullptr;
}

GroupSnapshot GroupSession::Snapshot() const {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  return snapshot_;
}

void GroupSession::Publish() {
  GroupSnapshot s;
  s.waiting = engine_.scheduler().num_waiting();
  s.running = engine_.scheduler().num_running();
  for (int g = 0; g < kNumKvGroups; ++g) {
    const auto& b = engine_.blocks();
    s.cached[g] = b.num_cached_free(g);
    s.free[g] = b.num_free(g) - s.cached[g];
    s.used[g] = b.num_blocks(g) - b.num_free(g);
  }
  s.scheduler = engine_.scheduler().stats();
  s.max_model_len = engine_.max_model_len();
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  snapshot_ = s;
}

void GroupSession::Loop() {
  absl::Status failure;
  std::vector<std::shared_ptr<ActiveRequest>> adds;
  while (true) {
    std::vector<int64_t> aborts;
    adds.clear();
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return !failure_.ok() || !adds_.empty() || !aborts_.empty() || engine_.HasWork();
      });
      if (!failure_.ok()) {
        failure = failure_;
        adds.swap(adds_);
        break;
      }
      adds.swap(adds_);
      aborts.swap(aborts_);
    }
    for (auto& r : adds) {
      if (r->done()) {
        --load_;
        callbacks_.finished(r);
        continue;
      }
      absl::Status st = engine_.Add(r->EngineRequest());
      if (!st.ok()) {
        --load_;
        r->Fail(st);
        callbacks_.finished(r);
        continue;
      }
      running_[r->seq_id()] = r;
    }
    adds.clear();
    for (int64_t seq_id : aborts) {
      engine_.Abort(seq_id);
      auto it = running_.find(seq_id);
      if (it == running_.end()) continue;
      std::shared_ptr<ActiveRequest> r = it->second;
      running_.erase(it);
      --load_;
      callbacks_.finished(r);
    }
    if (engine_.HasWork()) {
      absl::StatusOr<std::vector<engine::SeqUpdate>> updates = engine_.Step();
      if (!updates.ok()) {
        failure = updates.status();
        break;
      }
      for (const engine::SeqUpdate& u : *updates) {
        auto it = running_.find(u.seq_id);
        if (it == running_.end()) continue;
        std::shared_ptr<ActiveRequest> r = it->second;
        if (r->AddUpdate(u)) callbacks_.wake(r);
        if (u.finish != engine::FinishReason::kNone) {
          running_.erase(it);
          --load_;
          callbacks_.finished(r);
        }
      }
    }
    Publish();
  }
  alive_ = false;
  Publish();
  executor_.Fail(failure);
  {
    std::lock_guard<std::mutex> lock(stream_mu_);
    if (stream_ != nullptr) stream_->Cancel();
  }
  std::vector<std::shared_ptr<ActiveRequest>> lost;
  for (auto& [seq_id, r] : running_) {
    if (!r->done()) lost.push_back(r);
  }
  running_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    adds.insert(adds.end(), adds_.begin(), adds_.end());
    adds_.clear();
  }
  for (auto& r : adds) {
    if (!r->done()) lost.push_back(r);
  }
  load_ = 0;
  spdlog::warn("group {} ({}) lost: {}; {} requests go back to the router", id_, name_,
               std::string(failure.message()), lost.size());
  callbacks_.lost(id_, std::move(lost), failure);
}

}  // namespace olmo::service
