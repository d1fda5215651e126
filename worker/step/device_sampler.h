// DeviceSampler: samples a step's rows with the backend's Sample op where the logits already are
// (a device backend: only the row parameters and penalty lists go up, and ids, logprobs and top
// logprobs — a few bytes per row — come back, instead of [rows, vocab] logits).
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "kernels/ops.h"
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

 private:
  kernels::Ops* ops_;
  kernels::OpsBuffer<kernels::SampleRowParams> rows_;
  kernels::OpsBuffer<int32_t> penalty_offsets_, penalty_ids_, penalty_counts_;
  kernels::OpsBuffer<int32_t> ban_offsets_, ban_ids_, token_ids_, top_ids_;
  kernels::OpsBuffer<float> logprobs_, top_logprobs_;
};

}  // namespace olmo::step
