// NcclComm: Comm over NCCL for DEVICE buffers (built only with OLMO_CUDA). Every call is
// enqueued on the cudaStream_t given at construction and returns without a host sync, so the
// collectives are stream-ordered and graph-capturable (DESIGN.md §3); only Barrier synchronizes
// the stream. Counters' seconds are therefore host enqueue time, not transfer time.
//
// Bootstrap: rank 0 of `bootstrap` (a host Comm over the same ranks, e.g. an MpiComm TP group)
// creates the ncclUniqueId and broadcasts it; every rank then calls ncclCommInitRank with its
// bootstrap rank. NCCL has no tags: Send/Recv match in issue order per peer, and `tag` is only
// checked to be >= 0. Asynchronous NCCL failures are reported by CheckAsyncError().
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>

#include "absl/status/statusor.h"
#include "worker/comm/comm.h"

namespace olmo::comm {

class NcclComm final : public Comm {
 public:
  // Collective over `bootstrap` (every rank must call it). The current CUDA device must already
  // be the one this rank uses; `stream` must outlive the NcclComm.
  static absl::StatusOr<std::unique_ptr<NcclComm>> Create(Comm& bootstrap, cudaStream_t stream);
  ~NcclComm() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MemorySpace memory_space() const override { return MemorySpace::kDevice; }
  cudaStream_t stream() const { return stream_; }

  absl::Status AllReduceSum(float* data, int64_t n) override;
  absl::Status AllGather(const void* send, int64_t bytes_per_rank, void* recv) override;
  absl::Status Broadcast(void* data, int64_t bytes, int root) override;
  absl::Status Send(const void* data, int64_t bytes, int dst, int tag) override;
  absl::Status Recv(void* data, int64_t bytes, int src, int tag) override;
  // Synchronizes the group: a 1-float all-reduce on a device scratch, then a stream sync.
  absl::Status Barrier() override;

  // The communicator's asynchronous error state (a peer died, a network failure, ...).
  absl::Status CheckAsyncError();

 private:
  NcclComm(ncclComm_t comm, int rank, int size, cudaStream_t stream, float* scratch)
      : comm_(comm), rank_(rank), size_(size), stream_(stream), scratch_(scratch) {}

  ncclComm_t comm_;
  int rank_;
  int size_;
  cudaStream_t stream_;
  float* scratch_;  // f32 [1] on the device, for Barrier
};

}  // namespace olmo::comm
