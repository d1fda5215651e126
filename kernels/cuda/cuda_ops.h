// The CUDA backend of kernels/ops.h. Same params structs and semantics as the CPU backend, with
// every tensor pointer inside them a DEVICE pointer (activations f32, KV cache f32, weights in
// their checkpoint dtype); RopeParams::table stays a host pointer (its device copy is cached).
// Every op is enqueued on the backend's stream with no host synchronization (graph-capturable).
// Matmul: BF16/F16 weights via cuBLASLt with the f32 activations rounded to the weight dtype and
// fp32 accumulation and output; F32 weights: fp32 GEMM (no TF32).
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/ops.h"

namespace olmo::kernels {

// True when a CUDA device can be used (false without a driver or device: tests skip).
bool CudaDeviceAvailable();

struct CudaOpsOptions {
  int device = 0;
  cudaStream_t stream = nullptr;  // nullptr: the backend creates (and owns) one
};

absl::StatusOr<std::unique_ptr<Ops>> MakeCudaOps(const CudaOpsOptions& options);

}  // namespace olmo::kernels
