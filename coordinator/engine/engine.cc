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
  StepPlan plan = scheduler_->Schedule();
  if (plan.seqs.empty() && scheduler_->HasWork() && scheduler_->num_running() == 0) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "no waiting request fits the KV cache (%d blocks of %d tokens)",
        blocks_->num_blocks(kKvGroupFull), blocks_->block_size()));
  }
  absl::StatusOr<StepResult> result = executor_->Execute(plan);
  if (!result.ok()) return result.status();
  if (!result->status.ok()) return result->status;
  return scheduler_->OnResult(plan, *result);
}

}  // namespace olmo::engine
