#include "worker/step/group_runner.h"

#include "absl/strings/str_format.h"
#include "common/plan_codec.h"
#include "common/status_macros.h"

namespace olmo::step {
namespace {

constexpr int kTagHidden = 11;
constexpr int kTagResult = 12;

int64_t PlanTokens(const StepPlan& plan) {
  int64_t n = 0;
  for (const SeqStep& s : plan.seqs) n += static_cast<int64_t>(s.token_ids.size());
  return n;
}

}  // namespace

GroupRunner::GroupRunner(StepRunner* runner, const ParallelConfig& config, comm::Comm* world,
                         comm::Comm* pipeline, int64_t hidden_size)
    : runner_(runner), config_(config), world_(world), pipeline_(pipeline),
      hidden_size_(hidden_size) {}

absl::StatusOr<StepResult> GroupRunner::RunStage(const StepPlan& plan) {
  world_->SetStepId(plan.step_id);
  const int64_t bytes = PlanTokens(plan) * hidden_size_ * static_cast<int64_t>(sizeof(float));
  const float* in = nullptr;
  if (!config_.is_first_stage()) {
    hidden_in_.resize(static_cast<size_t>(bytes / sizeof(float)));
    OLMO_RETURN_IF_ERROR(pipeline_->Recv(hidden_in_.data(), bytes, config_.pp_rank() - 1, kTagHidden));
    in = hidden_in_.data();
  }
  OLMO_ASSIGN_OR_RETURN(StepResult result, runner_->ExecuteStage(plan, in, &hidden_out_));
  if (!config_.is_last_stage()) {
    if (!result.status.ok()) return result.status;  // a stage error ends the group
    OLMO_RETURN_IF_ERROR(
        pipeline_->Send(hidden_out_.data(), bytes, config_.pp_rank() + 1, kTagHidden));
  }
  return result;
}

absl::StatusOr<StepResult> GroupRunner::LeadStep(const StepPlan& plan) {
  std::string encoded = EncodePlan(plan);
  int64_t length = static_cast<int64_t>(encoded.size());
  OLMO_RETURN_IF_ERROR(world_->Broadcast(&length, sizeof(length), 0));
  OLMO_RETURN_IF_ERROR(world_->Broadcast(encoded.data(), length, 0));
  OLMO_ASSIGN_OR_RETURN(StepResult local, RunStage(plan));
  if (config_.pp == 1) return local;
  // The last stage's tp 0 has the result.
  const int last_leader = (config_.pp - 1) * config_.tp;
  int64_t n = 0;
  OLMO_RETURN_IF_ERROR(world_->Recv(&n, sizeof(n), last_leader, kTagResult));
  std::string bytes(static_cast<size_t>(n), '\0');
  OLMO_RETURN_IF_ERROR(world_->Recv(bytes.data(), n, last_leader, kTagResult));
  return DecodeResult(bytes);
}

absl::Status GroupRunner::Shutdown() {
  int64_t length = 0;
  return world_->Broadcast(&length, sizeof(length), 0);
}

absl::Status GroupRunner::Serve() {
  while (true) {
    int64_t length = 0;
    OLMO_RETURN_IF_ERROR(world_->Broadcast(&length, sizeof(length), 0));
    if (length == 0) return absl::OkStatus();
    std::string bytes(static_cast<size_t>(length), '\0');
    OLMO_RETURN_IF_ERROR(world_->Broadcast(bytes.data(), length, 0));
    OLMO_ASSIGN_OR_RETURN(StepPlan plan, DecodePlan(bytes));
    OLMO_ASSIGN_OR_RETURN(StepResult result, RunStage(plan));
    if (config_.is_last_stage() && config_.tp_rank() == 0 && config_.pp > 1) {
      std::string out = EncodeResult(result);
      int64_t n = static_cast<int64_t>(out.size());
      OLMO_RETURN_IF_ERROR(world_->Send(&n, sizeof(n), 0, kTagResult));
      OLMO_RETURN_IF_ERROR(world_->Send(out.data(), n, 0, kTagResult));
    }
    if (!result.status.ok() && !config_.is_last_stage()) return result.status;
  }
}

}  // namespace olmo::step
