// RmsNorm (fused residual add), and its TP split: SumSquares (per-rank partial sums) + RmsScale.
// One block per row (about 4 columns per thread, launch_geometry.h RowThreads); the sum of squares
// is reduced in f32 (DESIGN.md §5: fp32 statistics; the CPU's double accumulation differs by
// rounding only), the scale 1/sqrt(mean + eps) in f32.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch_geometry.h"

namespace olmo::kernels::cuda {
namespace {

__device__ float RowSumSquares(const float* x, int64_t n) {
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += x[j] * x[j];
  return BlockSum(s);
}

// f32 [rows, dim] -> out = residual + w * x * inv_rms; out may alias x or residual (each element
// is read before it is written, by the same thread).
__global__ void RmsNormKernel(const float* x, const float* residual, const float* w, float* out,
                              int64_t dim, float eps) {
  const int64_t r = blockIdx.x;
  const float* xr = x + r * dim;
  const float inv = rsqrtf(RowSumSquares(xr, dim) / static_cast<float>(dim) + eps);
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float normed = w[j] * (xr[j] * inv);
    out[r * dim + j] = residual != nullptr ? residual[r * dim + j] + normed : normed;
  }
}

__global__ void SumSquaresKernel(const float* x, int64_t dim, int64_t stride, float* out) {
  const int64_t r = blockIdx.x;
  const float s = RowSumSquares(x + r * stride, dim);
  if (threadIdx.x == 0) out[r] = s;
}

__global__ void RmsScaleKernel(float* x, int64_t dim, int64_t stride, const float* sum_sq,
                               const float* w, int64_t full_dim, float eps) {
  const int64_t r = blockIdx.x;
  const float inv = rsqrtf(sum_sq[r] / static_cast<float>(full_dim) + eps);
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    x[r * stride + j] = w[j] * (x[r * stride + j] * inv);
  }
}

}  // namespace

void RmsNorm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  RmsNormKernel<<<static_cast<unsigned>(p.rows), RowThreads(p.dim, 4, 1024), 0, stream>>>(
      p.x, p.residual, p.weight, p.out, p.dim, p.eps);
}

void SumSquares(const SumSquaresParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  SumSquaresKernel<<<static_cast<unsigned>(p.rows), RowThreads(p.dim, 4, 1024), 0, stream>>>(
      p.x, p.dim, p.stride, p.out);
}

void RmsScale(const RmsScaleParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  RmsScaleKernel<<<static_cast<unsigned>(p.rows), RowThreads(p.dim, 4, 1024), 0, stream>>>(
      p.x, p.dim, p.stride, p.sum_sq, p.weight, p.full_dim, p.eps);
}

}  // namespace olmo::kernels::cuda
