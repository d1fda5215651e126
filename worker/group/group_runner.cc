#include "worker/group/group_runner.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/plan_codec.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"
#include "worker/comm/mpi_comm.h"

namespace olmo::step {
namespace {

constexpr int kTagPlan = 11;
constexpr int kTagHidden = 12;
constexpr int kTagResult = 13;
constexpr int64_t kShutdown = 0;      // plan length that stops the pipeline
constexpr int64_t kResultsDone = -1;  // result length that stops the leader's receiver

int64_t PlanTokens(const StepPlan& plan) {
  int64_t n = 0;
  for (const SeqStep& s : plan.seqs) n += static_cast<int64_t>(s.token_ids.size());
  return n;
}

// OLMO_FAULT_STEP_ERROR="RANK:STEP[:after]": sets the step this rank must fail (-1 if none, or
// unparsable), and whether it fails after running its stage (as an op error found at the step's
// last synchronization would) rather than before.
void ParseFaultStep(int rank, int64_t* fault_step, bool* fault_after) {
  *fault_step = -1;
  *fault_after = false;
  const char* env = std::getenv("OLMO_FAULT_STEP_ERROR");
  if (env == nullptr) return;
  std::vector<std::string> parts = absl::StrSplit(env, ':');
  int fault_rank = 0;
  int64_t step = 0;
  if (parts.size() < 2 || parts.size() > 3 || !absl::SimpleAtoi(parts[0], &fault_rank) ||
      !absl::SimpleAtoi(parts[1], &step) || (parts.size() == 3 && parts[2] != "after")) {
    spdlog::warn("ignoring OLMO_FAULT_STEP_ERROR='{}': expected RANK:STEP or RANK:STEP:after", env);
    return;
  }
  if (fault_rank != rank) return;
  *fault_step = step;
  *fault_after = parts.size() == 3;
}

}  // namespace

GroupRunner::GroupRunner(StepRunner* runner, const ParallelConfig& config, comm::Comm* world,
                         comm::Comm* tp, comm::Comm* pipeline, int64_t hidden_size,
                         double step_timeout_s)
    : runner_(runner),
      config_(config),
      world_(world),
      tp_(tp),
      pipeline_(pipeline),
      hidden_size_(hidden_size),
      step_timeout_s_(step_timeout_s) {
  ParseFaultStep(config_.rank, &fault_step_, &fault_after_);
  if (config_.rank == 0 && config_.pp > 1) receiver_ = std::thread([this] { ReceiveResults(); });
}

GroupRunner::~GroupRunner() {
  if (receiver_.joinable()) receiver_.join();
}

void GroupRunner::ReceiveResults() {
  comm::ScopedCommTimeout unbounded(0);  // waiting here without bound is normal
  const int last_leader = (config_.pp - 1) * config_.tp;
  while (true) {
    int64_t n = 0;
    absl::Status st = world_->Recv(&n, sizeof(n), last_leader, kTagResult);
    if (st.ok() && n == kResultsDone) return;
    absl::StatusOr<StepResult> r = absl::UnknownError("no result");
    if (st.ok()) {
      std::string bytes(static_cast<size_t>(n), '\0');
      st = world_->Recv(bytes.data(), n, last_leader, kTagResult);
      if (st.ok()) r = DecodeResult(bytes);
    }
    if (!st.ok()) r = st;
    {
      std::lock_guard<std::mutex> lock(mu_);
      results_.push_back(std::move(r));
    }
    cv_.notify_one();
    if (!st.ok()) return;
  }
}

absl::StatusOr<StepResult> GroupRunner::RunAndForward(const StepPlan& plan,
                                                      const std::string& encoded) {
  absl::StatusOr<StepResult> result = RunAndForwardUnchecked(plan, encoded);
  if (result.ok() && result->status.ok() && fault_after_ && plan.step_id == fault_step_) {
    result = absl::InternalError(
        absl::StrFormat("rank %d: injected fault after step %d (OLMO_FAULT_STEP_ERROR)",
                        config_.rank, plan.step_id));
  }
  if (!result.ok() || !result->status.ok()) {
    step_failed_ = true;
    return result;
  }
  // A result leaves the group only once every rank of the last stage finished the step: an op
  // error that one rank finds at its last synchronization (after its collectives ran on stale
  // data) must not let tp rank 0 return tokens built on that data. A rank that failed never
  // arrives; it ends the job (AbortWorld) and this barrier with it.
  if (config_.is_last_stage() && config_.tp > 1) OLMO_RETURN_IF_ERROR(tp_->Barrier());
  return result;
}

absl::StatusOr<StepResult> GroupRunner::RunAndForwardUnchecked(const StepPlan& plan,
                                                               const std::string& encoded) {
  world_->SetStepId(plan.step_id);
  if (plan.step_id == fault_step_ && !fault_after_) {
    return absl::InternalError(absl::StrFormat(
        "rank %d: injected fault at step %d (OLMO_FAULT_STEP_ERROR)", config_.rank, plan.step_id));
  }
  const float* in = config_.is_first_stage() ? nullptr : hidden_in_.data();
  OLMO_ASSIGN_OR_RETURN(StepResult result, runner_->ExecuteStage(plan, in, &hidden_out_));
  if (!config_.is_last_stage()) {
    if (!result.status.ok()) return result.status;  // a stage error ends the group
    const int next = config_.pp_rank() + 1;
    int64_t n = static_cast<int64_t>(encoded.size());
    OLMO_RETURN_IF_ERROR(pipeline_->Send(&n, sizeof(n), next, kTagPlan));
    OLMO_RETURN_IF_ERROR(pipeline_->Send(encoded.data(), n, next, kTagPlan));
    OLMO_RETURN_IF_ERROR(pipeline_->Send(hidden_out_.data(),
                                         static_cast<int64_t>(hidden_out_.size() * sizeof(float)),
                                         next, kTagHidden));
  }
  return result;
}

absl::Status GroupRunner::Submit(const StepPlan& plan) {
  if (step_failed_) {
    return absl::FailedPreconditionError(
        absl::StrFormat("step %d not run: an earlier step failed on this rank", plan.step_id));
  }
  std::string encoded = EncodePlan(plan);
  int64_t n = static_cast<int64_t>(encoded.size());
  OLMO_RETURN_IF_ERROR(tp_->Broadcast(&n, sizeof(n), 0));
  OLMO_RETURN_IF_ERROR(tp_->Broadcast(encoded.data(), n, 0));
  absl::StatusOr<StepResult> r = RunAndForward(plan, encoded);
  if (config_.pp == 1) {
    std::lock_guard<std::mutex> lock(mu_);
    results_.push_back(std::move(r));
    return absl::OkStatus();
  }
  return r.status();
}

absl::StatusOr<StepResult> GroupRunner::Collect() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !results_.empty(); });
  absl::StatusOr<StepResult> r = std::move(results_.front());
  results_.pop_front();
  return r;
}

