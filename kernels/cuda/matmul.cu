// Matmul y[m, n] = x[m, k] · W[n, k]^T through cuBLASLt, in its column-major view:
// C (n x m, ld n) = op(A) · B with A = W stored k-major (k x n, ld k, op = T) and B = x (k x m,
// ld k). BF16/F16 weights: x is rounded to the weight dtype in a device workspace, the GEMM
// runs bf16/f16 x bf16/f16 -> f32 with CUBLAS_COMPUTE_32F (fp32 accumulation, DESIGN.md §5).
// F32 weights: fp32 inputs with CUBLAS_COMPUTE_32F, which never uses TF32.
//
// Descriptors and the heuristic's algorithm are cached per (m, n, k, dtype): decode steps repeat
// the same few shapes and the heuristic query costs tens of microseconds of host time.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <map>
#include <tuple>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"

namespace olmo::kernels::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt split-K / stream-K scratch

// f32 -> bf16/f16, round to nearest even (the same rounding as the CPU's bf16 conversion).
template <typename T>
__global__ void RoundKernel(const float* __restrict__ x, int64_t n, T* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    out[i] = __float2bfloat16_rn(x[i]);
  } else {
    out[i] = __float2half_rn(x[i]);
  }
}

cudaDataType_t CudaType(DType t) {
  switch (t) {
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      return CUDA_R_32F;
  }
}

// A weight in device memory: [rows, cols] row-major in its checkpoint dtype, parts stacked.
class DeviceWeight final : public PackedWeight {
 public:
  DeviceWeight(void* data, DType dtype, int64_t rows, int64_t cols)
      : data_(data), dtype_(dtype), rows_(rows), cols_(cols) {}
  ~DeviceWeight() override { cudaFree(data_); }
  int64_t rows() const override { return rows_; }
  int64_t cols() const override { return cols_; }
  DType dtype() const override { return dtype_; }
  int64_t bytes() const override { return rows_ * cols_ * DTypeSize(dtype_); }
  const void* data() const { return data_; }

 private:
  void* data_;
  DType dtype_;
  int64_t rows_, cols_;
};

// One cached GEMM configuration.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  void Destroy() {
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

class LtMatmulEngine final : public MatmulEngine {
 public:
  ~LtMatmulEngine() override {
    for (auto& [key, plan] : plans_) plan.Destroy();
    cudaFree(x_lowp_);
    cudaFree(workspace_);
    if (lt_ != nullptr) cublasLtDestroy(lt_);
  }

