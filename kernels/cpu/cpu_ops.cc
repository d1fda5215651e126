// CpuOps: the Ops interface over the CPU kernels.
#include <algorithm>
#include <thread>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ops.h"

namespace olmo::kernels {
namespace {

class CpuOps final : public Ops {
 public:
  explicit CpuOps(const CpuOpsOptions& options) : options_(options) {
    if (options_.num_threads <= 0) {
      options_.num_threads = std::max(1u, std::thread::hardware_concurrency());
    }
  }

  absl::StatusOr<std::unique_ptr<PackedWeight>> PackWeight(
      std::span<const WeightView> parts) override {
    return cpu::PackWeight(parts, options_.matmul_path);
  }
  void Matmul(const MatmulParams& p) override { cpu::Matmul(p, options_.num_threads); }
  void Embedding(const EmbeddingParams& p) override { cpu::Embedding(p, options_.num_threads); }
  void RmsNorm(const RmsNormParams& p) override { cpu::RmsNorm(p, options_.num_threads); }
  void SumSquares(const SumSquaresParams& p) override {
    cpu::SumSquares(p, options_.num_threads);
  }
  void RmsScale(const RmsScaleParams& p) override { cpu::RmsScale(p, options_.num_threads); }
  void Rope(const RopeParams& p) override { cpu::Rope(p, options_.num_threads); }
  void KvWrite(const KvWriteParams& p) override { cpu::KvWrite(p, options_.num_threads); }
  void Attention(const AttentionParams& p) override { cpu::Attention(p, options_.num_threads); }
  void SwiGlu(const SwiGluParams& p) override { cpu::SwiGlu(p, options_.num_threads); }
  void LogSoftmax(const LogSoftmaxParams& p) override {
    cpu::LogSoftmax(p, options_.num_threads);
  }
  void Sample(const SampleParams& p) override { cpu::Sample(p, options_.num_threads); }
  void SampleSlice(const SampleSliceParams& p) override {
    cpu::SampleSlice(p, options_.num_threads);
  }

 private:
  CpuOpsOptions options_;
};

}  // namespace

std::unique_ptr<Ops> MakeCpuOps(const CpuOpsOptions& options) {
  return std::make_unique<CpuOps>(options);
}

}  // namespace olmo::kernels
