// Rotate-half RoPE in place. One thread per (token, head, j < head_dim/2). The angle is the f32
// product f32(p) * inv_freq[j] as in HF; cos/sin in full precision (never the __sinf intrinsics,
// whose error grows with the angle), then scaled by the table's attention factor.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace olmo::kernels::cuda {
namespace {

__global__ void RopeKernel(float* x, int64_t num_tokens, int64_t num_heads, int64_t half,
                           int64_t stride, const int32_t* positions, const float* inv_freq,
                           float amp) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= num_tokens * num_heads * half) return;
  const int64_t j = i % half;
  const int64_t h = (i / half) % num_heads;
  const int64_t t = i / (half * num_heads);
  const float angle = static_cast<float>(positions[t]) * inv_freq[j];
  const float c = static_cast<float>(cos(static_cast<double>(angle))) * amp;
  const float s = static_cast<float>(sin(static_cast<double>(angle))) * amp;
  float* v = x + t * stride + h * 2 * half;
  const float a = v[j], b = v[j + half];
  v[j] = a * c - b * s;
  v[j + half] = b * c + a * s;
}

}  // namespace

void Rope(const RopeParams& p, const float* inv_freq, cudaStream_t stream) {
  const int64_t half = p.head_dim / 2;
  const int64_t n = p.num_tokens * p.num_heads * half;
  if (n == 0) return;
  RopeKernel<<<Blocks(n, 256), 256, 0, stream>>>(p.x, p.num_tokens, p.num_heads, half, p.stride,
                                                 p.positions, inv_freq, p.table->attention_scale);
}

}  // namespace olmo::kernels::cuda
