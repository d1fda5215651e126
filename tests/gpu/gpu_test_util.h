// Shared helpers of the gpu tests (label gpu): device buffers, random inputs, the CPU/GPU ops
// fixture and the tolerance check of DESIGN.md §5 (CUDA op vs CPU op: rtol/atol 2e-2 where bf16
// is involved, 1e-3 for f32 reductions). Every test starts with OLMO_SKIP_WITHOUT_GPU().
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/cuda_ops.h"

#define OLMO_SKIP_WITHOUT_GPU() \
  if (!::olmo::kernels::CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device"

namespace olmo::kernels::gpu_test {

// A device copy of a host vector (or a zeroed device array); Host() synchronizes and copies back.
template <typename T>
struct Dev {
  T* ptr = nullptr;
  size_t n = 0;
  explicit Dev(const std::vector<T>& host) : n(host.size()) {
    EXPECT_EQ(cudaMalloc(&ptr, std::max<size_t>(1, n) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    // The ops run on a non-blocking stream, unordered with these legacy-stream copies.
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  explicit Dev(size_t count) : n(count) {
    EXPECT_EQ(cudaMalloc(&ptr, std::max<size_t>(1, n) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemset(ptr, 0, std::max<size_t>(1, n) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { cudaFree(ptr); }
  std::vector<T> Host() const {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};

inline std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// f32 -> bf16 bits, round to nearest even (finite inputs).
inline uint16_t ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}
inline std::vector<uint16_t> ToBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = ToBf16(v[i]);
  return out;
}

// Every element must satisfy |got - want| <= atol + rtol |want|; prints the max abs error (the
// figure the test log keeps) and returns it.
inline double ExpectClose(const std::vector<float>& got, const std::vector<float>& want, float rtol,
                          float atol, const std::string& what) {
  EXPECT_EQ(got.size(), want.size()) << what;
  if (got.size() != want.size()) return INFINITY;
  double worst = 0, max_abs = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double r = std::isnan(err) ? INFINITY : err / (atol + rtol * std::fabs(want[i]));
    max_abs = std::max(max_abs, std::isnan(err) ? INFINITY : err);
    if (r > worst || i == 0) worst = r, at = i;
  }
  EXPECT_LE(worst, 1.0) << what << ": element " << at << " got " << got[at] << " want " << want[at];
  std::printf("[max-err] %s: max abs err %.3g over %zu values\n", what.c_str(), max_abs,
              got.size());
  return max_abs;
}

// The CUDA ops (gpu_) and the CPU reference ops (cpu_); gpu_ stays null without a device.
class GpuOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceAvailable()) return;
    auto ops = MakeCudaOps({});
    ASSERT_TRUE(ops.ok()) << ops.status();
    gpu_ = std::move(*ops);
    cpu_ = MakeCpuOps({});
  }
  void TearDown() override {
    if (gpu_ != nullptr) {
      EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    }
  }
  std::unique_ptr<Ops> gpu_, cpu_;
};

// GpuOpsTest whose gpu_ runs the attention kernel the test parameter names (kWarp, kTiled).
class AttentionKernelTest : public GpuOpsTest, public ::testing::WithParamInterface<CudaAttention> {
 protected:
  void SetUp() override {
    GpuOpsTest::SetUp();
    if (!CudaDeviceAvailable()) return;
    CudaOpsOptions o;
    o.attention = GetParam();
    auto ops = MakeCudaOps(o);
    ASSERT_TRUE(ops.ok()) << ops.status();
    gpu_ = std::move(*ops);
  }
};

}  // namespace olmo::kernels::gpu_test
