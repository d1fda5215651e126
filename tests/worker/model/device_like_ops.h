// DeviceLikeCpuOps: the CPU kernels behind a backend that says it is a device (on_device() is
// true). The model then takes its device path on the CPU — workspaces, weights and the KV cache
// in backend memory, step inputs staged in, logits and hidden states copied out, collectives
// staged through host memory — so CI checks that orchestration without a GPU. Fresh backend
// memory is filled with NaN bytes: a buffer the model forgets to write or copy shows up. With
// graphs_enabled it also emulates CUDA graphs: ops between BeginCapture and EndCapture are
// recorded (params by value) and replayed by LaunchGraph; a capture that copies host memory,
// allocates, frees or synchronizes fails, as it would on CUDA. A device-like Comm can Enqueue its
// collectives here: they are then captured and replayed with the ops, as NCCL calls are.
// failing_op makes one op fail the way CudaOps reports failures (through Synchronize).
#pragma once

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/ops.h"

namespace olmo::testing {

class DeviceLikeCpuOps final : public kernels::Ops {
 public:
  DeviceLikeCpuOps() : cpu_(kernels::MakeCpuOps({1, kernels::MatmulPath::kPacked})) {}

  absl::StatusOr<std::unique_ptr<kernels::PackedWeight>> PackWeight(
      std::span<const kernels::WeightView> parts) override {
    return cpu_->PackWeight(parts);
  }
  // Each op runs now, or is recorded while a graph is being captured (params by value, so a
  // replay uses the pointers of capture time, as a CUDA graph does).
  void Matmul(const kernels::MatmulParams& p) override {
    Run("Matmul", [=, this] { cpu_->Matmul(p); });
  }
  void Embedding(const kernels::EmbeddingParams& p) override {
    Run("Embedding", [=, this] { cpu_->Embedding(p); });
  }
  void RmsNorm(const kernels::RmsNormParams& p) override {
    Run("RmsNorm", [=, this] { cpu_->RmsNorm(p); });
  }
  void SumSquares(const kernels::SumSquaresParams& p) override {
    Run("SumSquares", [=, this] { cpu_->SumSquares(p); });
  }
  void RmsScale(const kernels::RmsScaleParams& p) override {
    Run("RmsScale", [=, this] { cpu_->RmsScale(p); });
  }
  void Rope(const kernels::RopeParams& p) override {
    Run("Rope", [=, this] { cpu_->Rope(p); });
  }
  void KvWrite(const kernels::KvWriteParams& p) override {
    Run("KvWrite", [=, this] { cpu_->KvWrite(p); });
  }
  // Also emulates CudaOps' grow-only split-K partials (sized here by max_blocks): a larger step
  // reallocates them (workspace_epoch changes, not allowed inside a capture), and a replay of a
  // graph recorded before that counts as a stale replay: on CUDA it would use freed memory.
  void Attention(const kernels::AttentionParams& p) override {
    if (p.max_blocks > partial_blocks_) {
      capture_failed_ |= capturing_;
      partial_blocks_ = p.max_blocks;
      ++workspace_epoch_;
    }
    const int64_t epoch = workspace_epoch_;
    Run("Attention", [=, this] {
      if (epoch != workspace_epoch_) ++stale_replays;
      cpu_->Attention(p);
    });
  }
  void SwiGlu(const kernels::SwiGluParams& p) override {
    Run("SwiGlu", [=, this] { cpu_->SwiGlu(p); });
  }
  void LogSoftmax(const kernels::LogSoftmaxParams& p) override {
    Run("LogSoftmax", [=, this] { cpu_->LogSoftmax(p); });
  }
  void Sample(const kernels::SampleParams& p) override {
    Run("Sample", [=, this] { cpu_->Sample(p); });
  }
  void SampleSlice(const kernels::SampleSliceParams& p) override {
    Run("SampleSlice", [=, this] { cpu_->SampleSlice(p); });
  }

