// Engine: the Scheduler and BlockManager of one worker group driven over a StepExecutor. One
// Step() = schedule, execute, apply results. olmo-generate loops over it; the coordinator runs the
// same engine on its scheduler thread.
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/step_executor.h"
#include "coordinator/engine/block_manager.h"
#include "coordinator/engine/scheduler.h"

namespace olmo::engine {

class Engine {
 public:
  // Block pools come from the executor's info. config.max_model_len is capped by the KV capacity
  // of one group.
  Engine(StepExecutor* executor, SchedulerConfig config);

  absl::Status Add(const Request& request) { return scheduler_->Add(request); }
  void Abort(int64_t seq_id) { scheduler_->Abort(seq_id); }
  bool HasWork() const { return scheduler_->HasWork() || !in_flight_.empty(); }
  // Submits plans until the executor's max_in_flight() are outstanding (disjoint sequences), then
  // collects the oldest result and applies it. An executor failure or a model error is returned
  // as the status.
  absl::StatusOr<std::vector<SeqUpdate>> Step();
  // Most steps that were in flight at once so far (a pipeline of pp stages reaches up to pp).
  int max_in_flight_seen() const { return max_in_flight_seen_; }

  const Scheduler& scheduler() const { return *scheduler_; }
  const BlockManager& blocks() const { return *blocks_; }
  int64_t max_model_len() const { return config_.max_model_len; }

 private:
  StepExecutor* executor_;
  SchedulerConfig config_;
  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::deque<StepPlan> in_flight_;
  int max_in_flight_seen_ = 0;
};

}  // namespace olmo::engine
