// Comm: the collectives a worker group needs (DESIGN.md §2-3), behind one interface so model code
// never calls MPI or NCCL directly (convention 2). Implementations:
//   SelfComm  (this file)  size 1, host buffers, no MPI; every collective is a no-op or local copy.
//   MpiComm   (mpi_comm.h) host buffers over an MPI communicator, with a hang watchdog.
//   NcclComm  (nccl_comm.h, OLMO_CUDA only) device buffers, stream-ordered on one cudaStream_t.
// memory_space() says where the buffers passed to a Comm must live.
//
// Every call is blocking for host Comms (returns when the local buffer may be reused / holds the
// result) and stream-ordered for device Comms. Errors come back as absl::Status whose message
// starts with "file:line:" of the failing library call and carries the MPI/NCCL error string.
//
// Counters: per collective kind, the number of calls, the payload bytes this rank sent to and
// received from other ranks (logical payload, not the algorithm's wire traffic; 0 at size 1),
// and the seconds spent in the call (host wall time; for stream-ordered Comms the enqueue time).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace olmo::comm {

enum class CollectiveKind : int {
  kAllReduce = 0,
  kAllGather,
  kBroadcast,
  kSend,
  kRecv,
  kBarrier,
};
inline constexpr int kNumCollectiveKinds = 6;
const char* CollectiveKindName(CollectiveKind kind);

enum class MemorySpace { kHost, kDevice };

struct CollectiveStats {
  int64_t calls = 0;
  int64_t bytes_sent = 0;      // payload bytes this rank contributed to other ranks
  int64_t bytes_received = 0;  // payload bytes this rank received from other ranks
  double seconds = 0.0;        // time inside the calls
};

struct CommStats {
  std::array<CollectiveStats, kNumCollectiveKinds> by_kind{};

  const CollectiveStats& operator[](CollectiveKind k) const { return by_kind[static_cast<int>(k)]; }
  int64_t total_bytes_sent() const;
  int64_t total_bytes_received() const;
  double total_seconds() const;
  // One line per kind with calls > 0, e.g. "allreduce calls=3 sent=12B recv=12B 0.001s".
  std::string ToString() const;
};

class Comm {
 public:
  virtual ~Comm() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual MemorySpace memory_space() const = 0;

  // data: f32 [n], in place; every rank ends with the element-wise sum over ranks.
  virtual absl::Status AllReduceSum(float* data, int64_t n) = 0;
  // send: bytes_per_rank bytes; recv: size() * bytes_per_rank bytes, rank r's block at
  // r * bytes_per_rank. send may alias recv + rank() * bytes_per_rank.
  virtual absl::Status AllGather(const void* send, int64_t bytes_per_rank, void* recv) = 0;
  // data: bytes bytes; root's contents end up on every rank.
  virtual absl::Status Broadcast(void* data, int64_t bytes, int root) = 0;
  // Point-to-point, matched by (peer, tag) in order. bytes must equal on both sides.
  virtual absl::Status Send(const void* data, int64_t bytes, int dst, int tag) = 0;
  virtual absl::Status Recv(void* data, int64_t bytes, int src, int tag) = 0;
  virtual absl::Status Barrier() = 0;

  // The step being executed, for hang reports (the watchdog logs the last one set).
  virtual void SetStepId(int64_t step_id) {}

  // A consistent snapshot of the counters; safe to call from any thread.
  CommStats stats() const;
  void ResetStats();

 protected:
  // Adds one call of `kind` to the counters (implementations call it after each call).
  void Record(CollectiveKind kind, int64_t bytes_sent, int64_t bytes_received, double seconds);
  // Argument checks shared by every implementation; "op" names the call in the message.
  absl::Status CheckPeer(int peer, const char* op) const;
  static absl::Status CheckBytes(int64_t bytes, const char* op);

 private:
  mutable std::mutex stats_mu_;
  CommStats stats_;
};

// A rank alone: AllReduce and Barrier do nothing, AllGather and Broadcast copy locally, Send to
// itself queues a copy that a later Recv with the same tag takes (FIFO per tag); a Recv with no
// queued message is an error (it would block forever).
class SelfComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  MemorySpace memory_space() const override { return MemorySpace::kHost; }

  absl::Status AllReduceSum(float* data, int64_t n) override;
  absl::Status AllGather(const void* send, int64_t bytes_per_rank, void* recv) override;
  absl::Status Broadcast(void* data, int64_t bytes, int root) override;
  absl::Status Send(const void* data, int64_t bytes, int dst, int tag) override;
  absl::Status Recv(void* data, int64_t bytes, int src, int tag) override;
  absl::Status Barrier() override;

 private:
  struct Message {
    int tag;
    std::vector<char> bytes;
  };
  std::mutex mailbox_mu_;
  std::deque<Message> mailbox_;
};

}  // namespace olmo::comm
