// SwiGlu: silu(gate) * up against a double-precision loop, including large |gate|.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels {
namespace {

TEST(SwiGlu, MatchesDoubleReference) {
  const int64_t rows = 3, dim = 37;
  std::mt19937 rng(8);
  std::normal_distribution<float> nd(0.0f, 4.0f);
  std::vector<float> gu(rows * 2 * dim);
  for (auto& v : gu) v = nd(rng);
  // Extremes: silu saturates to z for large z and to 0 for very negative z, without NaN.
  gu[0] = 100.0f;
  gu[1] = -100.0f;
  gu[2] = 0.0f;
  std::vector<float> out(rows * dim);
  cpu::SwiGlu({gu.data(), out.data(), rows, dim}, 2);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < dim; ++j) {
      const double g = gu[r * 2 * dim + j], u = gu[r * 2 * dim + dim + j];
      const double want = g / (1 + std::exp(-g)) * u;
      ASSERT_TRUE(std::isfinite(out[r * dim + j]));
      EXPECT_NEAR(out[r * dim + j], want, 2e-7 * (1 + std::fabs(want))) << r << "," << j;
    }
  }
  EXPECT_FLOAT_EQ(out[0], 100.0f * gu[dim]);
  EXPECT_EQ(out[2], 0.0f);
}

TEST(SwiGlu, HandCheckedValues) {
  // silu(1) = 1 / (1 + e^-1) = 0.7310585786; silu(-2) = -2 / (1 + e^2) = -0.2384058440.
  const std::vector<float> gu = {1.0f, -2.0f, 2.0f, 3.0f};
  std::vector<float> out(2);
  cpu::SwiGlu({gu.data(), out.data(), 1, 2}, 1);
  EXPECT_NEAR(out[0], 1.4621171573, 1e-6);
  EXPECT_NEAR(out[1], -0.7152175320, 1e-6);
}

TEST(SwiGlu, BatchInvariant) {
  const int64_t rows = 40, dim = 1000;  // above the parallel threshold
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> gu(rows * 2 * dim), all(rows * dim), one(dim);
  for (auto& v : gu) v = nd(rng);
  cpu::SwiGlu({gu.data(), all.data(), rows, dim}, 2);
  for (int64_t r = 0; r < rows; ++r) {
    cpu::SwiGlu({&gu[r * 2 * dim], one.data(), 1, dim}, 1);
    ASSERT_EQ(0, std::memcmp(one.data(), &all[r * dim], dim * 4)) << "row " << r;
  }
}

}  // namespace
}  // namespace olmo::kernels
