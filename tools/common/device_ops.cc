#include "tools/common/device_ops.h"

#include <cstdlib>

#include "absl/strings/str_format.h"

#ifdef OLMO_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#endif

namespace olmo::tools {

int LocalRank() {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v);
  }
  return 0;
}

absl::StatusOr<OpsFactory> MakeOpsFactory(const std::string& device, int local_rank) {
  if (device == "cpu") return OpsFactory();
  if (device != "cuda") {
    return absl::InvalidArgumentError(absl::StrFormat("--device: '%s' is not cpu or cuda", device));
  }
#ifdef OLMO_WITH_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    return absl::FailedPreconditionError("--device cuda: no CUDA device is visible");
  }
  const int ordinal = local_rank % count;
  return OpsFactory([ordinal] { return kernels::MakeCudaOps({ordinal, nullptr}); });
#else
  (void)local_rank;
  return absl::UnimplementedError("--device cuda: this build has no CUDA backend (OLMO_CUDA=OFF)");
#endif
}

std::string DeviceDescription(const std::string& device, int local_rank, int64_t* memory_bytes) {
  *memory_bytes = 0;
#ifdef OLMO_WITH_CUDA
  int count = 0;
  if (device == "cuda" && cudaGetDeviceCount(&count) == cudaSuccess && count > 0) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, local_rank % count) == cudaSuccess) {
      *memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
      return prop.name;
    }
  }
#endif
  (void)local_rank;
  return device;
}

}  // namespace olmo::tools
