// Row-wise CPU ops: Embedding, RmsNorm, SumSquares, RmsScale, SwiGlu, LogSoftmax. Every row's
// reduction runs in a fixed order (sequential, double accumulator) independent of the row count.
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

// Parallel regions only pay off above this many elements (tiny steps run on one thread).
constexpr int64_t kParallelMin = 1 << 15;

namespace olmo::kernels::cpu {

void Embedding(const EmbeddingParams& p, int num_threads) {
  const int64_t d = p.table.cols;
  const int64_t es = DTypeSize(p.table.dtype);
  const auto* base = static_cast<const unsigned char*>(p.table.data);
#pragma omp parallel for num_threads(num_threads) schedule(static) if (p.num_tokens * d > kParallelMin)
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    int64_t row = static_cast<int64_t>(p.token_ids[t]) - p.vocab_begin;
    float* out = p.out + t * d;
    if (row < 0 || row >= p.table.rows) {
      std::memset(out, 0, static_cast<size_t>(d) * sizeof(float));
    } else {
      ConvertToF32(base + row * d * es, p.table.dtype, d, out);
    }
  }
}

namespace {
// Sum of squares of one row in a fixed order, accumulated in double.
inline double RowSumSquares(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t j = 0; j < n; ++j) s += static_cast<double>(x[j]) * x[j];
  return s;
}
}  // namespace

void RmsNorm(const RmsNormParams& p, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static) if (p.rows * p.dim > kParallelMin)
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.x + r * p.dim;
    float* out = p.out + r * p.dim;
    const float* res = p.residual != nullptr ? p.residual + r * p.dim : nullptr;
    // Rounded to f32 as SumSquares does, so RmsNorm == SumSquares + RmsScale bitwise.
    float ss = static_cast<float>(RowSumSquares(x, p.dim));
    float inv = static_cast<float>(
        1.0 / std::sqrt(static_cast<double>(ss) / static_cast<double>(p.dim) + p.eps));
    for (int64_t j = 0; j < p.dim; ++j) {
      float v = p.weight[j] * (x[j] * inv);
      out[j] = res != nullptr ? res[j] + v : v;
    }
  }
}

void SumSquares(const SumSquaresParams& p, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static) if (p.rows * p.dim > kParallelMin)
  for (int64_t r = 0; r < p.rows; ++r) {
    p.out[r] = static_cast<float>(RowSumSquares(p.x + r * p.stride, p.dim));
  }
}

void RmsScale(const RmsScaleParams& p, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static) if (p.rows * p.dim > kParallelMin)
  for (int64_t r = 0; r < p.rows; ++r) {
    float* x = p.x + r * p.stride;
    float inv = static_cast<float>(
        1.0 / std::sqrt(static_cast<double>(p.sum_sq[r]) / static_cast<double>(p.full_dim) + p.eps));
    for (int64_t j = 0; j < p.dim; ++j) x[j] = p.weight[j] * (x[j] * inv);
  }
}

void SwiGlu(const SwiGluParams& p, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static) if (p.rows * p.dim > kParallelMin)
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* g = p.gate_up + r * 2 * p.dim;
    const float* u = g + p.dim;
    float* out = p.out + r * p.dim;
    for (int64_t j = 0; j < p.dim; ++j) {
      float z = g[j];
      out[j] = z / (1.0f + std::exp(-z)) * u[j];
    }
  }
}

void LogSoftmax(const LogSoftmaxParams& p, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static) if (p.rows * p.n > kParallelMin)
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.x + r * p.n;
    float* out = p.out + r * p.n;
    float mx = -INFINITY;
    for (int64_t j = 0; j < p.n; ++j) mx = std::max(mx, x[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < p.n; ++j) sum += std::exp(static_cast<double>(x[j] - mx));
    float lse = mx + static_cast<float>(std::log(sum));
    for (int64_t j = 0; j < p.n; ++j) out[j] = x[j] - lse;
  }
}

}  // namespace olmo::kernels::cpu
