// StepPlan / StepResult <-> olmo.v1 control messages (the gRPC StepExecutor's wire format).
#pragma once

#include "absl/status/statusor.h"
#include "common/plan.h"
#include "olmo/v1/control.pb.h"

namespace olmo::server {

void ToProto(const StepPlan& plan, v1::StepPlan* out);
// InvalidArgument for a message that cannot be a plan (e.g. not exactly two block deltas).
absl::StatusOr<StepPlan> FromProto(const v1::StepPlan& msg);

void ToProto(const StepResult& result, v1::StepResult* out);
absl::StatusOr<StepResult> FromProto(const v1::StepResult& msg);

}  // namespace olmo::server
