#include "coordinator/engine/engine.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace olmo::engine {

Engine::Engine(StepExecutor* executor, SchedulerConfig config)
    : executor_(executor), config_(config) {
  const ExecutorInfo& info = executor->info();
  blocks_ = std::make_unique<BlockManager>(
      info.block_size, std::array<int64_t, kNumKvGroups>{info.num_blocks[kKvGroupFull],
                                                         info.num_blocks[kKvGroupSliding]});
  int64_t capacity = info.block_size * std::min(info.num_blocks[kKvGroupFull],
                                                info.num_blocks[kKvGroupSliding]);
  config_.max_model_len =
      config_.max_model_len > 0 ? std::min(config_.max_model_len, capacity) : capacity;
  scheduler_ = std::make_unique<Scheduler>(config_, blocks_.get());
}

absl::StatusOr<std::vector<SeqUpdate>> Engine::Step() {
  const int limit = std::max(1, executor_->max_in_flight());
  if (limit > 1) {  // micro-batches: spread the sequences over the steps in flight
    int64_t active = scheduler_->num_running() + scheduler_->num_waiting();
    scheduler_->set_step_seq_limit(std::max<int64_t>(1, (active + limit - 1) / limit));
  }
  while (static_cast<int>(in_flight_.size()) < limit) {
    StepPlan plan = scheduler_->Schedule();
    if (Scheduler::IsEmpty(plan)) break;
    absl::Status st = executor_->Submit(plan);
    if (!st.ok()) return st;
    in_flight_.push_back(std::move(plan));
    max_in_flight_seen_ = std::max(max_in_flight_seen_, static_cast<int>(in_flight_.size()));
  }
  if (in_flight_.empty()) {
    if (!scheduler_->HasWork()) return std::vector<SeqUpdate>{};
    return absl::ResourceExhaustedError(absl::StrFormat(
        "no waiting request fits the KV cache (%d blocks of %d tokens)",
        blocks_->num_blocks(kKvGroupFull), blocks_->block_size()));
  }
  absl::StatusOr<StepResult> result = executor_->Collect();
  if (!result.ok()) return result.status();
  if (!result->status.ok()) return result->status;
  StepPlan plan = std::move(in_flight_.front());
  in_flight_.pop_front();
  if (result->step_id != plan.step_id) {
    return absl::InternalError(absl::StrFormat("result of step %d arrived while expecting %d",
                                               result->step_id, plan.step_id));
  }
  return scheduler_->OnResult(plan, *result);
}

}  // namespace olmo::engine
