// LogSoftmax: against a double-precision loop, probabilities summing to 1, large and -inf
// logits, aliasing, batch invariance.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

TEST(LogSoftmax, MatchesDoubleReferenceAndNormalizes) {
  const int64_t rows = 4, n = 1001;
  auto x = Random(rows * n, 9, 5.0f);
  x[17] = 80.0f;         // exp(80) overflows f32 without the max subtraction
  x[n + 3] = -INFINITY;  // a masked logit
  for (int64_t j = 0; j < n; ++j) x[2 * n + j] = -1000.0f + 0.001f * static_cast<float>(j);
  std::vector<float> out(rows * n);
  cpu::LogSoftmax({x.data(), out.data(), rows, n}, 2);
  for (int64_t r = 0; r < rows; ++r) {
    double mx = -INFINITY, sum = 0, mass = 0;
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, static_cast<double>(x[r * n + j]));
    for (int64_t j = 0; j < n; ++j) sum += std::exp(x[r * n + j] - mx);
    for (int64_t j = 0; j < n; ++j) {
      const double want = x[r * n + j] - mx - std::log(sum);
      if (std::isinf(want)) {
        EXPECT_EQ(out[r * n + j], -INFINITY);
        continue;
      }
      EXPECT_NEAR(out[r * n + j], want, 2e-6 * (1 + std::fabs(want))) << r << "," << j;
      mass += std::exp(static_cast<double>(out[r * n + j]));
    }
    EXPECT_NEAR(mass, 1.0, 1e-5) << "row " << r;
  }
  EXPECT_NEAR(out[17], 0.0, 1e-6);  // one dominant logit takes all the mass
}

TEST(LogSoftmax, HandCheckedValues) {
  // log_softmax([0, ln 3]) = [ln(1/4), ln(3/4)].
  const std::vector<float> x = {0.0f, static_cast<float>(std::log(3.0))};
  std::vector<float> out(2);
  cpu::LogSoftmax({x.data(), out.data(), 1, 2}, 1);
  EXPECT_NEAR(out[0], std::log(0.25), 1e-7);
  EXPECT_NEAR(out[1], std::log(0.75), 1e-7);
}

TEST(LogSoftmax, InPlaceAndBatchInvariant) {
  const int64_t rows = 9, n = 5003;  // above the parallel threshold
  auto x = Random(rows * n, 10, 3.0f);
  std::vector<float> all(rows * n), one(n);
  cpu::LogSoftmax({x.data(), all.data(), rows, n}, 2);
  for (int64_t r = 0; r < rows; ++r) {
    cpu::LogSoftmax({&x[r * n], one.data(), 1, n}, 1);
    ASSERT_EQ(0, std::memcmp(one.data(), &all[r * n], n * 4)) << "row " << r;
  }
  cpu::LogSoftmax({x.data(), x.data(), rows, n}, 2);
  EXPECT_EQ(x, all);
}

}  // namespace
}  // namespace olmo::kernels
