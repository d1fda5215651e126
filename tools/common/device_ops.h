// The compute backend of a worker rank, chosen by name: "cpu" (the default: LocalWorker's CPU
// ops) or "cuda" (the CUDA backend on the GPU of this rank's local rank, modulo the visible
// devices, so one GPU per task under `srun --gpus-per-task=1` works too).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/ops.h"

namespace olmo::tools {

using OpsFactory = std::function<absl::StatusOr<std::unique_ptr<kernels::Ops>>()>;

// An empty factory for "cpu". InvalidArgument for an unknown name; Unimplemented for "cuda" in a
// build without CUDA; FailedPrecondition when no GPU is visible.
absl::StatusOr<OpsFactory> MakeOpsFactory(const std::string& device, int local_rank);

// This process's rank on its node from the launcher's environment (Open MPI, Slurm), else 0.
int LocalRank();

// "cpu", or the GPU's name and memory, for the attach request.
std::string DeviceDescription(const std::string& device, int local_rank, int64_t* memory_bytes);

}  // namespace olmo::tools
