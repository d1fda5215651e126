// GroupRunner: one rank of a tp x pp worker group (DESIGN.md §2).
//  - The leader (world rank 0 = stage 0, tp 0) broadcasts each StepPlan inside stage 0's TP group
//    only; every stage forwards the plan with its hidden states to the same tp_rank of the next
//    stage; stages execute plans strictly in step_id order.
//  - The last stage's tp 0 sends each StepResult to the leader, where a receiver thread takes it,
//    so the pipeline never waits on the leader: up to pp steps (over disjoint sequences, chosen by
//    the engine) are in flight, each stage working on a different one.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/parallel_config.h"
#include "common/step_executor.h"
#include "worker/comm/comm.h"
#include "worker/step/step_runner.h"

namespace olmo::step {

class GroupRunner {
 public:
  // world: every rank (rank = ParallelConfig rank); tp: this stage's TP group (rank = tp_rank);
  // pipeline: this tp_rank's stages (rank = pp_rank). hidden_size: floats per token between
  // stages. step_timeout_s: the watchdog timeout of a follower's communication during a step
  // (waiting for the next plan is unbounded); <= 0 disables it.
  // Fault injection for tests: the environment variable OLMO_FAULT_STEP_ERROR="RANK:STEP" makes
  // world rank RANK fail step STEP with an InternalError before running it, as an error on one
  // rank alone (an out-of-memory, a device fault) would; "RANK:STEP:after" fails it after its
  // stage ran (an op error found at the step's last synchronization).
  // At tp > 1 the last stage's ranks pass a barrier (host Comm) before a result leaves the group,
  // so tp rank 0 never returns a step that another rank failed.
  GroupRunner(StepRunner* runner, const ParallelConfig& config, comm::Comm* world, comm::Comm* tp,
              comm::Comm* pipeline, int64_t hidden_size, double step_timeout_s);
  ~GroupRunner();

  // Leader only. Submit runs stage 0 of the plan and hands it down the pipeline; Collect returns
  // the oldest submitted step's result.
  absl::Status Submit(const StepPlan& plan);
  absl::StatusOr<StepResult> Collect();
  // Leader only: stops every follower (their Serve returns) and the receiver thread.
  absl::Status Shutdown();
  // Followers: executes plans until the leader's Shutdown().
  absl::Status Serve();
  // Whether a step failed on this rank (its stage, or a plan/hidden-state transfer). The peers
  // may then be waiting in a collective of that step, so the group cannot be shut down in order:
  // the caller ends the job (comm::AbortWorld) instead of calling Shutdown or returning.
  bool step_failed() const { return step_failed_.load(); }

 private:
  // Runs this rank's stage (hidden states from the previous stage in hidden_in_) and forwards
  // plan + hidden states to the next stage. Returns the result on the last stage.
  absl::StatusOr<StepResult> RunAndForward(const StepPlan& plan, const std::string& encoded);
  absl::StatusOr<StepResult> RunAndForwardUnchecked(const StepPlan& plan,
                                                    const std::string& encoded);
  absl::Status ForwardShutdown();
  void ReceiveResults();  // leader's receiver thread (pp > 1)

  StepRunner* runner_;
  ParallelConfig config_;
  comm::Comm* world_;
  comm::Comm* tp_;
  comm::Comm* pipeline_;
  int64_t hidden_size_;
  double step_timeout_s_;
  int64_t fault_step_ = -1;   // OLMO_FAULT_STEP_ERROR's step on this rank, -1 = none
  bool fault_after_ = false;  // ... failed after its stage ran
  std::atomic<bool> step_failed_{false};
  std::vector<float> hidden_in_, hidden_out_;

  // Leader: results in submission order.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<absl::StatusOr<StepResult>> results_;
  std::thread receiver_;
};

// The leader's StepExecutor over a GroupRunner: pipelined, up to pp steps in flight.
class GroupExecutor final : public StepExecutor {
 public:
  GroupExecutor(GroupRunner* group, const ExecutorInfo& info, int pp)
      : group_(group), info_(info), pp_(pp) {}
  const ExecutorInfo& info() const override { return info_; }
  int max_in_flight() const override { return pp_; }
  absl::Status Submit(const StepPlan& plan) override { return group_->Submit(plan); }
  absl::StatusOr<StepResult> Collect() override { return group_->Collect(); }
  absl::StatusOr<StepResult> Execute(const StepPlan& plan) override {
    absl::Status st = group_->Submit(plan);
    if (!st.ok()) return st;
    return group_->Collect();
  }

 private:
  GroupRunner* group_;
  ExecutorInfo info_;
  int pp_;
};

}  // namespace olmo::step
