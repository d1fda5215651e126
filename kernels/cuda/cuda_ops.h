// The CUDA backend of kernels/ops.h. Same params structs and semantics as the CPU backend, with
// every tensor pointer inside them a DEVICE pointer (activations f32, KV cache f32, weights in
// their checkpoint dtype); RopeParams::table stays a host pointer (its device copy is cached).
// Every op is enqueued on the backend's stream with no host synchronization (graph-capturable).
// Matmul: BF16/F16 weights via cuBLASLt with the f32 activations rounded to the weight dtype and
// fp32 accumulation and output; F32 weights: fp32 GEMM (no TF32).
//
// Graph capture: a few things allocate on first use and are not capturable — the device copy
// of a RoPE table, and the grow-only GEMM rounded-activation workspace, attention split-K
// partials and Sample workspace. Run one step of the largest shape before capturing.
// Attention needs head_dim % 4 == 0 and head_dim <= 256 (launch_geometry.h).
//
// MakeCudaOps returns a Status (no device, bad device index, cuBLASLt init failure) rather than
// a null pointer; the ops themselves return void and log enqueue errors (spdlog critical).
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/ops.h"

namespace olmo::kernels {

// True when a CUDA device can be used (false without a driver or device: tests skip).
bool CudaDeviceAvailable();

// Which paged-attention kernel runs. kWarp (attention_warp.cu) is the default because it is the
// one verified on a GPU; kTiled (attention.cu: K/V tiles shared by a GQA group, async copies,
// split-K for long contexts) is built and unit-checked but has not run on a GPU yet. The
// environment variable OLMO_CUDA_ATTENTION=tiled selects it when options leave kDefault.
enum class CudaAttention { kDefault, kWarp, kTiled };

struct CudaOpsOptions {
  int device = 0;
  cudaStream_t stream = nullptr;  // nullptr: the backend creates (and owns) one
  CudaAttention attention = CudaAttention::kDefault;
};

absl::StatusOr<std::unique_ptr<Ops>> MakeCudaOps(const CudaOpsOptions& options);

// The stream a CUDA backend enqueues on (for NcclComm, so collectives are ordered with the ops);
// null when `ops` is not a CUDA backend.
cudaStream_t CudaOpsStream(Ops* ops);

}  // namespace olmo::kernels
