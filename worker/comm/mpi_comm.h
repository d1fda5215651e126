// MpiComm: Comm over an MPI communicator, for host buffers; and the factories that split
// MPI_COMM_WORLD into a rank's tensor-parallel and pipeline groups (DESIGN.md §1-3).
//
// Rank layout (ParallelConfig): world rank = pp_rank * tp + tp_rank.
//   TP group of a stage:  world ranks pp_rank*tp .. pp_rank*tp + tp - 1; rank in it = tp_rank.
//   Pipeline of a tp_rank: world ranks tp_rank, tp_rank + tp, ..., tp_rank + (pp-1)*tp; rank in
//   it = pp_rank, so the previous / next stage are pp_rank -1 / +1 of that communicator.
//
// Threads: MPI is initialized with MPI_THREAD_MULTIPLE (the result receiver thread needs it).
// Collectives on one MpiComm must be issued by one thread at a time (MPI's rule); Send/Recv may
// run concurrently from several threads. Byte counts above 2^31 - 1 are sent in chunks, except
// AllGather, whose bytes_per_rank must fit an int.
//
// Hangs: see watchdog.h. Every blocking call of an MpiComm built with a watchdog and a timeout
// is registered with it; ScopedCommTimeout changes the timeout for calls made by one thread (e.g.
// 0 for a receiver thread that legitimately waits without bound).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/parallel_config.h"
#include "worker/comm/comm.h"
#include "worker/comm/watchdog.h"

namespace olmo::comm {

// RAII owner of MPI's lifetime: Create calls MPI_Init_thread(MPI_THREAD_MULTIPLE) once per
// process, the destructor calls MPI_Finalize. Destroy every MpiComm before it. If MPI was already
// initialized by someone else, this object neither re-initializes nor finalizes it.
class MpiEnvironment {
 public:
  static absl::StatusOr<std::unique_ptr<MpiEnvironment>> Create(int* argc, char*** argv);
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  // MPI_THREAD_SINGLE (0) .. MPI_THREAD_MULTIPLE (3), as provided by the library.
  int provided_thread_level() const { return provided_; }
  bool thread_multiple() const { return provided_ == MPI_THREAD_MULTIPLE; }
  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }

 private:
  MpiEnvironment(bool owns, int provided, int world_rank, int world_size)
      : owns_(owns), provided_(provided), world_rank_(world_rank), world_size_(world_size) {}
  bool owns_;
  int provided_;
  int world_rank_;
  int world_size_;
};

// "file:line: <call> failed: <MPI error string>" for an MPI return code other than MPI_SUCCESS.
absl::Status MpiErrorAt(int rc, const char* call, const char* file, int line);

// A Watchdog whose hang action logs the report (spdlog critical and stderr) and calls
// MPI_Abort(MPI_COMM_WORLD, 1): the whole job exits non-zero.
std::shared_ptr<Watchdog> MakeAbortingWatchdog(int world_rank, double poll_interval_s = 0.1);

// Ends the whole MPI job now: logs `why` (spdlog critical and stderr) and calls
// MPI_Abort(MPI_COMM_WORLD, 1); does not return. For a rank whose step failed while its peers may
// be inside a collective of that step: returning (MPI_Finalize) would leave them, and the job,
// waiting until their watchdog fires.
[[noreturn]] void AbortWorld(std::string_view why);

// Overrides, for the calling thread and the lifetime of the object, the watchdog timeout of
// every MpiComm call (seconds; <= 0 means unwatched). Scopes nest.
class ScopedCommTimeout {
 public:
  explicit ScopedCommTimeout(double timeout_s);
  ~ScopedCommTimeout();
  ScopedCommTimeout(const ScopedCommTimeout&) = delete;
  ScopedCommTimeout& operator=(const ScopedCommTimeout&) = delete;

 private:
  bool had_previous_;
  double previous_;
};

struct MpiCommOptions {
  // Calls running longer than this abort the job (see watchdog.h); <= 0 disables the watchdog.
  double watchdog_timeout_s = 0.0;
  double watchdog_poll_s = 0.1;
};

class MpiComm final : public Comm {
 public:
  // Wraps `comm`, which this object then owns and frees (it must not be MPI_COMM_WORLD or
  // MPI_COMM_SELF: pass a duplicate). Sets MPI_ERRORS_RETURN on it so failures become Status.
  // `watchdog` may be null (no hang detection); `name` labels logs and hang reports.
  static absl::StatusOr<std::unique_ptr<MpiComm>> Adopt(MPI_Comm comm, std::string name,
                                                        std::shared_ptr<Watchdog> watchdog,
                                                        double timeout_s);
  ~MpiComm() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MemorySpace memory_space() const override { return MemorySpace::kHost; }
  const std::string& name() const { return name_; }
  MPI_Comm mpi_comm() const { return comm_; }
  Watchdog* watchdog() const { return watchdog_.get(); }

  absl::Status AllReduceSum(float* data, int64_t n) override;
  absl::Status AllGather(const void* send, int64_t bytes_per_rank, void* recv) override;
  absl::Status Broadcast(void* data, int64_t bytes, int root) override;
  absl::Status Send(const void* data, int64_t bytes, int dst, int tag) override;
  absl::Status Recv(void* data, int64_t bytes, int src, int tag) override;
  absl::Status Barrier() override;

  void SetStepId(int64_t step_id) override;

 private:
  MpiComm(MPI_Comm comm, std::string name, int rank, int size, std::shared_ptr<Watchdog> watchdog,
          double timeout_s);
  double EffectiveTimeout() const;
  std::string Describe(CollectiveKind kind, int64_t bytes, int peer) const;

  MPI_Comm comm_;
  std::string name_;
  int rank_;
  int size_;
  std::shared_ptr<Watchdog> watchdog_;
  double timeout_s_;
};

// The communicators of one rank of a tp x pp worker group, all sharing one watchdog.
struct GroupComms {
  std::shared_ptr<Watchdog> watchdog;  // null when options.watchdog_timeout_s <= 0
  std::unique_ptr<MpiComm> world;      // every rank; rank = config.rank
  std::unique_ptr<MpiComm> tp;         // this stage's TP group; rank = tp_rank
  std::unique_ptr<MpiComm> pp;         // this tp_rank's pipeline; rank = pp_rank
  // Ranks in `pp` of the neighbouring stages, -1 at the ends of the pipeline.
  int prev_stage = -1;
  int next_stage = -1;
};

// Collective over MPI_COMM_WORLD (every rank must call it): checks that the world has
// config.world_size() ranks and that config.rank is this process's world rank, then splits.
absl::StatusOr<GroupComms> MakeGroupComms(const ParallelConfig& config,
                                          const MpiCommOptions& options = {});

}  // namespace olmo::comm
