// Log-softmax over rows (f32, max-subtracted): out = x - (max + log Σ exp(x - max)). One block
// per row; out may alias x (each thread reads its elements before writing them, after both
// reductions).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch_geometry.h"

namespace olmo::kernels::cuda {
namespace {

__global__ void LogSoftmaxKernel(const float* x, float* out, int64_t n) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  float* yr = out + static_cast<int64_t>(blockIdx.x) * n;
  float m = -FLT_MAX;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, xr[j]);
  m = BlockMax(m);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += expf(xr[j] - m);
  s = BlockSum(s);
  const float lse = m + logf(s);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = xr[j] - lse;
}

}  // namespace

void LogSoftmax(const LogSoftmaxParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  LogSoftmaxKernel<<<static_cast<unsigned>(p.rows), RowThreads(p.n, 4, 1024), 0, stream>>>(
      p.x, p.out, p.n);
}

}  // namespace olmo::kernels::cuda
