// The compute backend of a worker rank, chosen by name: "cpu" (the default: LocalWorker's CPU
// ops) or "cuda" (the CUDA backend on the GPU of this rank's local rank, modulo the visible
// devices, so a task that sees one GPU (`srun --gpus-per-task=1`) works too).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/ops.h"
#include "worker/comm/comm.h"

namespace olmo::tools {

using OpsFactory = std::function<absl::StatusOr<std::unique_ptr<kernels::Ops>>()>;

// An empty factory for "cpu". InvalidArgument for an unknown name; Unimplemented for "cuda" in a
// build without CUDA; FailedPrecondition when no GPU is visible.
absl::StatusOr<OpsFactory> MakeOpsFactory(const std::string& device, int local_rank);

// Where the TP group's collectives run (--collectives): "nccl" (NCCL on the backend's stream,
// device buffers), "host" (the host Comm, MPI: device buffers staged through host memory), or
// "auto" (nccl for a GPU group whose ranks each have their own GPU, else host).
using CollectivesFactory =
    std::function<absl::StatusOr<std::unique_ptr<comm::Comm>>(kernels::Ops* ops)>;

// What one TP rank reports before the collectives are chosen.
struct TpRankDevice {
  bool backend_ok = false;
  std::string host;    // host name
  std::string device;  // the GPU's PCI bus id; empty on the CPU
};

// The choice, made identically on every rank from every rank's report: true = NCCL, false = the
// host Comm. FailedPrecondition when a rank's backend failed (so no rank starts NCCL alone);
// InvalidArgument when "nccl" is asked for but cannot work (CPU ranks, or two ranks on one GPU:
// NCCL refuses) or the mode is unknown.
absl::StatusOr<bool> ChooseNccl(const std::string& mode, const std::string& device,
                                const std::vector<TpRankDevice>& ranks);

// LocalWorkerOptions::make_collectives for this rank: null (keep the host Comm) when tp == 1,
// on the CPU with mode auto/host, or with mode host. Otherwise a collective call over `tp_host`
// (every TP rank must make it): the ranks exchange TpRankDevice, choose, and build an NcclComm
// bootstrapped over `tp_host` on the CUDA backend's stream. InvalidArgument for a bad mode, and
// for nccl in a build without CUDA.
absl::StatusOr<CollectivesFactory> MakeCollectivesFactory(const std::string& mode,
                                                          const std::string& device,
                                                          comm::Comm* tp_host);

// --kv-dtype: "f32" or "bf16" (InvalidArgument otherwise).
absl::StatusOr<DType> ParseKvDtype(const std::string& name);

// This process's rank on its node from the launcher's environment (Open MPI, Slurm), else 0.
int LocalRank();

// "cpu", or the GPU's name and memory, for the attach request.
std::string DeviceDescription(const std::string& device, int local_rank, int64_t* memory_bytes);

}  // namespace olmo::tools
