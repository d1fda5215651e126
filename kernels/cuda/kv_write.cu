// KV-cache write into paged blocks: cache [num_blocks][2][kv_heads][block_size][head_dim] of f32
// or bf16 (rounded to nearest even, as the CPU's F32ToBf16); token t goes to block
// slots[t] / block_size, offset slots[t] % block_size.
#include <cuda_bf16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace olmo::kernels::cuda {
namespace {

__device__ __forceinline__ void Store(float* dst, float x) { *dst = x; }
__device__ __forceinline__ void Store(__nv_bfloat16* dst, float x) {
  *dst = __float2bfloat16_rn(x);
}

template <typename T>
__global__ void KvWriteKernel(const float* k, const float* v, int64_t k_stride, int64_t v_stride,
                              int64_t num_tokens, const int64_t* slots, T* cache, int64_t kv_heads,
                              int64_t block_size, int64_t head_dim) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t row = kv_heads * head_dim;
  if (i >= num_tokens * row) return;
  const int64_t t = i / row, hd = i % row, h = hd / head_dim, d = hd % head_dim;
  const int64_t block = slots[t] / block_size, off = slots[t] % block_size;
  const int64_t base = ((block * 2) * kv_heads + h) * block_size * head_dim + off * head_dim + d;
  Store(cache + base, k[t * k_stride + hd]);
  Store(cache + base + kv_heads * block_size * head_dim, v[t * v_stride + hd]);
}

}  // namespace

void KvWrite(const KvWriteParams& p, cudaStream_t stream) {
  const int64_t n = p.num_tokens * p.cache.kv_heads * p.cache.head_dim;
  if (n == 0) return;
  const KvLayerView& c = p.cache;
  if (c.dtype == DType::kBF16) {
    KvWriteKernel<<<Blocks(n, 256), 256, 0, stream>>>(
        p.k, p.v, p.k_stride, p.v_stride, p.num_tokens, p.slots,
        static_cast<__nv_bfloat16*>(c.data), c.kv_heads, c.block_size, c.head_dim);
  } else {
    KvWriteKernel<<<Blocks(n, 256), 256, 0, stream>>>(
        p.k, p.v, p.k_stride, p.v_stride, p.num_tokens, p.slots, static_cast<float*>(c.data),
        c.kv_heads, c.block_size, c.head_dim);
  }
}

}  // namespace olmo::kernels::cuda
