#include "worker/comm/mpi_comm.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"
#include "worker/comm/comm_error.h"

namespace olmo::comm {

// Returns the Status of an MPI call that failed, with the caller's file:line.
#define OLMO_MPI_RETURN_IF_ERROR(call)                                          \
  do {                                                                          \
    int olmo_mpi_rc_ = (call);                                                  \
    if (olmo_mpi_rc_ != MPI_SUCCESS) {                                          \
      return ::olmo::comm::MpiErrorAt(olmo_mpi_rc_, #call, __FILE__, __LINE__); \
    }                                                                           \
  } while (0)

namespace {

// Largest element count per MPI call (counts are int); 1 GiB keeps chunks comfortably below it.
constexpr int64_t kMaxChunkBytes = int64_t{1} << 30;

thread_local bool tls_has_timeout = false;
thread_local double tls_timeout_s = 0.0;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

absl::Status MpiErrorAt(int rc, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) {
    len = std::snprintf(text, sizeof(text), "MPI error %d", rc);
  }
  return ErrorAt(absl::StatusCode::kInternal, file, line,
                 absl::StrCat(call, " failed: ", std::string(text, len)));
}

// ---- MpiEnvironment ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<MpiEnvironment>> MpiEnvironment::Create(int* argc, char*** argv) {
  int finalized = 0;
  OLMO_MPI_RETURN_IF_ERROR(MPI_Finalized(&finalized));
  if (finalized) {
    return OLMO_COMM_ERROR(absl::StatusCode::kFailedPrecondition,
                           "MPI was already finalized; it cannot be initialized again");
  }
  int initialized = 0;
  OLMO_MPI_RETURN_IF_ERROR(MPI_Initialized(&initialized));
  int provided = 0;
  if (initialized) {
    OLMO_MPI_RETURN_IF_ERROR(MPI_Query_thread(&provided));
  } else {
    OLMO_MPI_RETURN_IF_ERROR(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
  }
  int rank = 0, size = 0;
  OLMO_MPI_RETURN_IF_ERROR(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  OLMO_MPI_RETURN_IF_ERROR(MPI_Comm_size(MPI_COMM_WORLD, &size));
  if (provided != MPI_THREAD_MULTIPLE) {
    spdlog::warn(
        "rank {}: MPI provides thread level {} < MPI_THREAD_MULTIPLE ({}); only one "
        "thread may call MPI",
        rank, provided, MPI_THREAD_MULTIPLE);
  }
  return std::unique_ptr<MpiEnvironment>(new MpiEnvironment(!initialized, provided, rank, size));
}

MpiEnvironment::~MpiEnvironment() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

// ---- watchdog glue ----------------------------------------------------------------------------

std::shared_ptr<Watchdog> MakeAbortingWatchdog(int world_rank, double poll_interval_s) {
  return std::make_shared<Watchdog>(world_rank, poll_interval_s, [](const HangReport& report) {
    std::string line = FormatHangReport(report);
    spdlog::critical("{}", line);
    spdlog::default_logger()->flush();
    // Also straight to stderr: the log sink may be a file, and the job is about to die.
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  });
}

void AbortWorld(std::string_view why) {
  spdlog::critical("aborting the worker group: {}", why);
  spdlog::default_logger()->flush();
  std::fprintf(stderr, "aborting the worker group: %.*s\n", static_cast<int>(why.size()),
               why.data());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();  // MPI_Abort does not return; this keeps [[noreturn]] true if it ever does
}

ScopedCommTimeout::ScopedCommTimeout(double timeout_s)
    : had_previous_(tls_has_timeout), previous_(tls_timeout_s) {
  tls_has_timeout = true;
  tls_timeout_s = timeout_s;
}

ScopedCommTimeout::~ScopedCommTimeout() {
  tls_has_timeout = had_previous_;
  tls_timeout_s = previous_;
}

// ---- MpiComm ----------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<MpiComm>> MpiComm::Adopt(MPI_Comm comm, std::string name,
                                                        std::shared_ptr<Watchdog> watchdog,
                                                        double timeout_s) {
  if (comm == MPI_COMM_NULL || comm == MPI_COMM_WORLD || comm == MPI_COMM_SELF) {
    return OLMO_COMM_ERROR(absl::StatusCode::kInvalidArgument,
                           "MpiComm::Adopt needs an owned communicator (duplicate WORLD/SELF)");
  }
  OLMO_MPI_RETURN_IF_ERROR(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  int rank = 0, size = 0;
  OLMO_MPI_RETURN_IF_ERROR(MPI_Comm_rank(comm, &rank));
  OLMO_MPI_RETURN_IF_ERROR(MPI_Comm_size(comm, &size));
  return std::unique_ptr<MpiComm>(
      new MpiComm(comm, std::move(name), rank, size, std::move(watchdog), timeout_s));
}

MpiComm::MpiComm(MPI_Comm comm, std::string name, int rank, int size,
                 std::shared_ptr<Watchdog> watchdog, double timeout_s)
    : comm_(comm),
      name_(std::move(name)),
      rank_(rank),
      size_(size),
      watchdog_(std::move(watchdog)),
      timeout_s_(timeout_s) {}

MpiComm::~MpiComm() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiComm::SetStepId(int64_t step_id) {
  if (watchdog_) watchdog_->SetStepId(step_id);
}

double MpiComm::EffectiveTimeout() const { return tls_has_timeout ? tls_timeout_s : timeout_s_; }

std::string MpiComm::Describe(CollectiveKind kind, int64_t bytes, int peer) const {
  std::string s = absl::StrFormat("%s of %d bytes on comm %s (rank %d of %d",
                                  CollectiveKindName(kind), bytes, name_, rank_, size_);
  if (peer >= 0) absl::StrAppendFormat(&s, ", peer %d", peer);
  return s + ")";
}

absl::Status MpiComm::AllReduceSum(float* data, int64_t n) {
  auto start = std::chrono::steady_clock::now();
  OLMO_RETURN_IF_ERROR(CheckBytes(n, "AllReduceSum"));
  if (size_ > 1 && n > 0) {
    WatchdogScope watch(watchdog_.get(), Describe(CollectiveKind::kAllReduce, n * 4, -1),
                        EffectiveTimeout());
    const int64_t chunk = kMaxChunkBytes / static_cast<int64_t>(sizeof(float));
    for (int64_t off = 0; off < n; off += chunk) {
      int count = static_cast<int>(std::min(chunk, n - off));
      OLMO_MPI_RETURN_IF_ERROR(
          MPI_Allreduce(MPI_IN_PLACE, data + off, count, MPI_FLOAT, MPI_SUM, comm_));
    }
  }
  int64_t bytes = size_ > 1 ? n * static_cast<int64_t>(sizeof(float)) : 0;
  Record(CollectiveKind::kAllReduce, bytes, bytes, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status MpiComm::AllGather(const void* send, int64_t bytes_per_rank, void* recv) {
  auto start = std::chrono::steady_clock::now();
  OLMO_RETURN_IF_ERROR(CheckBytes(bytes_per_rank, "AllGather"));
  if (bytes_per_rank > INT_MAX) {
    return OLMO_COMM_ERROR(
        absl::StatusCode::kInvalidArgument,
        absl::StrFormat("AllGather: %d bytes per rank exceed INT_MAX", bytes_per_rank));
  }
  char* own_block = static_cast<char*>(recv) + rank_ * bytes_per_rank;
  if (size_ == 1 || bytes_per_rank == 0) {
    if (bytes_per_rank > 0 && send != own_block) std::memmove(own_block, send, bytes_per_rank);
  } else {
    WatchdogScope watch(watchdog_.get(), Describe(CollectiveKind::kAllGather, bytes_per_rank, -1),
                        EffectiveTimeout());
    int count = static_cast<int>(bytes_per_rank);
    const void* sendbuf = send == own_block ? MPI_IN_PLACE : send;
    OLMO_MPI_RETURN_IF_ERROR(MPI_Allgather(sendbuf, count, MPI_BYTE, recv, count, MPI_BYTE, comm_));
  }
  int64_t sent = size_ > 1 ? bytes_per_rank : 0;
  Record(CollectiveKind::kAllGather, sent, sent * (size_ - 1), SecondsSince(start));
  return absl::OkStatus();
}

absl::Status MpiComm::Broadcast(void* data, int64_t bytes, int root) {
  auto start = std::chrono::steady_clock::now();
  OLMO_RETURN_IF_ERROR(CheckBytes(bytes, "Broadcast"));
  OLMO_RETURN_IF_ERROR(CheckPeer(root, "Broadcast"));
  if (size_ > 1 && bytes > 0) {
    WatchdogScope watch(watchdog_.get(), Describe(CollectiveKind::kBroadcast, bytes, root),
                        EffectiveTimeout());
    char* p = static_cast<char*>(data);
    for (int64_t off = 0; off < bytes; off += kMaxChunkBytes) {
      int count = static_cast<int>(std::min(kMaxChunkBytes, bytes - off));
      OLMO_MPI_RETURN_IF_ERROR(MPI_Bcast(p + off, count, MPI_BYTE, root, comm_));
    }
  }
  int64_t moved = size_ > 1 ? bytes : 0;
  Record(CollectiveKind::kBroadcast, rank_ == root ? moved : 0, rank_ == root ? 0 : moved,
         SecondsSince(start));
  return absl::OkStatus();
}

absl::Status MpiComm::Send(const void* data, int64_t bytes, int dst, int tag) {
  auto start = std::chrono::steady_clock::now();
  OLMO_RETURN_IF_ERROR(CheckBytes(bytes, "Send"));
  OLMO_RETURN_IF_ERROR(CheckPeer(dst, "Send"));
  {
    WatchdogScope watch(watchdog_.get(), Describe(CollectiveKind::kSend, bytes, dst),
                        EffectiveTimeout());
    const char* p = static_cast<const char*>(data);
    int64_t off = 0;
    do {  // at least one message, so a 0-byte Send matches a 0-byte Recv
      int count = static_cast<int>(std::min(kMaxChunkBytes, bytes - off));
      OLMO_MPI_RETURN_IF_ERROR(MPI_Send(p + off, count, MPI_BYTE, dst, tag, comm_));
      off += count;
    } while (off < bytes);
  }
  Record(CollectiveKind::kSend, bytes, 0, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status MpiComm::Recv(void* data, int64_t bytes, int src, int tag) {
  auto start = std::chrono::steady_clock::now();
  OLMO_RETURN_IF_ERROR(CheckBytes(bytes, "Recv"));
  OLMO_RETURN_IF_ERROR(CheckPeer(src, "Recv"));
  {
    WatchdogScope watch(watchdog_.get(), Describe(CollectiveKind::kRecv, bytes, src),
                        EffectiveTimeout());
    char* p = static_cast<char*>(data);
    int64_t off = 0;
    do {
      int count = static_cast<int>(std::min(kMaxChunkBytes, bytes - off));
      MPI_Status status;
      OLMO_MPI_RETURN_IF_ERROR(MPI_Recv(p + off, count, MPI_BYTE, src, tag, comm_, &status));
      int got = 0;
      OLMO_MPI_RETURN_IF_ERROR(MPI_Get_count(&status, MPI_BYTE, &got));
      if (got != count) {
        return OLMO_COMM_ERROR(
            absl::StatusCode::kDataLoss,
            absl::StrFormat("Recv from %d tag %d on comm %s: got %d bytes, expected %d", src, tag,
                            name_, got, count));
      }
      off += count;
    } while (off < bytes);
  }
  Record(CollectiveKind::kRecv, 0, bytes, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status MpiComm::Barrier() {
  auto start = std::chrono::steady_clock::now();
  if (size_ > 1) {
    WatchdogScope watch(watchdog_.get(), Describe(CollectiveKind::kBarrier, 0, -1),
                        EffectiveTimeout());
    OLMO_MPI_RETURN_IF_ERROR(MPI_Barrier(comm_));
  }
  Record(CollectiveKind::kBarrier, 0, 0, SecondsSince(start));
  return absl::OkStatus();
}

// ---- group factories --------------------------------------------------------------------------

absl::StatusOr<GroupComms> MakeGroupComms(const ParallelConfig& config,
                                          const MpiCommOptions& options) {
  int world_rank = 0, world_size = 0;
  OLMO_MPI_RETURN_IF_ERROR(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  OLMO_MPI_RETURN_IF_ERROR(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
  if (config.tp < 1 || config.pp < 1 || config.world_size() != world_size ||
      config.rank != world_rank) {
    return OLMO_COMM_ERROR(
        absl::StatusCode::kInvalidArgument,
        absl::StrFormat("tp %d x pp %d, rank %d does not match the MPI world (rank %d of %d): "
                        "launch exactly tp x pp ranks",
                        config.tp, config.pp, config.rank, world_rank, world_size));
  }
  GroupComms g;
  if (options.watchdog_timeout_s > 0) {
    g.watchdog = MakeAbortingWatchdog(world_rank, options.watchdog_poll_s);
  }
  const double timeout = options.watchdog_timeout_s;

  MPI_Comm world = MPI_COMM_NULL;
  OLMO_MPI_RETURN_IF_ERROR(MPI_Comm_dup(MPI_COMM_WORLD, &world));
  OLMO_ASSIGN_OR_RETURN(g.world, MpiComm::Adopt(world, "world", g.watchdog, timeout));

  // Split colours: a stage's TP group shares pp_rank; a pipeline shares tp_rank. The key orders
  // ranks inside the new communicator, so its rank is tp_rank / pp_rank respectively.
  MPI_Comm tp_comm = MPI_COMM_NULL;
  OLMO_MPI_RETURN_IF_ERROR(
      MPI_Comm_split(g.world->mpi_comm(), config.pp_rank(), config.tp_rank(), &tp_comm));
  OLMO_ASSIGN_OR_RETURN(
      g.tp, MpiComm::Adopt(tp_comm, absl::StrCat("tp[stage ", config.pp_rank(), "]"), g.watchdog,
                           timeout));
  MPI_Comm pp_comm = MPI_COMM_NULL;
  OLMO_MPI_RETURN_IF_ERROR(
      MPI_Comm_split(g.world->mpi_comm(), config.tp_rank(), config.pp_rank(), &pp_comm));
  OLMO_ASSIGN_OR_RETURN(
      g.pp, MpiComm::Adopt(pp_comm, absl::StrCat("pp[tp_rank ", config.tp_rank(), "]"), g.watchdog,
                           timeout));

  if (g.tp->rank() != config.tp_rank() || g.tp->size() != config.tp ||
      g.pp->rank() != config.pp_rank() || g.pp->size() != config.pp) {
    return OLMO_COMM_ERROR(absl::StatusCode::kInternal,
                           "MPI_Comm_split produced an unexpected rank layout");
  }
  g.prev_stage = config.pp_rank() > 0 ? config.pp_rank() - 1 : -1;
  g.next_stage = config.pp_rank() + 1 < config.pp ? config.pp_rank() + 1 : -1;
  return g;
}

}  // namespace olmo::comm
