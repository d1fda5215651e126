// SwiGlu: out = silu(gate) * up, silu(z) = z / (1 + exp(-z)), in f32.
#include <cmath>

#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels::cpu {
namespace {
// Parallel regions only pay off above this many elements (tiny steps run on one thread).
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

void SwiGlu(const SwiGluParams& p, int num_threads) {
#pragma omp parallel for num_threads(num_threads) \
    schedule(static) if (p.rows * p.dim > kParallelMin)
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* gate = p.gate_up + r * 2 * p.dim;
    const float* up = gate + p.dim;
    float* out = p.out + r * p.dim;
    for (int64_t j = 0; j < p.dim; ++j) {
      // For z < -88, exp(-z) overflows to inf and silu(z) gives -0: the true value is below
      // 1e-36 in magnitude.
      const float z = gate[j];
      const float silu = z / (1.0f + std::exp(-z));
      out[j] = silu * up[j];
    }
  }
}

}  // namespace olmo::kernels::cpu
