// SelfComm (size 1), the counters, and the watchdog (with a recording hang action instead of
// MPI_Abort). Multi-rank MpiComm is tested by comm_mpi_test under mpirun.
#include "worker/comm/comm.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "worker/comm/watchdog.h"

namespace olmo::comm {
namespace {

TEST(SelfCommTest, CollectivesAreIdentityOrLocalCopy) {
  SelfComm comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);

  std::vector<float> x = {1.5f, -2.0f, 3.25f};
  ASSERT_TRUE(comm.AllReduceSum(x.data(), 3).ok());
  EXPECT_EQ(x, (std::vector<float>{1.5f, -2.0f, 3.25f}));

  const int32_t send[2] = {7, -9};
  int32_t recv[2] = {0, 0};
  ASSERT_TRUE(comm.AllGather(send, sizeof(send), recv).ok());
  EXPECT_EQ(recv[0], 7);
  EXPECT_EQ(recv[1], -9);
  // In place: send aliases rank 0's block.
  ASSERT_TRUE(comm.AllGather(recv, sizeof(recv), recv).ok());
  EXPECT_EQ(recv[1], -9);

  char text[6] = "hello";
  ASSERT_TRUE(comm.Broadcast(text, 6, 0).ok());
  EXPECT_STREQ(text, "hello");
  ASSERT_TRUE(comm.Barrier().ok());
}

TEST(SelfCommTest, SendToSelfIsReceivedByTagInOrder) {
  SelfComm comm;
  const int a = 11, b = 22, c = 33;
  ASSERT_TRUE(comm.Send(&a, sizeof(a), 0, /*tag=*/1).ok());
  ASSERT_TRUE(comm.Send(&b, sizeof(b), 0, /*tag=*/2).ok());
  ASSERT_TRUE(comm.Send(&c, sizeof(c), 0, /*tag=*/1).ok());
  int got = 0;
  ASSERT_TRUE(comm.Recv(&got, sizeof(got), 0, 2).ok());
  EXPECT_EQ(got, 22);
  ASSERT_TRUE(comm.Recv(&got, sizeof(got), 0, 1).ok());
  EXPECT_EQ(got, 11);
  ASSERT_TRUE(comm.Recv(&got, sizeof(got), 0, 1).ok());
  EXPECT_EQ(got, 33);
  // Nothing left: a real Recv would block forever, so SelfComm reports it.
  absl::Status s = comm.Recv(&got, sizeof(got), 0, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SelfCommTest, ErrorsCarryFileAndLine) {
  SelfComm comm;
  char buf[4] = {};
  absl::Status s = comm.Broadcast(buf, 4, /*root=*/1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("worker/comm/comm.cc:"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("rank 1 outside [0, 1)"), std::string::npos) << s.message();

  s = comm.Send(buf, 4, /*dst=*/-1, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = comm.AllReduceSum(nullptr, -5);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("negative size -5"), std::string::npos) << s.message();

  int x = 1;
  ASSERT_TRUE(comm.Send(&x, sizeof(x), 0, 3).ok());
  char small[2];
  s = comm.Recv(small, 2, 0, 3);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("has 4 bytes, expected 2"), std::string::npos) << s.message();
}

TEST(SelfCommTest, CountersCountCallsWithZeroBytesAtSizeOne) {
  SelfComm comm;
  std::vector<float> x(1000, 1.0f);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(comm.AllReduceSum(x.data(), 1000).ok());
  ASSERT_TRUE(comm.AllGather(x.data(), 40, x.data()).ok());
  ASSERT_TRUE(comm.Send(x.data(), 8, 0, 0).ok());
  ASSERT_TRUE(comm.Recv(x.data(), 8, 0, 0).ok());
  ASSERT_TRUE(comm.Barrier().ok());

  CommStats s = comm.stats();
  EXPECT_EQ(s[CollectiveKind::kAllReduce].calls, 3);
  EXPECT_EQ(s[CollectiveKind::kAllGather].calls, 1);
  EXPECT_EQ(s[CollectiveKind::kBroadcast].calls, 0);
  EXPECT_EQ(s[CollectiveKind::kSend].calls, 1);
  EXPECT_EQ(s[CollectiveKind::kRecv].calls, 1);
  EXPECT_EQ(s[CollectiveKind::kBarrier].calls, 1);
  // Nothing leaves a rank that is alone.
  EXPECT_EQ(s.total_bytes_sent(), 0);
  EXPECT_EQ(s.total_bytes_received(), 0);
  EXPECT_GE(s.total_seconds(), 0.0);
  EXPECT_NE(s.ToString().find("allreduce calls=3 sent=0B"), std::string::npos) << s.ToString();
  EXPECT_EQ(s.ToString().find("broadcast"), std::string::npos) << s.ToString();

  // Failed calls are not counted.
  EXPECT_FALSE(comm.Broadcast(x.data(), 4, 2).ok());
  EXPECT_EQ(comm.stats()[CollectiveKind::kBroadcast].calls, 0);

  comm.ResetStats();
  s = comm.stats();
  for (int k = 0; k < kNumCollectiveKinds; ++k) {
    EXPECT_EQ(s.by_kind[k].calls, 0);
    EXPECT_EQ(s.by_kind[k].seconds, 0.0);
  }
}

// A Comm whose Record is driven directly, to check the arithmetic of the counters; its
// collectives are never called.
class RecordingComm : public Comm {
 public:
  using Comm::Record;
  int rank() const override { return 0; }
  int size() const override { return 1; }
  MemorySpace memory_space() const override { return MemorySpace::kHost; }
  absl::Status AllReduceSum(float*, int64_t) override { return absl::UnimplementedError(""); }
  absl::Status AllGather(const void*, int64_t, void*) override {
    return absl::UnimplementedError("");
  }
  absl::Status Broadcast(void*, int64_t, int) override { return absl::UnimplementedError(""); }
  absl::Status Send(const void*, int64_t, int, int) override {
    return absl::UnimplementedError("");
  }
  absl::Status Recv(void*, int64_t, int, int) override { return absl::UnimplementedError(""); }
  absl::Status Barrier() override { return absl::UnimplementedError(""); }
};

TEST(CommStatsTest, RecordAccumulatesPerKindAndTotals) {
  RecordingComm comm;
  comm.Record(CollectiveKind::kAllReduce, 100, 100, 0.5);
  comm.Record(CollectiveKind::kAllReduce, 28, 28, 0.25);
  comm.Record(CollectiveKind::kBroadcast, 0, 64, 0.125);
  comm.Record(CollectiveKind::kSend, 10, 0, 1.0);
  CommStats s = comm.stats();
  EXPECT_EQ(s[CollectiveKind::kAllReduce].calls, 2);
  EXPECT_EQ(s[CollectiveKind::kAllReduce].bytes_sent, 128);
  EXPECT_EQ(s[CollectiveKind::kAllReduce].bytes_received, 128);
  EXPECT_DOUBLE_EQ(s[CollectiveKind::kAllReduce].seconds, 0.75);
  EXPECT_EQ(s.total_bytes_sent(), 138);
  EXPECT_EQ(s.total_bytes_received(), 192);
  EXPECT_DOUBLE_EQ(s.total_seconds(), 1.875);
}

TEST(CommStatsTest, ConcurrentRecordsAreNotLost) {
  RecordingComm comm;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&comm] {
      for (int i = 0; i < 10000; ++i) comm.Record(CollectiveKind::kSend, 3, 0, 0.0);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(comm.stats()[CollectiveKind::kSend].calls, 40000);
  EXPECT_EQ(comm.stats()[CollectiveKind::kSend].bytes_sent, 120000);
}

struct Reports {
  std::mutex mu;
  std::vector<HangReport> list;
};

TEST(WatchdogTest, ReportsACallPastItsTimeoutOnceWithTheLastStepId) {
  Reports reports;
  Watchdog dog(/*rank=*/3, /*poll_interval_s=*/0.02, [&reports](const HangReport& r) {
    std::lock_guard<std::mutex> lock(reports.mu);
    reports.list.push_back(r);
  });
  dog.SetStepId(41);
  dog.SetStepId(42);
  int64_t slow = dog.Begin("allreduce of 64 bytes on comm tp", 0.1);
  int64_t other = dog.Begin("recv on comm pp", 0.1);
  // Wait for the report (bounded: a loaded machine may delay the watchdog thread).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!dog.fired() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // a second report would land now
  dog.End(slow);
  dog.End(other);
  ASSERT_TRUE(dog.fired());
  std::lock_guard<std::mutex> lock(reports.mu);
  ASSERT_EQ(reports.list.size(), 1u);  // at most once per watchdog
  const HangReport& r = reports.list[0];
  EXPECT_EQ(r.rank, 3);
  EXPECT_EQ(r.what, "allreduce of 64 bytes on comm tp");  // the oldest registered call
  EXPECT_EQ(r.step_id, 42);
  EXPECT_GT(r.elapsed_s, 0.1);
  EXPECT_LT(r.elapsed_s, 10.0);
  EXPECT_DOUBLE_EQ(r.timeout_s, 0.1);
  EXPECT_EQ(FormatHangReport(r).rfind("watchdog: rank 3: allreduce of 64 bytes on comm tp", 0), 0u)
      << FormatHangReport(r);
  EXPECT_NE(FormatHangReport(r).find("last step_id 42"), std::string::npos);
}

TEST(WatchdogTest, CallsThatFinishInTimeOrAreUnwatchedNeverFire) {
  std::atomic<int> fired{0};
  Watchdog dog(0, 0.01, [&fired](const HangReport&) { fired++; });
  for (int i = 0; i < 20; ++i) {
    WatchdogScope scope(&dog, "quick", 2.0);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  {
    WatchdogScope unwatched(&dog, "receiver thread recv", 0.0);  // timeout 0: not watched
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_EQ(dog.Begin("unwatched", -1.0), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(fired.load(), 0);
  EXPECT_FALSE(dog.fired());
  EXPECT_EQ(dog.step_id(), -1);
}

}  // namespace
}  // namespace olmo::comm
