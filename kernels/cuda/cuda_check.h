// CUDA and cuBLAS errors as absl::Status carrying the failing call and file:line (DESIGN.md §7.4).
// Host-only: no device code, so CPU unit tests can include it.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace olmo::kernels::cuda {

inline absl::Status CudaStatus(cudaError_t err, const char* call, const char* file, int line) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("%s:%d: %s failed: %s (%s)", file, line, call,
                                             cudaGetErrorString(err), cudaGetErrorName(err)));
}

inline absl::Status CublasStatus(cublasStatus_t st, const char* call, const char* file, int line) {
  if (st == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("%s:%d: %s failed: cuBLAS status %d", file, line,
                                             call, static_cast<int>(st)));
}

}  // namespace olmo::kernels::cuda

#define OLMO_CUDA_RETURN_IF_ERROR(expr)                                                   \
  do {                                                                                    \
    absl::Status _st = ::olmo::kernels::cuda::CudaStatus((expr), #expr, __FILE__, __LINE__); \
    if (!_st.ok()) return _st;                                                            \
  } while (0)

#define OLMO_CUBLAS_RETURN_IF_ERROR(expr)                                                    \
  do {                                                                                       \
    absl::Status _st = ::olmo::kernels::cuda::CublasStatus((expr), #expr, __FILE__, __LINE__); \
    if (!_st.ok()) return _st;                                                               \
  } while (0)
