// Token sampling on the last pipeline stage (DESIGN.md §5): raw log-softmax (reported logprobs)
// -> penalties -> min_tokens ban -> temperature -> top-k -> top-p -> min-p -> Philox draw.
// The per-sequence state lives here; the math is the Sample op's CPU reference
// (kernels/cpu/sample_row.h), which these functions call on one row.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/plan.h"
#include "kernels/ops.h"
#include "common/sampling_params.h"

namespace olmo::sampler {

// Per-sequence sampling state: parameters and token counts (prompt vs output) for penalties.
class SequenceState {
 public:
  SequenceState(const SamplingParams& params, int32_t num_prompt_tokens, int64_t vocab_size);

  // Records input tokens at absolute positions start_pos, start_pos + 1, ...; positions
  // < num_prompt_tokens are prompt, the rest output. Ids outside [0, vocab) are ignored.
  void Observe(std::span<const int32_t> tokens, int32_t start_pos);

  const SamplingParams& params() const { return params_; }
  int32_t num_prompt_tokens() const { return num_prompt_tokens_; }
  int32_t num_output_tokens() const { return num_output_tokens_; }
  // Occurrences of each id among output tokens, and whether it occurs in prompt or output.
  const std::vector<int32_t>& output_counts() const { return output_counts_; }
  const std::vector<uint8_t>& seen() const { return seen_; }
  // The ids with seen() set, in order of first occurrence (each once).
  const std::vector<int32_t>& seen_ids() const { return seen_ids_; }

 private:
  SamplingParams params_;
  int32_t num_prompt_tokens_ = 0;
  int32_t num_output_tokens_ = 0;
  std::vector<int32_t> output_counts_;  // [vocab]
  std::vector<uint8_t> seen_;           // [vocab], prompt or output
  std::vector<int32_t> seen_ids_;       // sparse form of seen_
};

struct SampleOutput {
  int32_t token_id = 0;
  float logprob = 0.0f;  // raw log-softmax of token_id
  std::vector<TokenLogprob> top_logprobs;  // params.logprobs entries, by (logprob desc, id asc)
};

// Penalties in place: HF repetition penalty over prompt + output (logit < 0 ? * r : / r), then
// OpenAI presence/frequency over output counts.
void ApplyPenalties(std::span<float> logits, const SequenceState& state);

// The ids that survive penalties -> min_tokens ban -> temperature -> top-k -> top-p -> min-p,
// ordered by (processed logit desc, id asc); greedy (temperature 0) gives the single argmax.
// `processed` (optional) receives the penalized, temperature-scaled logits.
std::vector<int32_t> FilteredSet(std::span<const float> logits, const SequenceState& state,
                                 std::vector<float>* processed = nullptr);

// Samples the token at absolute position `position` from raw f32 logits [vocab]: one Philox
// uniform keyed by (seed, position), inverse CDF over the filtered set.
SampleOutput Sample(std::span<const float> logits, const SequenceState& state, int64_t position);

// The Sample op's inputs (kernels/ops.h SampleParams) for a batch of rows, on the host: row
// parameters and the CSR penalty and ban lists. Row r draws the token at positions[r].
struct SampleBatch {
  std::vector<kernels::SampleRowParams> rows;
  std::vector<int32_t> penalty_offsets = {0};
  std::vector<int32_t> penalty_ids;
  std::vector<int32_t> penalty_counts;
  std::vector<int32_t> ban_offsets = {0};
  std::vector<int32_t> ban_ids;
  int64_t max_logprobs = 0;  // the largest params.logprobs of the rows

  void Add(const SequenceState& state, int64_t position);
  int64_t size() const { return static_cast<int64_t>(rows.size()); }
};

}  // namespace olmo::sampler
