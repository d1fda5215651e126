// LogSoftmax over rows: out = (x - max) - log Σ exp(x - max). The exponentials are f32, their sum
// is accumulated in double in index order (fixed, batch invariant), the log taken in double.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels::cpu {
namespace {
// Parallel regions only pay off above this many elements (tiny steps run on one thread).
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

void LogSoftmax(const LogSoftmaxParams& p, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static) if (p.rows * p.n > kParallelMin)
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.x + r * p.n;
    float* out = p.out + r * p.n;
    float mx = -INFINITY;
    for (int64_t j = 0; j < p.n; ++j) mx = std::max(mx, x[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < p.n; ++j) sum += static_cast<double>(std::exp(x[j] - mx));
    const float log_sum = static_cast<float>(std::log(sum));
    // out may alias x: element j is read before it is written.
    for (int64_t j = 0; j < p.n; ++j) out[j] = (x[j] - mx) - log_sum;
  }
}

}  // namespace olmo::kernels::cpu
