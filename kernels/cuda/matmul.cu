// Matmul y[m, n] = x[m, k] · W[n, k]^T through cuBLASLt (column-major view: C(n x m) =
// A^T(n x k) · B(k x m) with A = W, B = x, both "k-major"). BF16/F16 weights: x is rounded to the
// weight dtype in a device workspace, inputs bf16/f16, accumulation and output f32
// (CUBLAS_COMPUTE_32F). F32 weights: fp32 inputs with CUBLAS_COMPUTE_32F (no TF32).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace olmo::kernels::cuda {
namespace {

template <typename T>
__global__ void RoundKernel(const float* x, int64_t n, T* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  if constexpr (sizeof(T) == 2 && std::is_same_v<T, __nv_bfloat16>) {
    out[i] = __float2bfloat16_rn(x[i]);
  } else {
    out[i] = __float2half_rn(x[i]);
  }
}

}  // namespace

void RoundActivations(const float* x, int64_t count, DType dtype, void* x_lowp,
                      cudaStream_t stream) {
  if (count == 0) return;
  if (dtype == DType::kBF16) {
    RoundKernel<<<Blocks(count, 256), 256, 0, stream>>>(x, count,
                                                        static_cast<__nv_bfloat16*>(x_lowp));
  } else {
    RoundKernel<<<Blocks(count, 256), 256, 0, stream>>>(x, count, static_cast<__half*>(x_lowp));
  }
}

}  // namespace olmo::kernels::cuda
