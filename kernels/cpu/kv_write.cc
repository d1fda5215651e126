// KvWrite: copies k and v rows of new tokens into their paged-cache slots.
// Cache layout of one layer: f32 [num_blocks][2 (k, v)][kv_heads][block_size][head_dim].
#include <cassert>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels::cpu {
namespace {
// Parallel regions only pay off above this many elements (tiny steps run on one thread).
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

void KvWrite(const KvWriteParams& p, int num_threads) {
  const KvLayerView& c = p.cache;
  const size_t row_bytes = static_cast<size_t>(c.head_dim) * sizeof(float);
  // Distance between the k and the v of one (block, head, offset), and between kv heads.
  const int64_t kv_step = c.kv_heads * c.block_size * c.head_dim;
  const int64_t head_step = c.block_size * c.head_dim;
#pragma omp parallel for num_threads(num_threads) \
    schedule(static) if (p.num_tokens * c.kv_heads * c.head_dim > kParallelMin)
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int64_t slot = p.slots[t];
    // Contract: the caller passes valid slots (the block manager owns them).
    assert(slot >= 0 && slot < c.num_blocks * c.block_size);
    const int64_t block = slot / c.block_size, offset = slot % c.block_size;
    float* k_dst = c.data + block * 2 * kv_step + offset * c.head_dim;
    float* v_dst = k_dst + kv_step;
    for (int64_t h = 0; h < c.kv_heads; ++h) {
      std::memcpy(k_dst + h * head_step, p.k + t * p.k_stride + h * c.head_dim, row_bytes);
      std::memcpy(v_dst + h * head_step, p.v + t * p.v_stride + h * c.head_dim, row_bytes);
    }
  }
}

}  // namespace olmo::kernels::cpu
