#include "worker/comm/nccl_comm.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/comm/comm_error.h"

namespace olmo::comm {
namespace {

absl::Status NcclErrorAt(ncclResult_t rc, ncclComm_t comm, const char* call, const char* file,
                         int line) {
  const char* detail = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  return ErrorAt(absl::StatusCode::kInternal, file, line,
                 absl::StrCat(call, " failed: ", ncclGetErrorString(rc),
                              detail != nullptr && *detail ? absl::StrCat(" (", detail, ")") : ""));
}

absl::Status CudaErrorAt(cudaError_t rc, const char* call, const char* file, int line) {
  return ErrorAt(
      absl::StatusCode::kInternal, file, line,
      absl::StrCat(call, " failed: ", cudaGetErrorName(rc), ": ", cudaGetErrorString(rc)));
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

#define OLMO_NCCL_RETURN_IF_ERROR(comm, call)                               \
  do {                                                                      \
    ncclResult_t olmo_nccl_rc_ = (call);                                    \
    if (olmo_nccl_rc_ != ncclSuccess) {                                     \
      return NcclErrorAt(olmo_nccl_rc_, (comm), #call, __FILE__, __LINE__); \
    }                                                                       \
  } while (0)

#define OLMO_CUDA_RETURN_IF_ERROR(call)                             \
  do {                                                              \
    cudaError_t olmo_cuda_rc_ = (call);                             \
    if (olmo_cuda_rc_ != cudaSuccess) {                             \
      return CudaErrorAt(olmo_cuda_rc_, #call, __FILE__, __LINE__); \
    }                                                               \
  } while (0)

absl::StatusOr<std::unique_ptr<NcclComm>> NcclComm::Create(Comm& bootstrap, cudaStream_t stream) {
  if (bootstrap.memory_space() != MemorySpace::kHost) {
    return OLMO_COMM_ERROR(absl::StatusCode::kInvalidArgument,
                           "NcclComm::Create: the bootstrap Comm must take host buffers");
  }
  // Rank 0 broadcasts the id with whether it got one, so that a failure there fails every rank
  // instead of leaving the others waiting in the broadcast or in ncclCommInitRank.
  struct {
    int32_t ok = 0;
    ncclUniqueId id{};
  } boot;
  ncclResult_t id_rc = ncclSuccess;
  if (bootstrap.rank() == 0) {
    id_rc = ncclGetUniqueId(&boot.id);
    boot.ok = id_rc == ncclSuccess ? 1 : 0;
  }
  OLMO_RETURN_IF_ERROR(bootstrap.Broadcast(&boot, sizeof(boot), 0));
  if (boot.ok == 0) {
    if (bootstrap.rank() == 0) {
      return NcclErrorAt(id_rc, nullptr, "ncclGetUniqueId(&boot.id)", __FILE__, __LINE__);
    }
    return OLMO_COMM_ERROR(absl::StatusCode::kFailedPrecondition,
                           "NcclComm::Create: rank 0 could not create the NCCL unique id");
  }
  const ncclUniqueId& id = boot.id;
  ncclComm_t comm = nullptr;
  OLMO_NCCL_RETURN_IF_ERROR(nullptr,
                            ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()));
  float* scratch = nullptr;
  cudaError_t rc = cudaMalloc(&scratch, sizeof(float));
  if (rc != cudaSuccess) {
    ncclCommDestroy(comm);
    return CudaErrorAt(rc, "cudaMalloc(&scratch, sizeof(float))", __FILE__, __LINE__);
  }
  return std::unique_ptr<NcclComm>(
      new NcclComm(comm, bootstrap.rank(), bootstrap.size(), stream, scratch));
}

NcclComm::~NcclComm() {
  if (comm_ != nullptr) ncclCommDestroy(comm_);
  if (scratch_ != nullptr) cudaFree(scratch_);
}

absl::Status NcclComm::AllReduceSum(float* data, int64_t n) {
  auto start = std::chrono::steady_clock::now();
  OLMO_RETURN_IF_ERROR(CheckBytes(n, "AllReduceSum"));
  if (size_ > 1 && n > 0) {
    OLMO_NCCL_RETURN_IF_ERROR(comm_, ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat32,
                                                   ncclSum, comm_, stream_));
  }
  int64_t bytes = size_ > 1 ? n * static_cast<int64_t>(sizeof(float)) : 0;
  Record(CollectiveKind::kAllReduce, bytes, bytes, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status NcclComm::AllGather(const void* send, int64_t bytes_per_rank, void* recv) {
  auto start = std::chrono::steady_clock::now();
  OLMO_RETURN_IF_ERROR(CheckBytes(bytes_per_rank, "AllGather"));
  if (bytes_per_rank > 0) {
    // NCCL treats send == recv + rank * bytes as in place, and at size 1 copies send to recv.
    OLMO_NCCL_RETURN_IF_ERROR(comm_, ncclAllGather(send, recv, static_cast<size_t>(bytes_per_rank),
                                                   ncclInt8, comm_, stream_));
  }
  int64_t sent = size_ > 1 ? bytes_per_rank : 0;
  Record(CollectiveKind::kAllGather, sent, sent * (size_ - 1), SecondsSince(start));
  return absl::OkStatus();
}

absl::Status NcclComm::Broadcast(void* data, int64_t bytes, int root) {
  auto start = std::chrono::steady_clock::now();
  OLMO_RETURN_IF_ERROR(CheckBytes(bytes, "Broadcast"));
  OLMO_RETURN_IF_ERROR(CheckPeer(root, "Broadcast"));
  if (size_ > 1 && bytes > 0) {
    OLMO_NCCL_RETURN_IF_ERROR(comm_, ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclInt8,
                                                   root, comm_, stream_));
  }
  int64_t moved = size_ > 1 ? bytes : 0;
  Record(CollectiveKind::kBroadcast, rank_ == root ? moved : 0, rank_ == root ? 0 : moved,
         SecondsSince(start));
  return absl::OkStatus();
}

absl::Status NcclComm::Send(const void* data, int64_t bytes, int dst, int tag) {
  auto start = std::chrono::steady_clock::now();
  OLMO_RETURN_IF_ERROR(CheckBytes(bytes, "Send"));
  OLMO_RETURN_IF_ERROR(CheckPeer(dst, "Send"));
  if (tag < 0) return OLMO_COMM_ERROR(absl::StatusCode::kInvalidArgument, "Send: negative tag");
  if (bytes > 0) {
    OLMO_NCCL_RETURN_IF_ERROR(
        comm_, ncclSend(data, static_cast<size_t>(bytes), ncclInt8, dst, comm_, stream_));
  }
  Record(CollectiveKind::kSend, bytes, 0, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status NcclComm::Recv(void* data, int64_t bytes, int src, int tag) {
  auto start = std::chrono::steady_clock::now();
  OLMO_RETURN_IF_ERROR(CheckBytes(bytes, "Recv"));
  OLMO_RETURN_IF_ERROR(CheckPeer(src, "Recv"));
  if (tag < 0) return OLMO_COMM_ERROR(absl::StatusCode::kInvalidArgument, "Recv: negative tag");
  if (bytes > 0) {
    OLMO_NCCL_RETURN_IF_ERROR(
        comm_, ncclRecv(data, static_cast<size_t>(bytes), ncclInt8, src, comm_, stream_));
  }
  Record(CollectiveKind::kRecv, 0, bytes, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status NcclComm::Barrier() {
  auto start = std::chrono::steady_clock::now();
  if (size_ > 1) {
    OLMO_NCCL_RETURN_IF_ERROR(
        comm_, ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_));
  }
  OLMO_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  Record(CollectiveKind::kBarrier, 0, 0, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status NcclComm::CheckAsyncError() {
  ncclResult_t async = ncclSuccess;
  OLMO_NCCL_RETURN_IF_ERROR(comm_, ncclCommGetAsyncError(comm_, &async));
  if (async != ncclSuccess) {
    return NcclErrorAt(async, comm_, "ncclCommGetAsyncError", __FILE__, __LINE__);
  }
  return absl::OkStatus();
}

}  // namespace olmo::comm
