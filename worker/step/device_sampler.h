// DeviceSampler: samples a step's rows with the backend's Sample op where the logits already are
// (a device backend: only the row parameters and penalty lists go up, and ids, logprobs and top
// logprobs — a few bytes per row — come back, instead of [rows, vocab] logits). With a
// vocab-parallel lm_head it also reduces each rank's logit slice with SampleSlice and merges the
// group's reports (worker/sampler/vocab_parallel.h), on any backend.
#pragma once

#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/ops.h"
#include "worker/comm/comm.h"
#include "worker/sampler/sampler.h"

namespace olmo::step {

class DeviceSampler {
 public:
  explicit DeviceSampler(kernels::Ops* ops);

  // logits: f32 [batch.size(), vocab] in backend memory. Returns one output per row, in order
  // (top_logprobs holds the row's params.logprobs entries, as sampler::Sample gives). Waits for
  // the backend. ResourceExhausted when the backend is out of memory.
  absl::StatusOr<std::vector<sampler::SampleOutput>> Sample(const float* logits, int64_t vocab,
                                                            const sampler::SampleBatch& batch);

  // Vocab-parallel rows. slice: this rank's logits f32 [batch.size(), vocab_local] in backend
  // memory, the columns of ids [vocab_begin, vocab_begin + vocab_local); tp: the group holding
  // the other slices (every rank calls this with its own slice and the same batch). Reduces the
  // slice with SampleSlice, all-gathers the reports over tp (in backend memory for a device Comm,
  // on the host otherwise) and merges them. Row i comes back as nullopt when it needs its full
  // logits row (the same rows on every rank). Waits for the backend.
  absl::StatusOr<std::vector<std::optional<sampler::SampleOutput>>> SampleSlices(
      const float* slice, int64_t vocab_begin, int64_t vocab_local, int64_t vocab, comm::Comm* tp,
      const sampler::SampleBatch& batch);

 private:
  // Uploads the batch's rows and lists; false when the backend is out of memory.
  bool UploadBatch(const sampler::SampleBatch& batch);
  // Points an op's row inputs (SampleParams, SampleSliceParams) at the uploaded batch.
  template <typename Params>
  void BindBatch(const sampler::SampleBatch& batch, Params* p);
  kernels::Ops* ops_;
  kernels::OpsBuffer<kernels::SampleRowParams> rows_;
  kernels::OpsBuffer<int32_t> penalty_offsets_, penalty_ids_, penalty_counts_;
  kernels::OpsBuffer<int32_t> ban_offsets_, ban_ids_, token_ids_, top_ids_;
  kernels::OpsBuffer<float> logprobs_, top_logprobs_;
  kernels::OpsBuffer<uint64_t> report_, gathered_;  // SampleSlice reports (8-byte aligned)
  std::vector<uint64_t> report_host_, gathered_host_;
};

}  // namespace olmo::step
