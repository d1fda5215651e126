// StepExecutor: how the engine runs a StepPlan on a worker group (DESIGN.md §1). Implementations:
// in-process (worker/step, one rank), MPI leader (a local group), gRPC (a remote group).
#pragma once

#include <cstdint>

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
};

}  // namespace olmo
