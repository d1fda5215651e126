// Launchers of the CUDA kernels, one .cu per op (named like kernels/cpu/*.cc). Each enqueues on
// `stream` and returns without synchronizing (graph-capturable); launch errors surface at the
// caller's cudaGetLastError check. Every pointer in the params is a device pointer.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <span>

#include "absl/status/statusor.h"
#include "kernels/cuda/launch_geometry.h"
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
// attention.cu: geo from PlanAttention for this call; partials: device f32
// [geo.partial_floats] when geo.num_splits > 1 (else unused, may be null).
void Attention(const AttentionParams& p, const AttentionGeometry& geo, float* partials,
               cudaStream_t stream);
// attention_warp.cu: one warp per (token, query head); no geometry, no partials. f32 head_dim
// <= 256.
void AttentionWarp(const AttentionParams& p, cudaStream_t stream);
// swiglu.cu
void SwiGlu(const SwiGluParams& p, cudaStream_t stream);
// log_softmax.cu
void LogSoftmax(const LogSoftmaxParams& p, cudaStream_t stream);
// sample.cu: workspace: device memory of at least SampleWorkspaceBytes(p.rows, p.vocab) bytes
// (rows go through it in passes of at most 64; 16 bytes per row and vocab entry). Errors are
// launch or cub dispatch failures.
absl::StatusOr<int64_t> SampleWorkspaceBytes(int64_t rows, int64_t vocab);
absl::Status Sample(const SampleParams& p, void* workspace, int64_t workspace_bytes,
                    cudaStream_t stream);
// sample_slice.cu: workspace: device memory of at least SampleSliceWorkspaceBytes(p.rows,
// p.vocab) bytes (the processed logits of a pass of at most 64 rows). Errors are bad arguments or
// launch failures.
int64_t SampleSliceWorkspaceBytes(int64_t rows, int64_t vocab);
absl::Status SampleSlice(const SampleSliceParams& p, void* workspace, int64_t workspace_bytes,
                         cudaStream_t stream);

// matmul.cu: device weights and cuBLASLt GEMMs. One engine per Ops (not thread-safe: one
// stream, one caller thread).
class MatmulEngine {
 public:
  static absl::StatusOr<std::unique_ptr<MatmulEngine>> Create();
  virtual ~MatmulEngine() = default;
  // Copies the parts (stacked along rows, same cols and dtype: BF16, F16 or F32) to the device.
  virtual absl::StatusOr<std::unique_ptr<PackedWeight>> Pack(std::span<const WeightView> parts) = 0;
  // y (f32 [m, n]) = x (f32 [m, k]) · W^T, enqueued on `stream`.
  virtual absl::Status Run(const MatmulParams& p, cudaStream_t stream) = 0;
  // How many times Run reallocated its input workspace (graphs captured before hold the old one).
  virtual int64_t reallocations() const = 0;
};

}  // namespace olmo::kernels::cuda
