// CudaOps: the Ops interface over the CUDA kernels and cuBLASLt (contract in cuda_ops.h). Owns
// the stream (unless given one), the GEMM engine, the attention split-K workspace, the sampling
// workspace and the device copies of RoPE tables. Ops return void, so an op's error (an enqueue or
// launch error, a workspace allocation, an unsupported shape) is logged (critical) with the op's
// name and kept: the next Synchronize returns the first one, and the caller fails the step.
#include "kernels/cuda/cuda_ops.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch_geometry.h"
#include "spdlog/spdlog.h"

namespace olmo::kernels {
namespace {

class CudaOps final : public Ops {
 public:
  ~CudaOps() override {
    DropGraphs();
    for (auto& [table, copy] : rope_tables_) cudaFree(copy.device);
    cudaFree(partials_);
    cudaFree(sample_workspace_);
    cudaFree(slice_workspace_);
    gemm_.reset();
    if (owns_stream_) cudaStreamDestroy(stream_);
  }

  absl::Status Init(const CudaOpsOptions& o) {
    tiled_attention_ = o.attention == CudaAttention::kTiled;
    if (o.attention == CudaAttention::kDefault) {
      const char* env = std::getenv("OLMO_CUDA_ATTENTION");
      tiled_attention_ = env != nullptr && std::string(env) == "tiled";
    }
    OLMO_CUDA_RETURN_IF_ERROR(cudaSetDevice(o.device));
    OLMO_CUDA_RETURN_IF_ERROR(
        cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, o.device));
    OLMO_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(
        &max_smem_per_block_, cudaDevAttrMaxSharedMemoryPerBlockOptin, o.device));
    if (o.stream == nullptr) {
      OLMO_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      owns_stream_ = true;
    } else {
      stream_ = o.stream;
    }
    absl::StatusOr<std::unique_ptr<cuda::MatmulEngine>> gemm = cuda::MatmulEngine::Create();
    if (!gemm.ok()) return gemm.status();
    gemm_ = std::move(*gemm);
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<PackedWeight>> PackWeight(
      std::span<const WeightView> parts) override {
    return gemm_->Pack(parts);
  }

