// StepRunner: executes StepPlans on one rank that holds the whole model (the in-process
// StepExecutor). Keeps per-sequence worker state (block tables per KV group, sampling state),
// builds the ragged batch, runs the model and samples.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/step_executor.h"
#include "worker/kv/kv_cache.h"
#include "worker/model/olmo3_model.h"
#include "worker/sampler/sampler.h"
#include "worker/step/device_sampler.h"

namespace olmo::step {

class StepRunner final : public StepExecutor {
 public:
  // device_sampling_ops: sample with the backend's Sample op on logits left in backend memory
  // (device backends only). Otherwise the logits come to the host and sampler::Sample draws
  // (on the CPU backend at tp > 1 after the vocab-parallel reports, see below).
  StepRunner(model::Olmo3Model* model, std::unique_ptr<kv::KvCache> cache,
             kernels::Ops* device_sampling_ops = nullptr);

  const ExecutorInfo& info() const override { return info_; }
  absl::StatusOr<StepResult> Execute(const StepPlan& plan) override;
  // One pipeline stage of the plan: hidden_in is the previous stage's output (null on the first
  // stage); a non-last stage writes its output hidden states f32 [num_tokens, hidden] to
  // hidden_out and returns a result without sequences; the last stage samples.
  absl::StatusOr<StepResult> ExecuteStage(const StepPlan& plan, const float* hidden_in,
                                          std::vector<float>* hidden_out);

  // Forgets every sequence and expects step 0 next (a new engine attaches). The KV bytes stay;
  // block ids are reassigned by the new engine.
  void Reset() {
    seqs_.clear();
    next_step_id_ = 0;
  }

  // Steps executed and seconds spent inside them on this rank (busy time).
  int64_t steps_executed() const { return steps_executed_; }
  double busy_seconds() const { return busy_seconds_; }
  int64_t tokens_executed() const { return tokens_executed_; }

  // Vocab-parallel sampling (tp > 1, DESIGN.md §5; on by default): each rank reduces its logit
  // slice and the group exchanges small reports; only rows that need it (sampling without a
  // small top-k) gather full logits rows. Runs on the CPU backend and, on device backends, with
  // device sampling. Off: every step gathers every row (for comparisons).
  void set_vocab_parallel_sampling(bool on) { vocab_parallel_ = on; }
  // Sampled rows finished from slice reports, and rows whose full logits were gathered (tp > 1).
  int64_t slice_sampled_rows() const { return slice_sampled_rows_; }
  int64_t gathered_rows() const { return gathered_rows_; }

 private:
  struct SeqState {
    int32_t epoch = 0;
    bool admitted = false;
    std::array<std::vector<int32_t>, kNumKvGroups> tables;
    std::unique_ptr<sampler::SequenceState> sampling;
  };

  model::Olmo3Model* model_;
  std::unique_ptr<kv::KvCache> cache_;
  ExecutorInfo info_;
  std::unordered_map<int64_t, SeqState> seqs_;
  int64_t next_step_id_ = 0;
  int64_t steps_executed_ = 0;
  int64_t tokens_executed_ = 0;
  double busy_seconds_ = 0.0;
  std::vector<float> logits_;
  std::unique_ptr<DeviceSampler> device_sampler_;  // null: sample on the host
  std::unique_ptr<DeviceSampler> slice_sampler_;   // SampleSlice on the model's backend (tp > 1)
  bool vocab_parallel_ = true;
  int64_t slice_sampled_rows_ = 0;
  int64_t gathered_rows_ = 0;
  // The last stage's sampling of b's rows (one per sampled sequence of plan, in order).
  absl::StatusOr<std::vector<sampler::SampleOutput>> SampleStep(const StepPlan& plan,
                                                                const model::ForwardBatch& b,
                                                                kv::KvCache* cache,
                                                                const float* hidden_in);
};

}  // namespace olmo::step
