// KvWrite and paged causal attention with sliding window and GQA (kernels/ops.h contracts).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels::cpu {
namespace {

// Pointer to k (which = 0) or v (which = 1) of kv head `h` at `slot` in one layer's cache.
inline float* CacheRow(const KvLayerView& c, int64_t block, int64_t offset, int which, int64_t h) {
  return c.data + (((block * 2 + which) * c.kv_heads + h) * c.block_size + offset) * c.head_dim;
}

}  // namespace

void KvWrite(const KvWriteParams& p, int num_threads) {
  const KvLayerView& c = p.cache;
#pragma omp parallel for num_threads(num_threads) schedule(static) if (p.num_tokens * c.kv_heads * c.head_dim > (1 << 15))
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    int64_t block = p.slots[t] / c.block_size, offset = p.slots[t] % c.block_size;
    for (int64_t h = 0; h < c.kv_heads; ++h) {
      std::memcpy(CacheRow(c, block, offset, 0, h), p.k + t * p.k_stride + h * c.head_dim,
                  static_cast<size_t>(c.head_dim) * sizeof(float));
      std::memcpy(CacheRow(c, block, offset, 1, h), p.v + t * p.v_stride + h * c.head_dim,
                  static_cast<size_t>(c.head_dim) * sizeof(float));
    }
  }
}

void Attention(const AttentionParams& p, int num_threads) {
  const KvLayerView& c = p.cache;
  const int64_t D = c.head_dim;
  const int64_t group = p.num_heads / c.kv_heads;
  const int64_t pairs = p.num_tokens * p.num_heads;
  // Work estimate: keys visited x head_dim over every (token, head) pair.
  int64_t work = 0;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    work += p.window > 0 ? std::min<int64_t>(p.window, p.positions[t] + 1) : p.positions[t] + 1;
  }
  work *= p.num_heads * D;
#pragma omp parallel num_threads(num_threads) if (work > (1 << 16))
  {
    std::vector<float> scores;
    std::vector<double> acc(static_cast<size_t>(D));
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < pairs; ++i) {
      const int64_t t = i / p.num_heads, h = i % p.num_heads;
      const int64_t g = h / group;
      const int64_t pos = p.positions[t];
      const int64_t lo = p.window > 0 ? std::max<int64_t>(0, pos - p.window + 1) : 0;
      const int32_t* table = p.block_tables + static_cast<int64_t>(p.token_seq[t]) * p.max_blocks;
      const float* q = p.q + t * p.q_stride + h * D;
      const int64_t n = pos - lo + 1;
      scores.resize(static_cast<size_t>(n));
      float mx = -INFINITY;
      for (int64_t u = lo; u <= pos; ++u) {
        const float* k = CacheRow(c, table[u / c.block_size], u % c.block_size, 0, g);
        float dot = 0.0f;
        for (int64_t d = 0; d < D; ++d) dot += q[d] * k[d];
        float s = dot * p.scale;
        scores[u - lo] = s;
        mx = std::max(mx, s);
      }
      double sum = 0.0;
      for (int64_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(scores[j] - mx));
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t u = lo; u <= pos; ++u) {
        const double w = std::exp(static_cast<double>(scores[u - lo] - mx)) / sum;
        const float* v = CacheRow(c, table[u / c.block_size], u % c.block_size, 1, g);
        for (int64_t d = 0; d < D; ++d) acc[d] += w * v[d];
      }
      float* out = p.out + t * p.num_heads * D + h * D;
      for (int64_t d = 0; d < D; ++d) out[d] = static_cast<float>(acc[d]);
    }
  }
}

}  // namespace olmo::kernels::cpu
