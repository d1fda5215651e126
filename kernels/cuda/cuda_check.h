// CUDA runtime and cuBLAS errors as absl::Status naming the failing call and its file:line
// (DESIGN.md §7.4). Host-only and header-only, with no device code and no cuBLAS calls, so CPU
// unit tests (tests/kernels_cuda_host) include it and need only the CUDA runtime library.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace olmo::kernels::cuda {

// The enumerator name of a cuBLAS status ("CUBLAS_STATUS_NOT_SUPPORTED"), written out here
// rather than through cublasGetStatusName so that this header needs no cuBLAS library.
inline const char* CublasStatusName(cublasStatus_t st) {
  switch (st) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
    default:
      return "CUBLAS_STATUS_UNKNOWN";
  }
}

// OK for cudaSuccess; otherwise Internal ("file:line: call failed: message (cudaErrorName)"),
// or ResourceExhausted for cudaErrorMemoryAllocation so callers can tell "too big" apart.
inline absl::Status CudaStatus(cudaError_t err, const char* call, const char* file, int line) {
  if (err == cudaSuccess) return absl::OkStatus();
  std::string msg = absl::StrFormat("%s:%d: %s failed: %s (%s)", file, line, call,
                                    cudaGetErrorString(err), cudaGetErrorName(err));
  if (err == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

// OK for CUBLAS_STATUS_SUCCESS; otherwise Internal ("file:line: call failed: NAME (code)"),
// ResourceExhausted for CUBLAS_STATUS_ALLOC_FAILED.
inline absl::Status CublasStatus(cublasStatus_t st, const char* call, const char* file, int line) {
  if (st == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  std::string msg = absl::StrFormat("%s:%d: %s failed: %s (%d)", file, line, call,
                                    CublasStatusName(st), static_cast<int>(st));
  if (st == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

}  // namespace olmo::kernels::cuda

// Evaluates a cudaError_t expression once; returns its Status from the enclosing function when
// it is not cudaSuccess.
#define OLMO_CUDA_RETURN_IF_ERROR(expr)                                       \
  do {                                                                        \
    absl::Status olmo_cuda_st_ =                                              \
        ::olmo::kernels::cuda::CudaStatus((expr), #expr, __FILE__, __LINE__); \
    if (!olmo_cuda_st_.ok()) return olmo_cuda_st_;                            \
  } while (0)

// Same for a cublasStatus_t expression.
#define OLMO_CUBLAS_RETURN_IF_ERROR(expr)                                       \
  do {                                                                          \
    absl::Status olmo_cublas_st_ =                                              \
        ::olmo::kernels::cuda::CublasStatus((expr), #expr, __FILE__, __LINE__); \
    if (!olmo_cublas_st_.ok()) return olmo_cublas_st_;                          \
  } while (0)

// The Status of a cudaError_t expression (for callers that log rather than return).
#define OLMO_CUDA_STATUS(expr) ::olmo::kernels::cuda::CudaStatus((expr), #expr, __FILE__, __LINE__)
