#include "tools/common/device_ops.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_format.h"

#ifdef OLMO_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "worker/comm/nccl_comm.h"
#endif
#include "spdlog/spdlog.h"

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

absl::StatusOr<bool> ChooseNccl(const std::string& mode, const std::string& device,
                                const std::vector<TpRankDevice>& ranks) {
  if (mode != "auto" && mode != "nccl" && mode != "host") {
    return absl::InvalidArgumentError(
        absl::StrFormat("--collectives: '%s' is not auto, nccl or host", mode));
  }
  for (size_t r = 0; r < ranks.size(); ++r) {
    if (!ranks[r].backend_ok) {
      return absl::FailedPreconditionError(
          absl::StrFormat("tp rank %d could not start its %s backend (see its log)", r, device));
    }
  }
  if (mode == "host" || ranks.size() < 2) return false;
  if (device != "cuda") {
    if (mode == "nccl") {
      return absl::InvalidArgumentError("--collectives nccl needs --device cuda");
    }
    return false;
  }
  for (size_t a = 0; a < ranks.size(); ++a) {
    for (size_t b = a + 1; b < ranks.size(); ++b) {
      if (ranks[a].host != ranks[b].host || ranks[a].device != ranks[b].device) continue;
      const std::string msg =
          absl::StrFormat("tp ranks %d and %d share the GPU %s on %s; NCCL needs one GPU per rank",
                          a, b, ranks[a].device, ranks[a].host);
      if (mode == "nccl") return absl::InvalidArgumentError(msg + " (use --collectives host)");
      spdlog::warn("{}: the TP collectives are staged through host memory over MPI (slow)", msg);
      return false;
    }
  }
  return true;
}

absl::StatusOr<CollectivesFactory> MakeCollectivesFactory(const std::string& mode,
                                                          const std::string& device,
                                                          comm::Comm* tp_host) {
  // Validates the mode (and nccl on the CPU) before any rank loads anything.
  {
    std::vector<TpRankDevice> probe(2);
    for (auto& p : probe) p.backend_ok = true;
    probe[1].device = "other";
    auto valid = ChooseNccl(mode, device, probe);
    if (!valid.ok()) return valid.status();
  }
  if (tp_host == nullptr || tp_host->size() == 1 || mode == "host" ||
      (device != "cuda" && mode == "auto")) {
    return CollectivesFactory();
  }
#ifdef OLMO_WITH_CUDA
  return CollectivesFactory(
      [mode, device, tp_host](kernels::Ops* ops) -> absl::StatusOr<std::unique_ptr<comm::Comm>> {
        // Fixed-size report: backend flag, host name, PCI bus id.
        struct Report {
          int32_t ok;
          char host[64];
          char bus[32];
        } mine{};
        mine.ok = ops != nullptr && kernels::CudaOpsStream(ops) != nullptr ? 1 : 0;
        gethostname(mine.host, sizeof(mine.host) - 1);
        int dev = 0;
        if (mine.ok != 0 &&
            (cudaGetDevice(&dev) != cudaSuccess ||
             cudaDeviceGetPCIBusId(mine.bus, sizeof(mine.bus) - 1, dev) != cudaSuccess)) {
          mine.ok = 0;
        }
        std::vector<Report> all(static_cast<size_t>(tp_host->size()));
        absl::Status st = tp_host->AllGather(&mine, sizeof(mine), all.data());
        if (!st.ok()) return st;
        std::vector<TpRankDevice> ranks;
        for (const Report& r : all) ranks.push_back({r.ok != 0, r.host, r.bus});
        absl::StatusOr<bool> nccl = ChooseNccl(mode, device, ranks);
        if (!nccl.ok()) return nccl.status();
        if (!*nccl) return std::unique_ptr<comm::Comm>();
        auto comm = comm::NcclComm::Create(*tp_host, kernels::CudaOpsStream(ops));
        if (!comm.ok()) return comm.status();
        spdlog::info("TP collectives: NCCL over {} ranks on the backend's stream", tp_host->size());
        return std::unique_ptr<comm::Comm>(std::move(*comm));
      });
#else
  if (mode == "auto") return CollectivesFactory();  // --device cuda itself reports the build
  return absl::InvalidArgumentError("--collectives nccl: this build has no CUDA (OLMO_CUDA=OFF)");
#endif
}

absl::StatusOr<DType> ParseKvDtype(const std::string& name) {
  if (name == "f32") return DType::kF32;
  if (name == "bf16") return DType::kBF16;
  return absl::InvalidArgumentError(absl::StrFormat("--kv-dtype: '%s' is not f32 or bf16", name));
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
