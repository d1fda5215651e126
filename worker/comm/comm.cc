#include "worker/comm/comm.h"

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/comm/comm_error.h"

namespace olmo::comm {

std::string_view SourceRelative(std::string_view file) {
  size_t pos = file.rfind("worker/");
  return pos == std::string_view::npos ? file : file.substr(pos);
}

absl::Status ErrorAt(absl::StatusCode code, const char* file, int line, std::string_view message) {
  return absl::Status(
      code, absl::StrCat(std::string(SourceRelative(file)), ":", line, ": ", std::string(message)));
}

const char* CollectiveKindName(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::kAllReduce:
      return "allreduce";
    case CollectiveKind::kAllGather:
      return "allgather";
    case CollectiveKind::kBroadcast:
      return "broadcast";
    case CollectiveKind::kSend:
      return "send";
    case CollectiveKind::kRecv:
      return "recv";
    case CollectiveKind::kBarrier:
      return "barrier";
  }
  return "unknown";
}

int64_t CommStats::total_bytes_sent() const {
  int64_t total = 0;
  for (const auto& s : by_kind) total += s.bytes_sent;
  return total;
}

int64_t CommStats::total_bytes_received() const {
  int64_t total = 0;
  for (const auto& s : by_kind) total += s.bytes_received;
  return total;
}

double CommStats::total_seconds() const {
  double total = 0;
  for (const auto& s : by_kind) total += s.seconds;
  return total;
}

std::string CommStats::ToString() const {
  std::string out;
  for (int k = 0; k < kNumCollectiveKinds; ++k) {
    const CollectiveStats& s = by_kind[k];
    if (s.calls == 0) continue;
    absl::StrAppendFormat(&out, "%s%s calls=%d sent=%dB recv=%dB %.6fs", out.empty() ? "" : "\n",
                          CollectiveKindName(static_cast<CollectiveKind>(k)), s.calls, s.bytes_sent,
                          s.bytes_received, s.seconds);
  }
  return out;
}

CommStats Comm::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

void Comm::ResetStats() {
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_ = CommStats{};
}

void Comm::Record(CollectiveKind kind, int64_t bytes_sent, int64_t bytes_received, double seconds) {
  std::lock_guard<std::mutex> lock(stats_mu_);
  CollectiveStats& s = stats_.by_kind[static_cast<int>(kind)];
  s.calls += 1;
  s.bytes_sent += bytes_sent;
  s.bytes_received += bytes_received;
  s.seconds += seconds;
}

absl::Status Comm::CheckPeer(int peer, const char* op) const {
  if (peer < 0 || peer >= size()) {
    return OLMO_COMM_ERROR(absl::StatusCode::kInvalidArgument,
                           absl::StrFormat("%s: rank %d outside [0, %d)", op, peer, size()));
  }
  return absl::OkStatus();
}

absl::Status Comm::CheckBytes(int64_t bytes, const char* op) {
  if (bytes < 0) {
    return OLMO_COMM_ERROR(absl::StatusCode::kInvalidArgument,
                           absl::StrFormat("%s: negative size %d", op, bytes));
  }
  return absl::OkStatus();
}

namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

absl::Status SelfComm::AllReduceSum(float* data, int64_t n) {
  auto start = std::chrono::steady_clock::now();
  if (absl::Status s = CheckBytes(n, "AllReduceSum"); !s.ok()) return s;
  Record(CollectiveKind::kAllReduce, 0, 0, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status SelfComm::AllGather(const void* send, int64_t bytes_per_rank, void* recv) {
  auto start = std::chrono::steady_clock::now();
  if (absl::Status s = CheckBytes(bytes_per_rank, "AllGather"); !s.ok()) return s;
  // memmove: send may alias recv (rank 0's block is the whole of recv).
  if (bytes_per_rank > 0 && send != recv) std::memmove(recv, send, bytes_per_rank);
  Record(CollectiveKind::kAllGather, 0, 0, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status SelfComm::Broadcast(void* data, int64_t bytes, int root) {
  auto start = std::chrono::steady_clock::now();
  if (absl::Status s = CheckBytes(bytes, "Broadcast"); !s.ok()) return s;
  if (absl::Status s = CheckPeer(root, "Broadcast"); !s.ok()) return s;
  Record(CollectiveKind::kBroadcast, 0, 0, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status SelfComm::Send(const void* data, int64_t bytes, int dst, int tag) {
  auto start = std::chrono::steady_clock::now();
  if (absl::Status s = CheckBytes(bytes, "Send"); !s.ok()) return s;
  if (absl::Status s = CheckPeer(dst, "Send"); !s.ok()) return s;
  Message m{tag, std::vector<char>(static_cast<const char*>(data),
                                   static_cast<const char*>(data) + bytes)};
  {
    std::lock_guard<std::mutex> lock(mailbox_mu_);
    mailbox_.push_back(std::move(m));
  }
  Record(CollectiveKind::kSend, 0, 0, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status SelfComm::Recv(void* data, int64_t bytes, int src, int tag) {
  auto start = std::chrono::steady_clock::now();
  if (absl::Status s = CheckBytes(bytes, "Recv"); !s.ok()) return s;
  if (absl::Status s = CheckPeer(src, "Recv"); !s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mailbox_mu_);
    auto it = mailbox_.begin();
    while (it != mailbox_.end() && it->tag != tag) ++it;
    if (it == mailbox_.end()) {
      return OLMO_COMM_ERROR(
          absl::StatusCode::kFailedPrecondition,
          absl::StrFormat("Recv: no message with tag %d was sent to this rank (size 1: it would "
                          "block forever)",
                          tag));
    }
    if (static_cast<int64_t>(it->bytes.size()) != bytes) {
      return OLMO_COMM_ERROR(absl::StatusCode::kInvalidArgument,
                             absl::StrFormat("Recv: message with tag %d has %d bytes, expected %d",
                                             tag, it->bytes.size(), bytes));
    }
    if (bytes > 0) std::memcpy(data, it->bytes.data(), bytes);
    mailbox_.erase(it);
  }
  Record(CollectiveKind::kRecv, 0, 0, SecondsSince(start));
  return absl::OkStatus();
}

absl::Status SelfComm::Barrier() {
  Record(CollectiveKind::kBarrier, 0, 0, 0.0);
  return absl::OkStatus();
}

}  // namespace olmo::comm
