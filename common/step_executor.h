// StepExecutor: how the engine runs a StepPlan on a worker group (DESIGN.md §1). Implementations:
// in-process (worker/step, one rank), MPI leader (a local group), gRPC (a remote group).
#pragma once

#include <cstdint>
#include <deque>

#include "absl/status/statusor.h"
#include "common/plan.h"

namespace olmo {

// What a worker group offers the scheduler, fixed at attach time.
struct ExecutorInfo {
  int64_t num_blocks[kNumKvGroups] = {0, 0};  // KV blocks per group (minimum over ranks)
  int64_t block_size = 0;                     // tokens per block
  int64_t vocab_size = 0;
};

class StepExecutor {
 public:
  virtual ~StepExecutor() = default;
  virtual const ExecutorInfo& info() const = 0;
  // Runs one step. Plans are executed strictly in step_id order. A non-OK status means the
  // group failed (the engine treats it as lost); per-step model errors come in StepResult::status.
  virtual absl::StatusOr<StepResult> Execute(const StepPlan& plan) = 0;

  // Pipelined use: up to max_in_flight() plans are submitted (in step_id order) before the oldest
  // result is collected; results come back in submission order. The default runs Execute at
  // Submit, so a synchronous executor needs nothing more.
  virtual int max_in_flight() const { return 1; }
  virtual absl::Status Submit(const StepPlan& plan) {
    absl::StatusOr<StepResult> r = Execute(plan);
    if (!r.ok()) return r.status();
    done_.push_back(std::move(*r));
    return absl::OkStatus();
  }
  virtual absl::StatusOr<StepResult> Collect() {
    if (done_.empty()) return absl::FailedPreconditionError("Collect without a submitted step");
    StepResult r = std::move(done_.front());
    done_.pop_front();
    return r;
  }

 private:
  std::deque<StepResult> done_;
};

}  // namespace olmo
