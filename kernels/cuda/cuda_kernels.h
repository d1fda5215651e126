// Launchers of the CUDA kernels, one .cu per op (named like kernels/cpu/*.cc). Each enqueues on
// `stream` and returns without synchronizing; launch errors surface at the next checked call.
#pragma once

#include <cuda_runtime.h>

#include "kernels/ops.h"

namespace olmo::kernels::cuda {

// embedding.cu
void Embedding(const EmbeddingParams& p, cudaStream_t stream);
// rms_norm.cu
void RmsNorm(const RmsNormParams& p, cudaStream_t stream);
void SumSquares(const SumSquaresParams& p, cudaStream_t stream);
void RmsScale(const RmsScaleParams& p, cudaStream_t stream);
// rope.cu: inv_freq is the DEVICE copy of p.table->inv_freq (f32 [head_dim / 2]).
void Rope(const RopeParams& p, const float* inv_freq, cudaStream_t stream);
// kv_write.cu
void KvWrite(const KvWriteParams& p, cudaStream_t stream);
// attention.cu
void Attention(const AttentionParams& p, cudaStream_t stream);
// swiglu.cu
void SwiGlu(const SwiGluParams& p, cudaStream_t stream);
// log_softmax.cu
void LogSoftmax(const LogSoftmaxParams& p, cudaStream_t stream);
// matmul.cu: x (f32 [m, k]) rounded to `dtype` into `x_lowp` ([m, k] of that dtype).
void RoundActivations(const float* x, int64_t count, DType dtype, void* x_lowp,
                      cudaStream_t stream);

}  // namespace olmo::kernels::cuda
