// RmsNorm (with and without the fused residual add) against a double-precision loop; the split
// form SumSquares + RmsScale (TP QK-norm) bitwise equal to RmsNorm; batch invariance.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// residual + w ⊙ x / sqrt(mean(x²) + eps) in double.
double Reference(const float* x, const float* res, const float* w, int64_t dim, int64_t j,
                 double eps) {
  double ms = 0;
  for (int64_t i = 0; i < dim; ++i) ms += static_cast<double>(x[i]) * x[i];
  ms /= static_cast<double>(dim);
  return (res != nullptr ? res[j] : 0.0) + static_cast<double>(w[j]) * x[j] / std::sqrt(ms + eps);
}

TEST(RmsNorm, MatchesDoubleReference) {
  for (int64_t dim : {1, 3, 96, 4099}) {
    const int64_t rows = 7;
    auto x = Random(rows * dim, 1, 3.0f), w = Random(dim, 2), res = Random(rows * dim, 3);
    std::vector<float> plain(rows * dim), fused(rows * dim);
    cpu::RmsNorm({x.data(), nullptr, w.data(), plain.data(), rows, dim, 1e-6f}, 2);
    cpu::RmsNorm({x.data(), res.data(), w.data(), fused.data(), rows, dim, 1e-6f}, 2);
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < dim; ++j) {
        const float* xr = &x[r * dim];
        const double a = Reference(xr, nullptr, w.data(), dim, j, 1e-6);
        const double b = Reference(xr, &res[r * dim], w.data(), dim, j, 1e-6);
        worst = std::max(worst, std::fabs(plain[r * dim + j] - a) / (1 + std::fabs(a)));
        worst = std::max(worst, std::fabs(fused[r * dim + j] - b) / (1 + std::fabs(b)));
      }
    }
    EXPECT_LT(worst, 1e-6) << "dim " << dim;
  }
}

TEST(RmsNorm, OutputMayAliasInputOrResidual) {
  const int64_t rows = 4, dim = 33;
  auto x = Random(rows * dim, 4, 2.0f), w = Random(dim, 5), res = Random(rows * dim, 6);
  std::vector<float> want(rows * dim);
  cpu::RmsNorm({x.data(), res.data(), w.data(), want.data(), rows, dim, 1e-6f}, 1);
  auto in_x = x, in_res = res;
  cpu::RmsNorm({in_x.data(), res.data(), w.data(), in_x.data(), rows, dim, 1e-6f}, 1);
  cpu::RmsNorm({x.data(), in_res.data(), w.data(), in_res.data(), rows, dim, 1e-6f}, 1);
  EXPECT_EQ(in_x, want);
  EXPECT_EQ(in_res, want);
}

TEST(RmsNorm, EpsMattersForSmallInputs) {
  const int64_t dim = 16;
  auto x = Random(dim, 7, 1e-3f);
  std::vector<float> w(dim, 1.0f), a(dim), b(dim);
  cpu::RmsNorm({x.data(), nullptr, w.data(), a.data(), 1, dim, 1e-6f}, 1);
  cpu::RmsNorm({x.data(), nullptr, w.data(), b.data(), 1, dim, 1e-5f}, 1);
  EXPECT_NEAR(a[0], Reference(x.data(), nullptr, w.data(), dim, 0, 1e-6), 1e-6 * std::fabs(a[0]));
  EXPECT_NEAR(b[0], Reference(x.data(), nullptr, w.data(), dim, 0, 1e-5), 1e-6 * std::fabs(b[0]));
  EXPECT_GT(std::fabs(a[0] - b[0]), 1e-2 * std::fabs(a[0]));
}

TEST(RmsNorm, SplitFormIsBitwiseEqual) {
  for (int64_t dim : {64, 130}) {
    const int64_t rows = 5, stride = dim + 36;  // strided rows, as q inside a fused qkv row
    auto x = Random(rows * stride, 8, 2.0f), w = Random(dim, 9);
    std::vector<float> dense(rows * dim), out(rows * dim), sum_sq(rows);
    for (int64_t r = 0; r < rows; ++r) std::memcpy(&dense[r * dim], &x[r * stride], dim * 4);
    const auto untouched = x;
    cpu::RmsNorm({dense.data(), nullptr, w.data(), out.data(), rows, dim, 1e-6f}, 2);
    cpu::SumSquares({x.data(), rows, dim, stride, sum_sq.data()}, 2);
    cpu::RmsScale({x.data(), rows, dim, stride, sum_sq.data(), w.data(), dim, 1e-6f}, 2);
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_EQ(0, std::memcmp(&x[r * stride], &out[r * dim], dim * 4)) << "row " << r;
      // The padding between rows is left alone.
      for (int64_t j = dim; j < stride; ++j)
        EXPECT_EQ(x[r * stride + j], untouched[r * stride + j]);
    }
  }
}

TEST(RmsNorm, TensorParallelSplitMatchesFullWidth) {
  // Two "ranks" each hold half of a 96-wide vector: partial sums of squares, summed (the
  // all-reduce), then each half scaled with full_dim = 96.
  const int64_t rows = 3, dim = 96, half = dim / 2;
  auto x = Random(rows * dim, 10, 1.5f), w = Random(dim, 11);
  std::vector<float> want(rows * dim);
  cpu::RmsNorm({x.data(), nullptr, w.data(), want.data(), rows, dim, 1e-6f}, 1);
  std::vector<float> s0(rows), s1(rows), total(rows);
  cpu::SumSquares({x.data(), rows, half, dim, s0.data()}, 1);
  cpu::SumSquares({x.data() + half, rows, half, dim, s1.data()}, 1);
  for (int64_t r = 0; r < rows; ++r) total[r] = s0[r] + s1[r];
  cpu::RmsScale({x.data(), rows, half, dim, total.data(), w.data(), dim, 1e-6f}, 1);
  cpu::RmsScale({x.data() + half, rows, half, dim, total.data(), w.data() + half, dim, 1e-6f}, 1);
  for (int64_t i = 0; i < rows * dim; ++i)
    EXPECT_NEAR(x[i], want[i], 1e-6 * (1 + std::fabs(want[i])));
}

TEST(RmsNorm, BatchInvariant) {
  const int64_t rows = 64, dim = 1024;  // above the parallel threshold
  auto x = Random(rows * dim, 12, 2.0f), w = Random(dim, 13), res = Random(rows * dim, 14);
  std::vector<float> all(rows * dim), one(dim);
  cpu::RmsNorm({x.data(), res.data(), w.data(), all.data(), rows, dim, 1e-6f}, 2);
  for (int64_t r = 0; r < rows; ++r) {
    cpu::RmsNorm({&x[r * dim], &res[r * dim], w.data(), one.data(), 1, dim, 1e-6f}, 1);
    ASSERT_EQ(0, std::memcmp(one.data(), &all[r * dim], dim * 4)) << "row " << r;
  }
  // An unaligned copy of a row (different vectorization peel) gives the same bits.
  std::vector<float> shifted(dim + 1), res_shifted(dim + 1);
  std::memcpy(shifted.data() + 1, &x[5 * dim], dim * 4);
  std::memcpy(res_shifted.data() + 1, &res[5 * dim], dim * 4);
  cpu::RmsNorm({shifted.data() + 1, res_shifted.data() + 1, w.data(), one.data(), 1, dim, 1e-6f},
               1);
  EXPECT_EQ(0, std::memcmp(one.data(), &all[5 * dim], dim * 4));
}

}  // namespace
}  // namespace olmo::kernels
