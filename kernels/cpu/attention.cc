// Paged causal attention with sliding window and GQA (kernels/ops.h AttentionParams contract).
//
// One work item is (token t, kv head g): the `group = num_heads / kv_heads` query heads that read
// kv head g are processed together, so each key and value row is loaded once for all of them.
// Per query head the math is an exact two-pass softmax:
//   s_u = scale · (q · k_u)  for u in [lo, p]      (f32 dot product, fixed lane order)
//   m = max_u s_u;  e_u = exp(s_u − m) (f32);  Z = Σ_u e_u (double, ascending u)
//   out = (Σ_u e_u · v_u) / Z                      (f32 accumulation, ascending u)
// Every (token, head) result depends only on its own query, position and keys, never on the
// other tokens of the call or on the thread count: batch invariant and deterministic.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels::cpu {
namespace {

// Parallel regions only pay off above this many multiply-adds (tiny steps run on one thread).
constexpr int64_t kParallelMin = 1 << 16;

// Sum of the 8 lanes in a fixed tree: (l0+l4, l1+l5, l2+l6, l3+l7) → pairs → one.
inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// a · b over n floats in an order fixed by n: chunks of 8 alternate between two FMA
// accumulators, which are added, summed across lanes, and then the tail (n mod 8) is added
// sequentially.
inline float Dot(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), acc1);
  }
  if (j + 8 <= n) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc0);
    j += 8;
  }
  float s = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; j < n; ++j) s = std::fma(a[j], b[j], s);
  return s;
}

// y += w · x over n floats (element-wise FMA; each y[d] is its own ascending sum).
inline void Axpy(float w, const float* x, float* y, int64_t n) {
  const __m256 wv = _mm256_set1_ps(w);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    _mm256_storeu_ps(y + j, _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j)));
  }
  for (; j < n; ++j) y[j] = std::fma(w, x[j], y[j]);
}

// Number of keys token t attends to.
inline int64_t KeyCount(int64_t pos, int64_t window) {
  return window > 0 ? std::min<int64_t>(window, pos + 1) : pos + 1;
}

}  // namespace

void Attention(const AttentionParams& p, int num_threads) {
  const KvLayerView& c = p.cache;
  const int64_t dim = c.head_dim;
  const int64_t group = p.num_heads / c.kv_heads;
  // Offsets inside one block: k of kv head g at g * head_step, v at kv_step + g * head_step.
  const int64_t head_step = c.block_size * dim;
  const int64_t kv_step = c.kv_heads * head_step;
  const int64_t block_step = 2 * kv_step;

  int64_t max_keys = 0, work = 0;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int64_t n = KeyCount(p.positions[t], p.window);
    max_keys = std::max(max_keys, n);
    work += n;
  }
  work *= 2 * p.num_heads * dim;
  // Items ordered kv head major so that consecutive items of a thread reuse that head's keys.
  const int64_t items = c.kv_heads * p.num_tokens;

#pragma omp parallel num_threads(num_threads) if (work > kParallelMin)
  {
    std::vector<float> scores(static_cast<size_t>(group * max_keys));
    std::vector<float> acc(static_cast<size_t>(group * dim));
    std::vector<double> denom(static_cast<size_t>(group));
    std::vector<float> widened(static_cast<size_t>(dim));
    // The f32 row at element offset `at` of the cache: in place for f32, widened for bf16.
    auto row = [&](int64_t at) -> const float* {
      if (c.dtype != DType::kBF16) return static_cast<const float*>(c.data) + at;
      const uint16_t* b = static_cast<const uint16_t*>(c.data) + at;
      for (int64_t d = 0; d < dim; ++d) widened[d] = Bf16ToF32(b[d]);
      return widened.data();
    };
#pragma omp for schedule(dynamic, 8)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t g = item / p.num_tokens, t = item % p.num_tokens;
      const int64_t pos = p.positions[t];
      const int64_t n = KeyCount(pos, p.window);
      const int64_t lo = pos + 1 - n;
      const int32_t* table = p.block_tables + static_cast<int64_t>(p.token_seq[t]) * p.max_blocks;
      const float* q = p.q + t * p.q_stride + g * group * dim;  // heads g*group .. +group-1

      // Pass 1: scores, walking the keys block by block.
      for (int64_t u = lo; u <= pos;) {
        const int64_t block = table[u / c.block_size];
        const int64_t off = u % c.block_size;
        const int64_t run = std::min(c.block_size - off, pos + 1 - u);
        const int64_t k_at = block * block_step + g * head_step + off * dim;
        for (int64_t r = 0; r < run; ++r) {
          const float* k = row(k_at + r * dim);
          for (int64_t i = 0; i < group; ++i) {
            scores[i * n + (u - lo + r)] = Dot(q + i * dim, k, dim) * p.scale;
          }
        }
        u += run;
      }
      // Softmax numerators in place; their sum in double.
      for (int64_t i = 0; i < group; ++i) {
        float* s = scores.data() + i * n;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
        double z = 0.0;
        for (int64_t j = 0; j < n; ++j) {
          s[j] = std::exp(s[j] - mx);
          z += s[j];
        }
        denom[i] = z;
      }
      // Pass 2: weighted sum of values.
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t u = lo; u <= pos;) {
        const int64_t block = table[u / c.block_size];
        const int64_t off = u % c.block_size;
        const int64_t run = std::min(c.block_size - off, pos + 1 - u);
        const int64_t v_at = block * block_step + kv_step + g * head_step + off * dim;
        for (int64_t r = 0; r < run; ++r) {
          const float* v = row(v_at + r * dim);
          for (int64_t i = 0; i < group; ++i) {
            Axpy(scores[i * n + (u - lo + r)], v, acc.data() + i * dim, dim);
          }
        }
        u += run;
      }
      for (int64_t i = 0; i < group; ++i) {
        const float inv = static_cast<float>(1.0 / denom[i]);
        float* out = p.out + t * p.num_heads * dim + (g * group + i) * dim;
        for (int64_t d = 0; d < dim; ++d) out[d] = acc[i * dim + d] * inv;
      }
    }
  }
}

}  // namespace olmo::kernels::cpu
