// DeviceLikeCpuOps: the CPU kernels behind a backend that says it is a device (on_device() is
// true). The model then takes its device path on the CPU — workspaces, weights and the KV cache
// in backend memory, step inputs staged in, logits and hidden states copied out, collectives
// staged through host memory — so CI checks that orchestration without a GPU. Fresh backend
// memory is filled with NaN bytes: a buffer the model forgets to write or copy shows up.
#pragma once

#include <cstring>
#include <memory>

#include "kernels/ops.h"

namespace olmo::testing {

class DeviceLikeCpuOps final : public kernels::Ops {
 public:
  DeviceLikeCpuOps() : cpu_(kernels::MakeCpuOps({1, kernels::MatmulPath::kPacked})) {}

  absl::StatusOr<std::unique_ptr<kernels::PackedWeight>> PackWeight(
      std::span<const kernels::WeightView> parts) override {
    return cpu_->PackWeight(parts);
  }
  void Matmul(const kernels::MatmulParams& p) override { cpu_->Matmul(p); }
  void Embedding(const kernels::EmbeddingParams& p) override { cpu_->Embedding(p); }
  void RmsNorm(const kernels::RmsNormParams& p) override { cpu_->RmsNorm(p); }
  void SumSquares(const kernels::SumSquaresParams& p) override { cpu_->SumSquares(p); }
  void RmsScale(const kernels::RmsScaleParams& p) override { cpu_->RmsScale(p); }
  void Rope(const kernels::RopeParams& p) override { cpu_->Rope(p); }
  void KvWrite(const kernels::KvWriteParams& p) override { cpu_->KvWrite(p); }
  void Attention(const kernels::AttentionParams& p) override { cpu_->Attention(p); }
  void SwiGlu(const kernels::SwiGluParams& p) override { cpu_->SwiGlu(p); }
  void LogSoftmax(const kernels::LogSoftmaxParams& p) override { cpu_->LogSoftmax(p); }
  void Sample(const kernels::SampleParams& p) override { cpu_->Sample(p); }

  bool on_device() const override { return true; }
  // What a device would report as free: set by tests of the KV memory plan (0 = unknown).
  int64_t free_memory_bytes() override { return free_bytes; }
  int64_t free_bytes = 0;
  void* Alloc(int64_t bytes) override {
    void* p = kernels::Ops::Alloc(bytes);
    if (p != nullptr) std::memset(p, 0xff, static_cast<size_t>(bytes));  // NaN floats
    return p;
  }

 private:
  std::unique_ptr<kernels::Ops> cpu_;
};

}  // namespace olmo::testing
