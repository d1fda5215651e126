// AttentionWarp: the simple paged attention kernel, the DEFAULT of the CUDA backend because it is
// the one verified on a GPU (H100 and H200, 2026-11-22: every gpu test and the model fixtures;
// since then only its loops changed, unrolled over kMaxPerLane: not yet rerun on a GPU).
// attention.cu holds the tiled, GQA-sharing, split-K kernel (CudaAttention::kTiled), not yet run
// on a GPU.
//
// Paged causal attention (decode and prefill chunks, sliding window, GQA) over the cache
// [num_blocks][2][kv_heads][block_size][head_dim] of f32 or bf16 (widened exactly to f32; the bf16
// instantiation has not run on a GPU yet). One warp per (query token, query head): the
// lanes split head_dim (up to 8 elements each, head_dim <= 256), each key's dot product is a
// warp-shuffle reduction, and the softmax is online in f32 (running max and sum), so any context
// length runs in one pass with registers only. Keys outside [lo, p] are never read, so a sliding
// layer touches only the blocks inside its window.
//
// Its limits (measured 227-235 GB/s effective at batch 64 x 4k context, before q and acc moved
// from local memory to registers: not measured since): each KV row is read
// once per query head of its group, and each key costs a warp reduction on the critical path.
#include <cuda_bf16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace olmo::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kMaxPerLane = 8;  // head_dim <= 256

__device__ __forceinline__ float Widen(float x) { return x; }
__device__ __forceinline__ float Widen(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__global__ void AttentionWarpKernel(AttentionParams p) {
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= p.num_tokens * p.num_heads) return;
  const int64_t t = warp / p.num_heads, h = warp % p.num_heads;
  const int64_t D = p.cache.head_dim, bs = p.cache.block_size, kvh = p.cache.kv_heads;
  const int64_t g = h / (p.num_heads / kvh);
  const int64_t pos = p.positions[t];
  const int64_t lo = p.window > 0 ? max(static_cast<int64_t>(0), pos - p.window + 1) : 0;
  const int32_t* table = p.block_tables + static_cast<int64_t>(p.token_seq[t]) * p.max_blocks;
  const int per_lane = static_cast<int>((D + 31) / 32);

  // Loops run over all kMaxPerLane slots, unrolled, with `e < per_lane` guards: constant indices
  // keep q and acc in registers (a runtime bound put them in local memory).
  float q[kMaxPerLane], acc[kMaxPerLane];
  const float* qrow = p.q + t * p.q_stride + h * D;
#pragma unroll
  for (int e = 0; e < kMaxPerLane; ++e) {
    const int64_t d = lane + 32 * e;
    q[e] = e < per_lane && d < D ? qrow[d] * p.scale : 0.0f;
    acc[e] = 0.0f;
  }
  float running_max = -FLT_MAX, running_sum = 0.0f;
  const int64_t plane = kvh * bs * D;  // k plane to v plane of one block
  for (int64_t u = lo; u <= pos; ++u) {
    const int64_t block = table[u / bs];
    const T* k =
        static_cast<const T*>(p.cache.data) + (block * 2 * kvh + g) * bs * D + (u % bs) * D;
    const T* v = k + plane;
    float dot = 0.0f;
#pragma unroll
    for (int e = 0; e < kMaxPerLane; ++e) {
      const int64_t d = lane + 32 * e;
      if (e < per_lane && d < D) dot += q[e] * Widen(k[d]);
    }
    dot = WarpSum(dot);
    const float new_max = fmaxf(running_max, dot);
    const float correction = expf(running_max - new_max);
    const float weight = expf(dot - new_max);
    running_sum = running_sum * correction + weight;
#pragma unroll
    for (int e = 0; e < kMaxPerLane; ++e) {
      const int64_t d = lane + 32 * e;
      if (e < per_lane) acc[e] = acc[e] * correction + (d < D ? weight * Widen(v[d]) : 0.0f);
    }
    running_max = new_max;
  }
  float* out = p.out + (t * p.num_heads + h) * D;
  const float inv = 1.0f / running_sum;
#pragma unroll
  for (int e = 0; e < kMaxPerLane; ++e) {
    const int64_t d = lane + 32 * e;
    if (e < per_lane && d < D) out[d] = acc[e] * inv;
  }
}

}  // namespace

void AttentionWarp(const AttentionParams& p, cudaStream_t stream) {
  const int64_t warps = p.num_tokens * p.num_heads;
  if (warps == 0) return;
  if (p.cache.dtype == DType::kBF16) {
    AttentionWarpKernel<__nv_bfloat16>
        <<<Blocks(warps, kWarpsPerBlock), kWarpsPerBlock * 32, 0, stream>>>(p);
  } else {
    AttentionWarpKernel<float>
        <<<Blocks(warps, kWarpsPerBlock), kWarpsPerBlock * 32, 0, stream>>>(p);
  }
}

}  // namespace olmo::kernels::cuda
