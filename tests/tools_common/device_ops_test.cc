// The TP collectives choice (--collectives) that every rank makes from every rank's report, and
// the factory's checks that need no GPU.
#include "tools/common/device_ops.h"

#include "gtest/gtest.h"

namespace olmo::tools {
namespace {

std::vector<TpRankDevice> Gpus(std::initializer_list<const char*> bus_ids,
                               const char* host = "n1") {
  std::vector<TpRankDevice> ranks;
  for (const char* bus : bus_ids) ranks.push_back({true, host, bus});
  return ranks;
}

TEST(ChooseNccl, OwnGpuPerRankGetsNcclUnlessHostIsAsked) {
  const auto ranks = Gpus({"0000:18:00.0", "0000:2a:00.0"});
  EXPECT_EQ(ChooseNccl("auto", "cuda", ranks).value(), true);
  EXPECT_EQ(ChooseNccl("nccl", "cuda", ranks).value(), true);
  EXPECT_EQ(ChooseNccl("host", "cuda", ranks).value(), false);
}

TEST(ChooseNccl, SharedGpuFallsBackOnAutoAndIsRefusedOnNccl) {
  // Two ranks on one GPU (NCCL refuses): auto stages through MPI, nccl is an error naming both.
  const auto ranks = Gpus({"0000:18:00.0", "0000:2a:00.0", "0000:18:00.0"});
  EXPECT_EQ(ChooseNccl("auto", "cuda", ranks).value(), false);
  auto st = ChooseNccl("nccl", "cuda", ranks);
  ASSERT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.status().message().find("tp ranks 0 and 2 share the GPU 0000:18:00.0"),
            std::string::npos)
      << st.status();
  // The same bus id on two hosts is two GPUs.
  auto two_hosts = Gpus({"0000:18:00.0"}, "n1");
  two_hosts.push_back({true, "n2", "0000:18:00.0"});
  EXPECT_EQ(ChooseNccl("auto", "cuda", two_hosts).value(), true);
}

TEST(ChooseNccl, CpuRanksUseTheHostComm) {
  std::vector<TpRankDevice> ranks = {{true, "n1", ""}, {true, "n1", ""}};
  EXPECT_EQ(ChooseNccl("auto", "cpu", ranks).value(), false);
  EXPECT_EQ(ChooseNccl("nccl", "cpu", ranks).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChooseNccl, AFailedBackendOnAnyRankFailsEveryRank) {
  auto ranks = Gpus({"0000:18:00.0", "0000:2a:00.0"});
  ranks[1].backend_ok = false;
  for (const char* mode : {"auto", "nccl", "host"}) {
    auto st = ChooseNccl(mode, "cuda", ranks);
    ASSERT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition) << mode;
    EXPECT_NE(st.status().message().find("tp rank 1"), std::string::npos);
  }
}

TEST(ChooseNccl, OneRankNeedsNoNccl) {
  EXPECT_EQ(ChooseNccl("auto", "cuda", Gpus({"0000:18:00.0"})).value(), false);
}

TEST(MakeCollectivesFactory, ChecksTheModeAndKeepsTheHostCommWhereNoNcclIsNeeded) {
  comm::SelfComm self;
  EXPECT_EQ(MakeCollectivesFactory("fast", "cuda", &self).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeCollectivesFactory("nccl", "cpu", &self).status().code(),
            absl::StatusCode::kInvalidArgument);
  // tp 1, or the CPU: no factory (the model keeps its host Comm).
  auto f = MakeCollectivesFactory("auto", "cpu", &self);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(*f);
  f = MakeCollectivesFactory("auto", "cuda", &self);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(*f);
}

}  // namespace
}  // namespace olmo::tools
