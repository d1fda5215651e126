// CudaOps: the Ops interface over the CUDA kernels and cuBLASLt (see cuda_ops.h for the
// contract). Owns the stream (unless given one), the cuBLASLt handle and workspace, the
// activation rounding buffer, and device copies of RoPE tables.
#include "kernels/cuda/cuda_ops.h"

#include <cublasLt.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "spdlog/spdlog.h"

namespace olmo::kernels {
namespace {

// A weight copied to device memory, parts stacked along rows.
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

cudaDataType_t CudaType(DType t) {
  switch (t) {
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF16: return CUDA_R_16F;
    default: return CUDA_R_32F;
  }
}

class CudaOps final : public Ops {
 public:
  ~CudaOps() override {
    for (auto& [table, copy] : rope_tables_) cudaFree(copy.device);
    cudaFree(x_lowp_);
    cudaFree(workspace_);
    if (lt_ != nullptr) cublasLtDestroy(lt_);
    if (owns_stream_) cudaStreamDestroy(stream_);
  }

  absl::Status Init(const CudaOpsOptions& o) {
    OLMO_CUDA_RETURN_IF_ERROR(cudaSetDevice(o.device));
    if (o.stream == nullptr) {
      OLMO_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      owns_stream_ = true;
    } else {
      stream_ = o.stream;
    }
    OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&lt_));
    OLMO_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace_, kWorkspaceBytes));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<PackedWeight>> PackWeight(
      std::span<const WeightView> parts) override {
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
    OLMO_CUDA_RETURN_IF_ERROR(cudaMalloc(&data, rows * cols * DTypeSize(dtype)));
    auto weight = std::make_unique<DeviceWeight>(data, dtype, rows, cols);
    char* dst = static_cast<char*>(data);
    for (const WeightView& w : parts) {
      const int64_t bytes = w.rows * w.cols * DTypeSize(dtype);
      OLMO_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, w.data, bytes, cudaMemcpyHostToDevice));
      dst += bytes;
    }
    return weight;
  }

  void Matmul(const MatmulParams& p) override {
    absl::Status st = MatmulStatus(p);
    if (!st.ok()) spdlog::critical("CUDA Matmul: {}", st.ToString());
  }

  absl::Status MatmulStatus(const MatmulParams& p) {
    const auto* w = static_cast<const DeviceWeight*>(p.w);
    const int64_t n = w->rows(), k = w->cols(), m = p.m;
    if (m == 0) return absl::OkStatus();
    const void* b = p.x;
    if (w->dtype() != DType::kF32) {
      const int64_t bytes = m * k * 2;
      if (bytes > x_lowp_bytes_) {
        cudaFree(x_lowp_);
        OLMO_CUDA_RETURN_IF_ERROR(cudaMalloc(&x_lowp_, bytes));
        x_lowp_bytes_ = bytes;
      }
      cuda::RoundActivations(p.x, m * k, w->dtype(), x_lowp_, stream_);
      b = x_lowp_;
    }
    const cudaDataType_t in_type = CudaType(w->dtype());
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a_layout = nullptr, b_layout = nullptr, c_layout = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    auto cleanup = [&] {
      if (pref) cublasLtMatmulPreferenceDestroy(pref);
      if (c_layout) cublasLtMatrixLayoutDestroy(c_layout);
      if (b_layout) cublasLtMatrixLayoutDestroy(b_layout);
      if (a_layout) cublasLtMatrixLayoutDestroy(a_layout);
      if (desc) cublasLtMatmulDescDestroy(desc);
    };
    absl::Status st = [&]() -> absl::Status {
      OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
          desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
      OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
          desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
      // A: W as column-major k x n (ld k); B: x as column-major k x m; C: y as n x m (ld n).
      OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&a_layout, in_type, k, n, k));
      OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&b_layout, in_type, k, m, k));
      OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&c_layout, CUDA_R_32F, n, m, n));
      OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
      size_t ws = kWorkspaceBytes;
      OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
          pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
      cublasLtMatmulHeuristicResult_t heuristic{};
      int found = 0;
      OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulAlgoGetHeuristic(
          lt_, desc, a_layout, b_layout, c_layout, c_layout, pref, 1, &heuristic, &found));
      if (found == 0) return absl::InternalError("cuBLASLt: no algorithm for this GEMM");
      const float alpha = 1.0f, beta = 0.0f;
      OLMO_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(lt_, desc, &alpha, w->data(), a_layout, b,
                                                 b_layout, &beta, p.y, c_layout, p.y, c_layout,
                                                 &heuristic.algo, workspace_, kWorkspaceBytes,
                                                 stream_));
      return absl::OkStatus();
    }();
    cleanup();
    return st;
  }

  void Embedding(const EmbeddingParams& p) override { cuda::Embedding(p, stream_); }
  void RmsNorm(const RmsNormParams& p) override { cuda::RmsNorm(p, stream_); }
  void SumSquares(const SumSquaresParams& p) override { cuda::SumSquares(p, stream_); }
  void RmsScale(const RmsScaleParams& p) override { cuda::RmsScale(p, stream_); }
  void Rope(const RopeParams& p) override {
    const float* inv_freq = DeviceRopeTable(p.table);
    if (inv_freq != nullptr) cuda::Rope(p, inv_freq, stream_);
  }
  void KvWrite(const KvWriteParams& p) override { cuda::KvWrite(p, stream_); }
  void Attention(const AttentionParams& p) override { cuda::Attention(p, stream_); }
  void SwiGlu(const SwiGluParams& p) override { cuda::SwiGlu(p, stream_); }
  void LogSoftmax(const LogSoftmaxParams& p) override { cuda::LogSoftmax(p, stream_); }

  bool on_device() const override { return true; }
  void* Alloc(int64_t bytes) override {
    void* p = nullptr;
    if (cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(bytes, 1))) != cudaSuccess) {
      spdlog::error("cudaMalloc of {} bytes failed", bytes);
      return nullptr;
    }
    return p;
  }
  void Free(void* p) override { cudaFree(p); }
  void Copy(void* dst, const void* src, int64_t bytes) override {
    if (bytes > 0) cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDefault, stream_);
  }
  void Zero(void* p, int64_t bytes) override {
    if (bytes > 0) cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), stream_);
  }
  void Synchronize() override {
    cudaError_t err = cudaStreamSynchronize(stream_);
    if (err != cudaSuccess) spdlog::critical("CUDA: {}", cudaGetErrorString(err));
  }

 private:
  static constexpr size_t kWorkspaceBytes = 32u << 20;

  // The device copy of a RoPE table, made on first use (a synchronous copy, once per table).
  // Keyed by address but checked by content: a table freed and another built at the same
  // address (a test loop, a reloaded model) must not reuse the old copy.
  const float* DeviceRopeTable(const RopeTable* table) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = rope_tables_.find(table);
    if (it != rope_tables_.end()) {
      if (it->second.host == table->inv_freq) return it->second.device;
      cudaFree(it->second.device);
      rope_tables_.erase(it);
    }
    float* ptr = nullptr;
    const size_t bytes = table->inv_freq.size() * sizeof(float);
    if (cudaMalloc(&ptr, bytes) != cudaSuccess ||
        cudaMemcpy(ptr, table->inv_freq.data(), bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
      spdlog::critical("CUDA Rope: cannot copy the RoPE table to the device");
      return nullptr;
    }
    rope_tables_[table] = {table->inv_freq, ptr};
    return ptr;
  }
  struct RopeCopy {
    std::vector<float> host;
    float* device = nullptr;
  };

  cudaStream_t stream_ = nullptr;
  bool owns_stream_ = false;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  void* x_lowp_ = nullptr;
  int64_t x_lowp_bytes_ = 0;
  std::mutex mu_;
  std::map<const RopeTable*, RopeCopy> rope_tables_;
};

}  // namespace

bool CudaDeviceAvailable() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

absl::StatusOr<std::unique_ptr<Ops>> MakeCudaOps(const CudaOpsOptions& options) {
  auto ops = std::make_unique<CudaOps>();
  if (absl::Status st = ops->Init(options); !st.ok()) return st;
  return std::unique_ptr<Ops>(std::move(ops));
}

}  // namespace olmo::kernels