  cudaStream_t stream() const { return stream_; }
  void Matmul(const MatmulParams& p) override {
    LogIfError(gemm_->Run(p, stream_), "Matmul");
    CheckLaunch("Matmul");
  }
  void Embedding(const EmbeddingParams& p) override {
    cuda::Embedding(p, stream_);
    CheckLaunch("Embedding");
  }
  void RmsNorm(const RmsNormParams& p) override {
    cuda::RmsNorm(p, stream_);
    CheckLaunch("RmsNorm");
  }
  void SumSquares(const SumSquaresParams& p) override {
    cuda::SumSquares(p, stream_);
    CheckLaunch("SumSquares");
  }
  void RmsScale(const RmsScaleParams& p) override {
    cuda::RmsScale(p, stream_);
    CheckLaunch("RmsScale");
  }
  void Rope(const RopeParams& p) override {
    const float* inv_freq = DeviceRopeTable(p.table);
    if (inv_freq == nullptr) return;
    cuda::Rope(p, inv_freq, stream_);
    CheckLaunch("Rope");
  }
  void KvWrite(const KvWriteParams& p) override {
    cuda::KvWrite(p, stream_);
    CheckLaunch("KvWrite");
  }
  void Attention(const AttentionParams& p) override {
    // The tiled kernel reads f32 tiles only: a bf16 cache runs on the warp kernel, and so does a
    // shape whose tiles need more shared memory than this device grants a block (head_dim 256
    // on sm_86/89: 141.5 KB against 99 KB).
    const KvLayerView& c = p.cache;
    cuda::AttentionGeometry geo;
    bool warp = !tiled_attention_ || c.dtype != DType::kF32;
    if (!warp) {
      geo = cuda::PlanAttention(p.num_tokens, p.num_heads, c.kv_heads, c.head_dim,
                                cuda::AttentionMaxContext(p.max_blocks, c.block_size, p.window),
                                num_sms_);
      if (geo.supported && geo.smem_bytes > max_smem_per_block_) {
        if (!warned_smem_) {
          spdlog::warn(
              "tiled attention: head_dim {} needs {} bytes of shared memory per block, "
              "this device grants {}: using the warp kernel",
              c.head_dim, geo.smem_bytes, max_smem_per_block_);
          warned_smem_ = true;
        }
        warp = true;
      }
    }
    if (warp) {
      if (p.cache.head_dim > 256) {
        return LogIfError(absl::InvalidArgumentError(absl::StrFormat(
                              "head_dim %d > 256 is not supported", p.cache.head_dim)),
                          "Attention");
      }
      cuda::AttentionWarp(p, stream_);
      CheckLaunch("Attention");
      return;
    }
    if (!geo.supported) {
      return LogIfError(
          absl::InvalidArgumentError(absl::StrFormat(
              "unsupported shape (heads %d, kv heads %d, head_dim %d: head_dim must be a "
              "multiple of 4 and at most %d)",
              p.num_heads, c.kv_heads, c.head_dim, cuda::kAttentionMaxHeadDim)),
          "Attention");
    }
    if (geo.partial_floats > partial_floats_) {
      // Grow-only, like the GEMM workspace: warm up with the largest step before graph capture.
      cudaFree(partials_);  // synchronizes: earlier attention calls may still use it
      partials_ = nullptr;
      partial_floats_ = 0;
      ++partial_reallocations_;  // graphs holding the old partials are stale
      absl::Status st = OLMO_CUDA_STATUS(
          cudaMalloc(&partials_, static_cast<size_t>(geo.partial_floats) * sizeof(float)));
      if (!st.ok()) return AllocFailed(st, "Attention");
      partial_floats_ = geo.partial_floats;
    }
    cuda::Attention(p, geo, partials_, stream_);
    CheckLaunch("Attention");
  }
  void SwiGlu(const SwiGluParams& p) override {
    cuda::SwiGlu(p, stream_);
    CheckLaunch("SwiGlu");
  }
  void LogSoftmax(const LogSoftmaxParams& p) override {
    cuda::LogSoftmax(p, stream_);
    CheckLaunch("LogSoftmax");
  }
  void Sample(const SampleParams& p) override {
    absl::StatusOr<int64_t> bytes = cuda::SampleWorkspaceBytes(p.rows, p.vocab);
    if (!bytes.ok()) return LogIfError(bytes.status(), "Sample");
    if (*bytes > sample_bytes_) {
      // Grow-only, like the attention partials: warm up with the largest batch before capture.
      cudaFree(sample_workspace_);  // synchronizes: earlier Sample calls may still use it
      sample_workspace_ = nullptr;
      sample_bytes_ = 0;
      absl::Status st =
          OLMO_CUDA_STATUS(cudaMalloc(&sample_workspace_, static_cast<size_t>(*bytes)));
      if (!st.ok()) return AllocFailed(st, "Sample");
      sample_bytes_ = *bytes;
    }
    LogIfError(cuda::Sample(p, sample_workspace_, sample_bytes_, stream_), "Sample");
    CheckLaunch("Sample");
  }
  void SampleSlice(const SampleSliceParams& p) override {
    const int64_t bytes = cuda::SampleSliceWorkspaceBytes(p.rows, p.vocab);
    if (bytes > slice_bytes_) {  // grow-only, as Sample's
      cudaFree(slice_workspace_);
      slice_workspace_ = nullptr;
      slice_bytes_ = 0;
      absl::Status st = OLMO_CUDA_STATUS(cudaMalloc(&slice_workspace_, static_cast<size_t>(bytes)));
      if (!st.ok()) return AllocFailed(st, "SampleSlice");
      slice_bytes_ = bytes;
    }
    LogIfError(cuda::SampleSlice(p, slice_workspace_, slice_bytes_, stream_), "SampleSlice");
    CheckLaunch("SampleSlice");
  }

