// CUDA/cuBLAS error -> absl::Status (kernels/cuda/cuda_check.h); runs without a GPU: only
// cudaGetErrorString/Name from the runtime library are called.
#include "kernels/cuda/cuda_check.h"

#include "gtest/gtest.h"

namespace olmo::kernels::cuda {
namespace {

absl::Status FailsWithCuda(cudaError_t err) {
  OLMO_CUDA_RETURN_IF_ERROR(err);
  return absl::OkStatus();
}

absl::Status FailsWithCublas(cublasStatus_t st) {
  OLMO_CUBLAS_RETURN_IF_ERROR(st);
  return absl::OkStatus();
}

int calls = 0;
cudaError_t CountedCall() {
  ++calls;
  return cudaErrorInvalidValue;
}
absl::Status EvaluatesOnce() {
  OLMO_CUDA_RETURN_IF_ERROR(CountedCall());
  return absl::OkStatus();
}

TEST(CudaCheckTest, SuccessIsOk) {
  EXPECT_TRUE(FailsWithCuda(cudaSuccess).ok());
  EXPECT_TRUE(FailsWithCublas(CUBLAS_STATUS_SUCCESS).ok());
  EXPECT_TRUE(CudaStatus(cudaSuccess, "x", "f", 1).ok());
}

TEST(CudaCheckTest, CudaErrorNamesCallFileLineAndError) {
  const absl::Status st = FailsWithCuda(cudaErrorInvalidValue);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  const std::string msg(st.message());
  EXPECT_NE(msg.find("cuda_check_test.cc:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("err failed"), std::string::npos) << msg;  // the expression text
  EXPECT_NE(msg.find("cudaErrorInvalidValue"), std::string::npos) << msg;
}

TEST(CudaCheckTest, OutOfMemoryIsResourceExhausted) {
  EXPECT_EQ(FailsWithCuda(cudaErrorMemoryAllocation).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(FailsWithCublas(CUBLAS_STATUS_ALLOC_FAILED).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(CudaCheckTest, NoDriverMessage) {
  // What a machine without a driver reports (cudaGetDeviceCount -> 35).
  const absl::Status st =
      CudaStatus(cudaErrorInsufficientDriver, "cudaGetDeviceCount(&n)", "x.cc", 7);
  EXPECT_EQ(std::string(st.message()).rfind("x.cc:7: cudaGetDeviceCount(&n) failed: ", 0), 0u)
      << st.message();
  EXPECT_NE(std::string(st.message()).find("cudaErrorInsufficientDriver"), std::string::npos);
}

TEST(CudaCheckTest, CublasStatusNames) {
  const absl::Status st = FailsWithCublas(CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_NE(std::string(st.message()).find("CUBLAS_STATUS_NOT_SUPPORTED (15)"), std::string::npos)
      << st.message();
  EXPECT_STREQ(CublasStatusName(CUBLAS_STATUS_EXECUTION_FAILED), "CUBLAS_STATUS_EXECUTION_FAILED");
  EXPECT_STREQ(CublasStatusName(static_cast<cublasStatus_t>(9999)), "CUBLAS_STATUS_UNKNOWN");
}

TEST(CudaCheckTest, ExpressionEvaluatedOnce) {
  calls = 0;
  EXPECT_FALSE(EvaluatesOnce().ok());
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace olmo::kernels::cuda