absl::Status GroupRunner::ForwardShutdown() {
  if (!config_.is_last_stage()) {
    int64_t n = kShutdown;
    return pipeline_->Send(&n, sizeof(n), config_.pp_rank() + 1, kTagPlan);
  }
  if (config_.pp > 1 && config_.tp_rank() == 0) {
    int64_t n = kResultsDone;
    return world_->Send(&n, sizeof(n), 0, kTagResult);
  }
  return absl::OkStatus();
}

absl::Status GroupRunner::Shutdown() {
  int64_t n = kShutdown;
  OLMO_RETURN_IF_ERROR(tp_->Broadcast(&n, sizeof(n), 0));
  absl::Status st = ForwardShutdown();
  if (receiver_.joinable()) receiver_.join();
  return st;
}

absl::Status GroupRunner::Serve() {
  comm::ScopedCommTimeout unbounded(0);  // idle between steps is normal; steps are watched below
  while (true) {
    int64_t n = 0;
    std::string encoded;
    if (config_.is_first_stage()) {
      OLMO_RETURN_IF_ERROR(tp_->Broadcast(&n, sizeof(n), 0));
      if (n == kShutdown) return ForwardShutdown();
      encoded.resize(static_cast<size_t>(n));
      OLMO_RETURN_IF_ERROR(tp_->Broadcast(encoded.data(), n, 0));
    } else {
      const int prev = config_.pp_rank() - 1;
      OLMO_RETURN_IF_ERROR(pipeline_->Recv(&n, sizeof(n), prev, kTagPlan));
      if (n == kShutdown) return ForwardShutdown();
      encoded.resize(static_cast<size_t>(n));
      OLMO_RETURN_IF_ERROR(pipeline_->Recv(encoded.data(), n, prev, kTagPlan));
    }
    OLMO_ASSIGN_OR_RETURN(StepPlan plan, DecodePlan(encoded));
    if (!config_.is_first_stage()) {
      hidden_in_.resize(static_cast<size_t>(PlanTokens(plan) * hidden_size_));
      OLMO_RETURN_IF_ERROR(pipeline_->Recv(hidden_in_.data(),
                                           static_cast<int64_t>(hidden_in_.size() * sizeof(float)),
                                           config_.pp_rank() - 1, kTagHidden));
    }
    absl::StatusOr<StepResult> result;
    {
      comm::ScopedCommTimeout watched(step_timeout_s_);
      result = RunAndForward(plan, encoded);
    }
    if (!result.ok()) return result.status();
    if (config_.is_last_stage() && config_.tp_rank() == 0 && config_.pp > 1) {
      std::string out = EncodeResult(*result);
      int64_t len = static_cast<int64_t>(out.size());
      OLMO_RETURN_IF_ERROR(world_->Send(&len, sizeof(len), 0, kTagResult));
      OLMO_RETURN_IF_ERROR(world_->Send(out.data(), len, 0, kTagResult));
    }
    // A failed step ends the group: its ranks no longer agree on what ran.
    if (!result->status.ok()) return result->status;
  }
}

}  // namespace olmo::step
