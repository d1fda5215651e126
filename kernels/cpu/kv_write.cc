// KvWrite: copies k and v rows of new tokens into their paged-cache slots.
// Cache layout of one layer: [num_blocks][2 (k, v)][kv_heads][block_size][head_dim] of f32 or
// bf16 (rounded to nearest even).
#include <cassert>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels::cpu {
namespace {
// Parallel regions only pay off above this many elements (tiny steps run on one thread).
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

namespace {

// One head row of head_dim floats into the cache's element type.
inline void StoreRow(float* dst, const float* src, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
inline void StoreRow(uint16_t* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = F32ToBf16(src[i]);
}

template <typename T>
void KvWriteAs(const KvWriteParams& p, int num_threads) {
  const KvLayerView& c = p.cache;
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
    T* k_dst = static_cast<T*>(c.data) + block * 2 * kv_step + offset * c.head_dim;
    T* v_dst = k_dst + kv_step;
    for (int64_t h = 0; h < c.kv_heads; ++h) {
      StoreRow(k_dst + h * head_step, p.k + t * p.k_stride + h * c.head_dim, c.head_dim);
      StoreRow(v_dst + h * head_step, p.v + t * p.v_stride + h * c.head_dim, c.head_dim);
    }
  }
}

}  // namespace

void KvWrite(const KvWriteParams& p, int num_threads) {
  if (p.cache.dtype == DType::kBF16) {
    KvWriteAs<uint16_t>(p, num_threads);
  } else {
    KvWriteAs<float>(p, num_threads);
  }
}

}  // namespace olmo::kernels::cpu