  // Copies inside a capture must stay in backend memory (a host copy is not capturable on CUDA).
  void Copy(void* dst, const void* src, int64_t bytes) override {
    CheckCapturable(dst, bytes);
    CheckCapturable(src, bytes);
    Run([=] { std::memcpy(dst, src, static_cast<size_t>(bytes)); });
  }
  void Copy2D(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width,
              int64_t rows) override {
    CheckCapturable(dst, rows > 0 ? (rows - 1) * dst_pitch + width : 0);
    CheckCapturable(src, rows > 0 ? (rows - 1) * src_pitch + width : 0);
    Run([=, this] { kernels::Ops::Copy2D(dst, dst_pitch, src, src_pitch, width, rows); });
  }
  void Zero(void* p, int64_t bytes) override {
    CheckCapturable(p, bytes);
    Run([=] { std::memset(p, 0, static_cast<size_t>(bytes)); });
  }
  absl::Status Synchronize() override {
    capture_failed_ |= capturing_;
    return std::exchange(error_, absl::OkStatus());
  }
  // Fault injection, as CudaOps reports an op's failure: while set, the op of this name (e.g.
  // "Sample") does not run, its outputs keep what they held, and the next Synchronize returns an
  // InternalError naming it.
  std::string failing_op;

  bool supports_graphs() const override { return graphs_enabled; }
  bool graphs_enabled = false;
  int64_t graph_launches = 0;
  int64_t workspace_epoch() const override { return workspace_epoch_; }
  int64_t stale_replays = 0;
  int64_t captures = 0;  // graphs recorded
  // Fault injection: while set, BeginCapture fails (kBegin) or EndCapture does (kEnd).
  enum class CaptureFault { kNone, kBegin, kEnd };
  CaptureFault capture_fault = CaptureFault::kNone;
  bool BeginCapture() override {
    if (capture_fault == CaptureFault::kBegin) return false;
    capturing_ = true;
    capture_failed_ = capture_fault == CaptureFault::kEnd;
    recording_.clear();
    saved_error_ = std::exchange(error_, absl::OkStatus());
    return true;
  }
  // As CudaOps: an op error while recording fails the capture, and is dropped with it.
  int64_t EndCapture() override {
    capturing_ = false;
    capture_failed_ |= !std::exchange(error_, std::exchange(saved_error_, absl::OkStatus())).ok();
    if (capture_failed_) return -1;
    ++captures;
    graphs_.push_back(std::move(recording_));
    recording_.clear();
    return static_cast<int64_t>(graphs_.size()) - 1;
  }
  void LaunchGraph(int64_t handle) override {
    ++graph_launches;
    for (auto& f : graphs_.at(static_cast<size_t>(handle))) f();
  }
  void DropGraphs() override { graphs_.clear(); }

  // Work a device-like Comm puts on this backend's "stream" (stream-ordered collectives): run now,
  // or recorded into the graph being captured, like the ops.
  void Enqueue(std::function<void()> f) { Run(std::move(f)); }

  bool on_device() const override { return true; }
  // What a device would report as free: set by tests of the KV memory plan (0 = unknown).
  int64_t free_memory_bytes() override { return free_bytes; }
  int64_t free_bytes = 0;
  void* Alloc(int64_t bytes) override {
    capture_failed_ |= capturing_;  // no allocation inside a capture
    void* p = kernels::Ops::Alloc(bytes);
    if (p != nullptr) {
      std::memset(p, 0xff, static_cast<size_t>(bytes));  // NaN floats
      allocations_[static_cast<char*>(p)] = bytes;
    }
    return p;
  }
  void Free(void* p) override {
    capture_failed_ |= capturing_;
    allocations_.erase(static_cast<char*>(p));
    kernels::Ops::Free(p);
  }

 private:
  void Run(const char* op, std::function<void()> f) {
    if (failing_op == op) {
      if (error_.ok()) error_ = absl::InternalError(std::string(op) + " failed (injected)");
      return;
    }
    Run(std::move(f));
  }
  void Run(std::function<void()> f) {
    if (capturing_) {
      recording_.push_back(std::move(f));
    } else {
      f();
    }
  }
  // Inside a capture, [p, p + bytes) must lie in one backend allocation.
  void CheckCapturable(const void* p, int64_t bytes) {
    if (!capturing_) return;
    const char* c = static_cast<const char*>(p);
    auto it = allocations_.upper_bound(const_cast<char*>(c));
    if (it == allocations_.begin() || c + bytes > std::prev(it)->first + std::prev(it)->second) {
      capture_failed_ = true;
    }
  }

  std::unique_ptr<kernels::Ops> cpu_;
  bool capturing_ = false, capture_failed_ = false;
  std::vector<std::function<void()>> recording_;
  std::vector<std::vector<std::function<void()>>> graphs_;
  std::map<char*, int64_t> allocations_;
  absl::Status error_, saved_error_;
  int64_t partial_blocks_ = 0, workspace_epoch_ = 0;
};

}  // namespace olmo::testing