  absl::Status Init() {
    OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&lt_));
    OLMO_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace_, kWorkspaceBytes));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<PackedWeight>> Pack(std::span<const WeightView> parts) override {
    if (parts.empty()) return absl::InvalidArgumentError("PackWeight: no parts");
    const DType dtype = parts[0].dtype;
    const int64_t cols = parts[0].cols;
    int64_t rows = 0;
    for (const WeightView& w : parts) {
      if (w.dtype != dtype || w.cols != cols) {
        return absl::InvalidArgumentError("PackWeight: parts differ in dtype or columns");
      }
      rows += w.rows;
    }
    if (dtype != DType::kBF16 && dtype != DType::kF16 && dtype != DType::kF32) {
      return absl::InvalidArgumentError("PackWeight: weights must be BF16, F16 or F32");
    }
    void* data = nullptr;
    OLMO_CUDA_RETURN_IF_ERROR(
        cudaMalloc(&data, std::max<int64_t>(rows * cols, 1) * DTypeSize(dtype)));
    auto weight = std::make_unique<DeviceWeight>(data, dtype, rows, cols);
    char* dst = static_cast<char*>(data);
    for (const WeightView& w : parts) {
      const int64_t bytes = w.rows * w.cols * DTypeSize(dtype);
      // Synchronous: the caller may release the host views as soon as this returns.
      OLMO_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, w.data, bytes, cudaMemcpyHostToDevice));
      dst += bytes;
    }
    return weight;
  }

  int64_t reallocations() const override { return reallocations_; }

  absl::Status Run(const MatmulParams& p, cudaStream_t stream) override {
    const auto* w = static_cast<const DeviceWeight*>(p.w);
    const int64_t n = w->rows(), k = w->cols(), m = p.m;
    if (m == 0 || n == 0) return absl::OkStatus();
    const void* b = p.x;
    if (w->dtype() != DType::kF32) {
      // Grow-only: a model warms this up with its largest step before any graph capture.
      const int64_t bytes = m * k * 2;
      if (bytes > x_lowp_bytes_) {
        cudaFree(x_lowp_);  // synchronizes the device: earlier GEMMs may still read it
        x_lowp_ = nullptr;
        x_lowp_bytes_ = 0;
        ++reallocations_;  // before the allocation: the old buffer is gone either way
        OLMO_CUDA_RETURN_IF_ERROR(cudaMalloc(&x_lowp_, bytes));
        x_lowp_bytes_ = bytes;
      }
      const unsigned grid = static_cast<unsigned>(GridFor(m * k, 256));
      if (w->dtype() == DType::kBF16) {
        RoundKernel<<<grid, 256, 0, stream>>>(p.x, m * k, static_cast<__nv_bfloat16*>(x_lowp_));
      } else {
        RoundKernel<<<grid, 256, 0, stream>>>(p.x, m * k, static_cast<__half*>(x_lowp_));
      }
      b = x_lowp_;
    }
    absl::StatusOr<const Plan*> plan = GetPlan(m, n, k, w->dtype());
    if (!plan.ok()) return plan.status();
    const float alpha = 1.0f, beta = 0.0f;
    OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(
        lt_, (*plan)->desc, &alpha, w->data(), (*plan)->a, b, (*plan)->b, &beta, p.y, (*plan)->c,
        p.y, (*plan)->c, &(*plan)->algo, workspace_, kWorkspaceBytes, stream));
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<const Plan*> GetPlan(int64_t m, int64_t n, int64_t k, DType dtype) {
    const auto key = std::make_tuple(m, n, k, dtype);
    if (auto it = plans_.find(key); it != plans_.end()) return &it->second;
    Plan plan;
    absl::Status st = MakePlan(m, n, k, dtype, &plan);
    if (!st.ok()) {
      plan.Destroy();
      return st;
    }
    return &plans_.emplace(key, plan).first->second;
  }

  absl::Status MakePlan(int64_t m, int64_t n, int64_t k, DType dtype, Plan* plan) {
    const cudaDataType_t in_type = CudaType(dtype);
    OLMO_CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    OLMO_CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    OLMO_CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, in_type, k, n, k));
    OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, in_type, k, m, k));
    OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->c, CUDA_R_32F, n, m, n));
    cublasLtMatmulPreference_t pref = nullptr;
    OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = kWorkspaceBytes;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    cublasLtMatmulHeuristicResult_t heuristic{};
    int found = 0;
    if (s == CUBLAS_STATUS_SUCCESS) {
      s = cublasLtMatmulAlgoGetHeuristic(lt_, plan->desc, plan->a, plan->b, plan->c, plan->c, pref,
                                         1, &heuristic, &found);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    OLMO_CUBLAS_RETURN_IF_ERROR(s);
    if (found == 0) {
      return absl::InternalError(absl::StrFormat("cuBLASLt: no algorithm for m=%d n=%d k=%d %s", m,
                                                 n, k, DTypeName(dtype)));
    }
    plan->algo = heuristic.algo;
    return absl::OkStatus();
  }

  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  void* x_lowp_ = nullptr;  // bf16/f16 [m, k] rounded activations
  int64_t x_lowp_bytes_ = 0;
  int64_t reallocations_ = 0;
  std::map<std::tuple<int64_t, int64_t, int64_t, DType>, Plan> plans_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MatmulEngine>> MatmulEngine::Create() {
  auto engine = std::make_unique<LtMatmulEngine>();
  if (absl::Status st = engine->Init(); !st.ok()) return st;
  return std::unique_ptr<MatmulEngine>(std::move(engine));
}

}  // namespace olmo::kernels::cuda
