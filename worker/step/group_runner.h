// GroupRunner: one rank of a tp x pp worker group (DESIGN.md §2). The leader (world rank 0 =
// stage 0, tp 0) broadcasts each StepPlan to every rank; each stage runs its layers, a non-last
// stage sends its hidden states to the same tp_rank of the next stage, and the last stage's tp 0
// sends the StepResult to the leader. Plans execute strictly in step_id order. v1 runs one step
// at a time through the pipeline (pp steps in flight come with the coordinator's lookahead).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/parallel_config.h"
#include "common/step_executor.h"
#include "worker/comm/comm.h"
#include "worker/step/step_runner.h"

namespace olmo::step {

class GroupRunner {
 public:
  // world: every rank (rank = ParallelConfig rank); pipeline: this tp_rank's stages (rank =
  // pp_rank). hidden_size: floats per token between stages.
  GroupRunner(StepRunner* runner, const ParallelConfig& config, comm::Comm* world,
              comm::Comm* pipeline, int64_t hidden_size);

  // Leader only: runs the plan on the whole group; returns the last stage's result.
  absl::StatusOr<StepResult> LeadStep(const StepPlan& plan);
  // Leader only: releases every follower from Serve().
  absl::Status Shutdown();
  // Followers: executes broadcast plans until the leader's Shutdown().
  absl::Status Serve();

 private:
  // Runs this rank's stage of `plan`; on the last stage's tp 0 returns the result.
  absl::StatusOr<StepResult> RunStage(const StepPlan& plan);

  StepRunner* runner_;
  ParallelConfig config_;
  comm::Comm* world_;
  comm::Comm* pipeline_;
  int64_t hidden_size_;
  std::vector<float> hidden_in_, hidden_out_;
};

// The leader's StepExecutor over a GroupRunner.
class GroupExecutor final : public StepExecutor {
 public:
  GroupExecutor(GroupRunner* group, const ExecutorInfo& info) : group_(group), info_(info) {}
  const ExecutorInfo& info() const override { return info_; }
  absl::StatusOr<StepResult> Execute(const StepPlan& plan) override {
    return group_->LeadStep(plan);
  }

 private:
  GroupRunner* group_;
  ExecutorInfo info_;
};

}  // namespace olmo::step
