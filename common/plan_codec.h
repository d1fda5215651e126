// Compact binary encoding of StepPlan and StepResult for the worker group's transport (MPI
// broadcast inside stage 0's TP group, stage-to-stage plan headers, results to the leader).
// Little-endian, length-prefixed; Decode validates every length against the buffer.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/plan.h"

namespace olmo {

std::string EncodePlan(const StepPlan& plan);
absl::StatusOr<StepPlan> DecodePlan(std::string_view bytes);

std::string EncodeResult(const StepResult& result);
absl::StatusOr<StepResult> DecodeResult(std::string_view bytes);

}  // namespace olmo
