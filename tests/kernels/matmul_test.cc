// Matmul against a double-precision reference, and the packed path's batch invariance: a row's
// result is bitwise the same alone, in any batch size, at any place, with any thread count.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels {
namespace {

struct Weights {
  std::vector<unsigned char> bytes;
  std::vector<double> f64;  // the exact values the bytes hold
  WeightView view;
};

Weights MakeWeights(int64_t n, int64_t k, DType dt, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Weights w;
  w.bytes.resize(static_cast<size_t>(n * k * DTypeSize(dt)));
  w.f64.resize(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < n * k; ++i) {
    float v = nd(rng);
    if (dt == DType::kBF16) {
      uint16_t b = F32ToBf16(v);
      std::memcpy(w.bytes.data() + 2 * i, &b, 2);
      w.f64[i] = Bf16ToF32(b);
    } else if (dt == DType::kF16) {
      uint16_t h = F32ToF16(v);
      std::memcpy(w.bytes.data() + 2 * i, &h, 2);
      w.f64[i] = F16ToF32(h);
    } else {
      std::memcpy(w.bytes.data() + 4 * i, &v, 4);
      w.f64[i] = v;
    }
  }
  w.view = {w.bytes.data(), dt, n, k};
  return w;
}

std::vector<float> RandomX(int64_t m, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (auto& v : x) v = nd(rng);
  return x;
}

std::vector<float> RunMatmul(const PackedWeight& w, const std::vector<float>& x, int64_t m,
                             int threads) {
  std::vector<float> y(static_cast<size_t>(m * w.rows()), -1.0f);
  cpu::Matmul({x.data(), m, &w, y.data()}, threads);
  return y;
}

void ExpectNearReference(const std::vector<float>& y, const std::vector<float>& x,
                         const Weights& w, int64_t m, int64_t n, int64_t k) {
  double worst = 0.0;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double ref = 0.0, mag = 0.0;
      for (int64_t j = 0; j < k; ++j) {
        ref += static_cast<double>(x[r * k + j]) * w.f64[c * k + j];
        mag += std::fabs(static_cast<double>(x[r * k + j]) * w.f64[c * k + j]);
      }
      double err = std::fabs(y[r * n + c] - ref) / (mag + 1e-30);
      worst = std::max(worst, err);
    }
  }
  EXPECT_LT(worst, 1e-6 * std::sqrt(static_cast<double>(k)) + 1e-6);
}

TEST(Matmul, MatchesReferenceForEveryDtypeAndPath) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (MatmulPath path : {MatmulPath::kPacked, MatmulPath::kBlas}) {
      for (auto [m, n, k] : {std::tuple{1, 70, 33}, std::tuple{5, 16, 8}, std::tuple{13, 131, 300},
                             std::tuple{64, 96, 257}}) {
        Weights w = MakeWeights(n, k, dt, 7);
        auto packed = cpu::PackWeight(std::span<const WeightView>(&w.view, 1), path);
        ASSERT_TRUE(packed.ok()) << packed.status();
        std::vector<float> x = RandomX(m, k, 11);
        ExpectNearReference(RunMatmul(**packed, x, m, 2), x, w, m, n, k);
      }
    }
  }
}

TEST(Matmul, StackedPartsEqualSeparateMatmuls) {
  Weights a = MakeWeights(40, 48, DType::kBF16, 1), b = MakeWeights(24, 48, DType::kBF16, 2);
  WeightView parts[] = {a.view, b.view};
  auto both = cpu::PackWeight(parts, MatmulPath::kPacked);
  auto pa = cpu::PackWeight(std::span<const WeightView>(&a.view, 1), MatmulPath::kPacked);
  auto pb = cpu::PackWeight(std::span<const WeightView>(&b.view, 1), MatmulPath::kPacked);
  ASSERT_TRUE(both.ok() && pa.ok() && pb.ok());
  EXPECT_EQ((*both)->rows(), 64);
  EXPECT_EQ((*both)->bytes(), 64 * 48 * 2);
  std::vector<float> x = RandomX(3, 48, 5);
  auto y = RunMatmul(**both, x, 3, 2), ya = RunMatmul(**pa, x, 3, 1), yb = RunMatmul(**pb, x, 3, 1);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(0, std::memcmp(&y[r * 64], &ya[r * 40], 40 * 4));
    EXPECT_EQ(0, std::memcmp(&y[r * 64 + 40], &yb[r * 24], 24 * 4));
  }
}

TEST(Matmul, RejectsMismatchedParts) {
  Weights a = MakeWeights(4, 8, DType::kF32, 1), b = MakeWeights(4, 9, DType::kF32, 2);
  WeightView parts[] = {a.view, b.view};
  auto r = cpu::PackWeight(parts, MatmulPath::kPacked);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("columns"), std::string::npos);
}

TEST(Matmul, PackedPathIsBatchInvariant) {
  for (DType dt : {DType::kBF16, DType::kF32}) {
    const int64_t n = 200, k = 777;  // K spans several K blocks, N has a partial panel
    Weights w = MakeWeights(n, k, dt, 3);
    auto packed = cpu::PackWeight(std::span<const WeightView>(&w.view, 1), MatmulPath::kPacked);
    ASSERT_TRUE(packed.ok());
    std::vector<float> x = RandomX(64, k, 9);
    // Each row alone (m = 1, the decode path).
    std::vector<std::vector<float>> alone;
    for (int r = 0; r < 64; ++r) {
      std::vector<float> xr(x.begin() + r * k, x.begin() + (r + 1) * k);
      alone.push_back(RunMatmul(**packed, xr, 1, 1));
    }
    for (int64_t m : {2, 3, 5, 6, 7, 8, 13, 32, 64}) {
      for (int threads : {1, 2}) {
        for (int64_t start : {int64_t{0}, 64 - m}) {
          std::vector<float> xs(x.begin() + start * k, x.begin() + (start + m) * k);
          std::vector<float> y = RunMatmul(**packed, xs, m, threads);
          for (int64_t r = 0; r < m; ++r) {
            ASSERT_EQ(0, std::memcmp(&y[r * n], alone[start + r].data(), n * 4))
                << "row " << start + r << " differs in a batch of " << m << " with " << threads
                << " threads";
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace olmo::kernels
