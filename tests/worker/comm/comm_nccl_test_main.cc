// NcclComm on one GPU (label gpu; skipped without a usable device: with no driver
// cudaGetDeviceCount fails with error 35). Bootstrapped over SelfComm, so it checks the
// bootstrap, the size-1 semantics on device buffers, stream ordering and the counters. Multi-GPU
// NCCL (size > 1) needs a multi-GPU machine and is not exercised here.
#include <cuda_runtime.h>

#include <vector>

#include "gtest/gtest.h"
#include "worker/comm/nccl_comm.h"

namespace olmo::comm {
namespace {

class NcclCommTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess || count == 0) {
      GTEST_SKIP() << "no usable CUDA device: " << cudaGetErrorString(rc);
    }
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
};

TEST_F(NcclCommTest, SizeOneCollectivesOnDeviceBuffers) {
  SelfComm bootstrap;
  absl::StatusOr<std::unique_ptr<NcclComm>> comm = NcclComm::Create(bootstrap, stream_);
  ASSERT_TRUE(comm.ok()) << comm.status();
  NcclComm& c = **comm;
  EXPECT_EQ(c.size(), 1);
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.memory_space(), MemorySpace::kDevice);

  const int n = 1 << 20;
  std::vector<float> host(n);
  for (int i = 0; i < n; ++i) host[i] = 0.25f * (i % 1000) - 7.0f;
  float* a = nullptr;
  float* b = nullptr;
  ASSERT_EQ(cudaMalloc(&a, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(a, host.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream_),
            cudaSuccess);
  ASSERT_TRUE(c.AllReduceSum(a, n).ok());                  // identity at size 1
  ASSERT_TRUE(c.AllGather(a, n * sizeof(float), b).ok());  // copy a -> b
  ASSERT_TRUE(c.Broadcast(b, n * sizeof(float), 0).ok());
  ASSERT_TRUE(c.Barrier().ok());  // syncs the stream
  std::vector<float> out(n, 0.0f);
  ASSERT_EQ(cudaMemcpy(out.data(), b, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(out, host);
  EXPECT_TRUE(c.CheckAsyncError().ok());

  CommStats s = c.stats();
  EXPECT_EQ(s[CollectiveKind::kAllReduce].calls, 1);
  EXPECT_EQ(s[CollectiveKind::kAllGather].calls, 1);
  EXPECT_EQ(s[CollectiveKind::kBroadcast].calls, 1);
  EXPECT_EQ(s[CollectiveKind::kBarrier].calls, 1);
  EXPECT_EQ(s.total_bytes_sent(), 0);

  absl::Status bad = c.Broadcast(b, 4, 1);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("worker/comm/comm.cc:"), std::string::npos) << bad;
  cudaFree(a);
  cudaFree(b);
}

}  // namespace
}  // namespace olmo::comm
