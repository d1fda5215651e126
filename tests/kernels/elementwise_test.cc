// Embedding, RmsNorm (+ the SumSquares/RmsScale split used by TP QK-norm), SwiGlu and LogSoftmax
// against double-precision loops.
#include <cmath>
#include <cstring>
#include <random>

#include "common/dtype.h"
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

TEST(Embedding, GathersRowsAndMasksOutsideTheSlice) {
  const int64_t V = 10, d = 6;
  std::vector<uint16_t> table(V * d);
  for (int64_t i = 0; i < V * d; ++i) table[i] = F32ToBf16(static_cast<float>(i) * 0.25f);
  // This rank holds vocab rows [4, 10).
  WeightView slice{table.data() + 4 * d, DType::kBF16, 6, d};
  std::vector<int32_t> ids = {4, 9, 3, 7, 0};
  std::vector<float> out(ids.size() * d, -1.0f);
  cpu::Embedding({ids.data(), 5, slice, 4, out.data()}, 2);
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int64_t j = 0; j < d; ++j) {
      float want = ids[t] >= 4 ? static_cast<float>(ids[t] * d + j) * 0.25f : 0.0f;
      EXPECT_EQ(out[t * d + j], want);
    }
  }
}

TEST(RmsNorm, MatchesReferenceWithResidual) {
  const int64_t rows = 7, dim = 96;
  auto x = Random(rows * dim, 1, 3.0f), w = Random(dim, 2), res = Random(rows * dim, 3);
  std::vector<float> out(rows * dim);
  cpu::RmsNorm({x.data(), res.data(), w.data(), out.data(), rows, dim, 1e-6f}, 2);
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0;
    for (int64_t j = 0; j < dim; ++j) ms += static_cast<double>(x[r * dim + j]) * x[r * dim + j];
    double inv = 1.0 / std::sqrt(ms / dim + 1e-6);
    for (int64_t j = 0; j < dim; ++j) {
      EXPECT_NEAR(out[r * dim + j], res[r * dim + j] + w[j] * x[r * dim + j] * inv, 1e-5);
    }
  }
}

TEST(RmsNorm, EpsMattersForSmallInputs) {
  const int64_t dim = 16;
  auto x = Random(dim, 4, 1e-3f);
  std::vector<float> w(dim, 1.0f), a(dim), b(dim);
  cpu::RmsNorm({x.data(), nullptr, w.data(), a.data(), 1, dim, 1e-6f}, 1);
  cpu::RmsNorm({x.data(), nullptr, w.data(), b.data(), 1, dim, 1e-5f}, 1);
  EXPECT_GT(std::fabs(a[0] - b[0]), 1e-2 * std::fabs(a[0]));
}

TEST(RmsNorm, SplitFormIsBitwiseEqual) {
  const int64_t rows = 5, dim = 64, stride = 100;
  auto x = Random(rows * stride, 5, 2.0f), w = Random(dim, 6);
  std::vector<float> dense(rows * dim), out(rows * dim), sum_sq(rows);
  for (int64_t r = 0; r < rows; ++r) std::memcpy(&dense[r * dim], &x[r * stride], dim * 4);
  cpu::RmsNorm({dense.data(), nullptr, w.data(), out.data(), rows, dim, 1e-6f}, 2);
  cpu::SumSquares({x.data(), rows, dim, stride, sum_sq.data()}, 2);
  cpu::RmsScale({x.data(), rows, dim, stride, sum_sq.data(), w.data(), dim, 1e-6f}, 2);
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(0, std::memcmp(&x[r * stride], &out[r * dim], dim * 4)) << "row " << r;
  }
  // Partial sums over two halves, added, give the full-width norm (the TP form).
  auto y = Random(dim, 7, 2.0f);
  float s0, s1;
  cpu::SumSquares({y.data(), 1, dim / 2, dim, &s0}, 1);
  cpu::SumSquares({y.data() + dim / 2, 1, dim / 2, dim, &s1}, 1);
  double full = 0;
  for (float v : y) full += static_cast<double>(v) * v;
  EXPECT_NEAR(s0 + s1, full, 1e-4 * full);
}

TEST(SwiGlu, MatchesReference) {
  const int64_t rows = 3, dim = 20;
  auto gu = Random(rows * 2 * dim, 8, 4.0f);
  std::vector<float> out(rows * dim);
  cpu::SwiGlu({gu.data(), out.data(), rows, dim}, 2);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < dim; ++j) {
      double g = gu[r * 2 * dim + j], u = gu[r * 2 * dim + dim + j];
      EXPECT_NEAR(out[r * dim + j], g / (1 + std::exp(-g)) * u, 1e-5 * (1 + std::fabs(g * u)));
    }
  }
}

TEST(LogSoftmax, NormalizesAndMatchesReference) {
  const int64_t rows = 4, n = 1001;
  auto x = Random(rows * n, 9, 5.0f);
  x[17] = 80.0f;  // a large value must not overflow
  std::vector<float> out(rows * n);
  cpu::LogSoftmax({x.data(), out.data(), rows, n}, 2);
  for (int64_t r = 0; r < rows; ++r) {
    double mx = -1e30, sum = 0, mass = 0;
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, static_cast<double>(x[r * n + j]));
    for (int64_t j = 0; j < n; ++j) sum += std::exp(x[r * n + j] - mx);
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_NEAR(out[r * n + j], x[r * n + j] - mx - std::log(sum), 1e-5);
      mass += std::exp(static_cast<double>(out[r * n + j]));
    }
    EXPECT_NEAR(mass, 1.0, 1e-5);
  }
}

}  // namespace
}  // namespace olmo::kernels