  // Backend memory (kernels/ops.h): device memory; Copy and Zero are ordered on the stream.
  bool on_device() const override { return true; }
  int64_t free_memory_bytes() override {
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return 0;
    return static_cast<int64_t>(free);
  }
  void* Alloc(int64_t bytes) override {
    void* p = nullptr;
    if (cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(bytes, 1))) != cudaSuccess) {
      cudaGetLastError();  // not sticky: clear it so the next CheckLaunch does not report it
      spdlog::error("cudaMalloc of {} bytes failed", bytes);
      return nullptr;
    }
    return p;
  }
  void Free(void* p) override { cudaFree(p); }
  void Copy(void* dst, const void* src, int64_t bytes) override {
    if (bytes > 0) {
      LogIfError(OLMO_CUDA_STATUS(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes),
                                                  cudaMemcpyDefault, stream_)),
                 "Copy");
    }
  }
  void Copy2D(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width,
              int64_t rows) override {
    if (width > 0 && rows > 0) {
      LogIfError(
          OLMO_CUDA_STATUS(cudaMemcpy2DAsync(
              dst, static_cast<size_t>(dst_pitch), src, static_cast<size_t>(src_pitch),
              static_cast<size_t>(width), static_cast<size_t>(rows), cudaMemcpyDefault, stream_)),
          "Copy2D");
    }
  }
  void Zero(void* p, int64_t bytes) override {
    if (bytes > 0) {
      LogIfError(OLMO_CUDA_STATUS(cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), stream_)),
                 "Zero");
    }
  }
  bool supports_graphs() const override { return true; }
  bool BeginCapture() override {
    // Errors from here to EndCapture belong to the capture: kept apart from earlier ones.
    {
      std::lock_guard<std::mutex> lock(error_mu_);
      saved_error_ = std::exchange(first_error_, absl::OkStatus());
    }
    const cudaError_t rc = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
    if (rc != cudaSuccess) {
      cudaGetLastError();
      spdlog::warn("CUDA graph capture could not start: {}", cudaGetErrorString(rc));
      std::lock_guard<std::mutex> lock(error_mu_);
      first_error_ = std::exchange(saved_error_, absl::OkStatus());
      return false;
    }
    return true;
  }
  int64_t EndCapture() override {
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    // An op that failed while recording (before launching anything: no cuBLASLt algorithm, an
    // unsupported shape) leaves a valid graph without its node: never keep that graph. Its
    // errors are dropped with it (the caller runs the work uncaptured, which reports them), as
    // are the "capture invalidated" errors of the launches after a failure.
    absl::Status recorded;
    {
      std::lock_guard<std::mutex> lock(error_mu_);
      recorded = std::exchange(first_error_, std::exchange(saved_error_, absl::OkStatus()));
    }
    if (end != cudaSuccess || graph == nullptr || !recorded.ok()) {
      cudaGetLastError();
      spdlog::warn("CUDA graph capture failed: {}",
                   end != cudaSuccess ? cudaGetErrorString(end) : recorded.ToString());
      if (graph != nullptr) cudaGraphDestroy(graph);
      return -1;
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (inst != cudaSuccess) {
      cudaGetLastError();
      spdlog::warn("CUDA graph instantiation failed: {}", cudaGetErrorString(inst));
      return -1;
    }
    graphs_.push_back(exec);
    return static_cast<int64_t>(graphs_.size()) - 1;
  }
  int64_t workspace_epoch() const override {
    return partial_reallocations_ + (gemm_ ? gemm_->reallocations() : 0);
  }
  void LaunchGraph(int64_t handle) override {
    if (handle < 0 || handle >= static_cast<int64_t>(graphs_.size())) {
      return LogIfError(absl::InvalidArgumentError(absl::StrCat("no graph ", handle)),
                        "LaunchGraph");
    }
    LogIfError(OLMO_CUDA_STATUS(cudaGraphLaunch(graphs_[handle], stream_)), "LaunchGraph");
  }
  void DropGraphs() override {
    for (cudaGraphExec_t g : graphs_) cudaGraphExecDestroy(g);
    graphs_.clear();
  }
  absl::Status Synchronize() override {
    LogIfError(OLMO_CUDA_STATUS(cudaStreamSynchronize(stream_)), "Synchronize");
    std::lock_guard<std::mutex> lock(error_mu_);
    return std::exchange(first_error_, absl::OkStatus());
  }

 private:
  // An op's failure: logged, and kept (the first since the last Synchronize) for Synchronize to
  // return, so the step fails instead of reading whatever its output buffers held before.
  void LogIfError(const absl::Status& st, const char* op) {
    if (st.ok()) return;
    spdlog::critical("CUDA {}: {}", op, st.ToString());
    std::lock_guard<std::mutex> lock(error_mu_);
    if (first_error_.ok()) {
      first_error_ = absl::Status(st.code(), absl::StrCat("CUDA ", op, ": ", st.message()));
    }
  }
  // Kernel launches report configuration errors through cudaGetLastError (no synchronization).
  void CheckLaunch(const char* op) { LogIfError(OLMO_CUDA_STATUS(cudaGetLastError()), op); }
  // A failed cudaMalloc is returned by the next cudaGetLastError too: clear it here, so a later
  // CheckLaunch does not report it again under another op's name.
  void AllocFailed(const absl::Status& st, const char* op) {
    cudaGetLastError();
    LogIfError(st, op);
  }

  // The device copy of a RoPE table (f32 [head_dim / 2]), made on first use with a synchronous
  // copy, once per table. Keyed by the table's address but checked by content: a table freed
  // and another built at the same address (a test loop, a reloaded model) must not reuse the
  // old copy.
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
    absl::Status st = OLMO_CUDA_STATUS(cudaMalloc(&ptr, std::max<size_t>(bytes, 4)));
    if (st.ok()) {
      st = OLMO_CUDA_STATUS(cudaMemcpy(ptr, table->inv_freq.data(), bytes, cudaMemcpyHostToDevice));
    }
    if (!st.ok()) {
      cudaFree(ptr);
      AllocFailed(st, "Rope");
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
  int num_sms_ = 1;
  int max_smem_per_block_ = 48 * 1024;  // opt-in dynamic shared memory limit of the device
  bool warned_smem_ = false;
  bool tiled_attention_ = false;  // CudaAttention::kTiled (attention.cu), else attention_warp.cu
  std::unique_ptr<cuda::MatmulEngine> gemm_;
  float* partials_ = nullptr;  // attention split-K partials, f32 [partial_floats_]
  int64_t partial_floats_ = 0;
  void* slice_workspace_ = nullptr;  // SampleSlice's z (sample_slice.cu), slice_bytes_ bytes
  int64_t slice_bytes_ = 0;
  void* sample_workspace_ = nullptr;  // Sample's passes (sample.cu), sample_bytes_ bytes
  int64_t sample_bytes_ = 0;
  std::mutex mu_;
  std::map<const RopeTable*, RopeCopy> rope_tables_;
  std::mutex error_mu_;
  absl::Status first_error_;  // the first op failure since the last Synchronize
  absl::Status saved_error_;  // first_error_ as it was when the current capture began
  int64_t partial_reallocations_ = 0;
  std::vector<cudaGraphExec_t> graphs_;  // LaunchGraph handles
};

}  // namespace

cudaStream_t CudaOpsStream(Ops* ops) {
  auto* cuda = dynamic_cast<CudaOps*>(ops);
  return cuda != nullptr ? cuda->stream() : nullptr;
}

bool CudaDeviceAvailable() {
  int n = 0;
  // Without a driver this is cudaErrorInsufficientDriver (35), not cudaErrorNoDevice: any error
  // means "no usable device". Clear it so it does not leak into a later cudaGetLastError.
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

absl::StatusOr<std::unique_ptr<Ops>> MakeCudaOps(const CudaOpsOptions& options) {
  auto ops = std::make_unique<CudaOps>();
  if (absl::Status st = ops->Init(options); !st.ok()) return st;
  return std::unique_ptr<Ops>(std::move(ops));
}

}  // namespace olmo::kernels
