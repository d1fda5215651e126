// RmsNorm, and the same math split in two steps for a width sharded over TP ranks (QK-norm):
// SumSquares (per-rank partial sums, all-reduced by the caller) then RmsScale.
//
// Batch invariance: a row's sum of squares runs in one fixed order that depends only on `dim`
// (four double accumulators over j mod 4, combined as (s0 + s1) + (s2 + s3), then the tail).
// RmsNorm rounds that sum to f32 exactly as SumSquares does and shares RmsScale's scale formula,
// so RmsNorm(x) == RmsScale(x, SumSquares(x)) bitwise when full_dim == dim.
#include <cmath>

#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels::cpu {
namespace {

// Parallel regions only pay off above this many elements (tiny steps run on one thread).
constexpr int64_t kParallelMin = 1 << 15;

// Σ x[j]² of one row in double, in the fixed order described above, rounded to f32.
float RowSumSquares(const float* x, int64_t n) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const double a = x[j], b = x[j + 1], c = x[j + 2], d = x[j + 3];
    s0 += a * a;
    s1 += b * b;
    s2 += c * c;
    s3 += d * d;
  }
  double s = (s0 + s1) + (s2 + s3);
  for (; j < n; ++j) s += static_cast<double>(x[j]) * x[j];
  return static_cast<float>(s);
}

// 1 / sqrt(sum_sq / full_dim + eps), in double, rounded to f32 (HF: rsqrt(mean + eps) in f32).
float InvRms(float sum_sq, int64_t full_dim, float eps) {
  const double mean = static_cast<double>(sum_sq) / static_cast<double>(full_dim);
  return static_cast<float>(1.0 / std::sqrt(mean + static_cast<double>(eps)));
}

}  // namespace

void RmsNorm(const RmsNormParams& p, int num_threads) {
#pragma omp parallel for num_threads(num_threads) \
    schedule(static) if (p.rows * p.dim > kParallelMin)
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.x + r * p.dim;
    const float* res = p.residual != nullptr ? p.residual + r * p.dim : nullptr;
    float* out = p.out + r * p.dim;
    const float inv = InvRms(RowSumSquares(x, p.dim), p.dim, p.eps);
    // out may alias x or residual: element j is read before it is written.
    if (res != nullptr) {
      for (int64_t j = 0; j < p.dim; ++j) {
        const float normed = p.weight[j] * (x[j] * inv);
        out[j] = res[j] + normed;
      }
    } else {
      for (int64_t j = 0; j < p.dim; ++j) out[j] = p.weight[j] * (x[j] * inv);
    }
  }
}

void SumSquares(const SumSquaresParams& p, int num_threads) {
#pragma omp parallel for num_threads(num_threads) \
    schedule(static) if (p.rows * p.dim > kParallelMin)
  for (int64_t r = 0; r < p.rows; ++r) p.out[r] = RowSumSquares(p.x + r * p.stride, p.dim);
}

void RmsScale(const RmsScaleParams& p, int num_threads) {
#pragma omp parallel for num_threads(num_threads) \
    schedule(static) if (p.rows * p.dim > kParallelMin)
  for (int64_t r = 0; r < p.rows; ++r) {
    float* x = p.x + r * p.stride;
    const float inv = InvRms(p.sum_sq[r], p.full_dim, p.eps);
    for (int64_t j = 0; j < p.dim; ++j) x[j] = p.weight[j] * (x[j] * inv);
  }
}

}  // namespace olmo::kernels::cpu
