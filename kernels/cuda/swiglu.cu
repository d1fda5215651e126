// SwiGLU: out[r, j] = silu(gate[r, j]) * up[r, j], gate_up f32 [rows, 2 * dim] (gate then up).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace olmo::kernels::cuda {
namespace {

__global__ void SwiGluKernel(const float* gate_up, float* out, int64_t rows, int64_t dim) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * dim) return;
  const int64_t r = i / dim, j = i % dim;
  const float g = gate_up[r * 2 * dim + j];
  out[i] = g / (1.0f + expf(-g)) * gate_up[r * 2 * dim + dim + j];
}

}  // namespace

void SwiGlu(const SwiGluParams& p, cudaStream_t stream) {
  const int64_t n = p.rows * p.dim;
  if (n == 0) return;
  SwiGluKernel<<<Blocks(n, 256), 256, 0, stream>>>(p.gate_up, p.out, p.rows, p.dim);
}

}  // namespace olmo::kernels::cuda
