#include "worker/sampler/sampler.h"

#include <algorithm>

#include "kernels/cpu/sample_row.h"

namespace olmo::sampler {
namespace {

// The Sample op's row parameters of a sequence drawing the token at `position`.
kernels::SampleRowParams RowParams(const SequenceState& state, int64_t position) {
  const SamplingParams& p = state.params();
  kernels::SampleRowParams r;
  r.temperature = p.temperature;
  r.top_k = p.top_k;
  r.top_p = p.top_p;
  r.min_p = p.min_p;
  r.repetition_penalty = p.repetition_penalty;
  r.presence_penalty = p.presence_penalty;
  r.frequency_penalty = p.frequency_penalty;
  r.num_logprobs = p.logprobs;
  r.seed = p.seed;
  r.position = position;
  r.ban_stop_ids = state.num_output_tokens() < p.min_tokens ? 1 : 0;
  return r;
}

// Output counts of state.seen_ids(), in the same order (the op's sparse penalty list).
std::vector<int32_t> PenaltyCounts(const SequenceState& state) {
  std::vector<int32_t> counts;
  counts.reserve(state.seen_ids().size());
  for (int32_t id : state.seen_ids()) counts.push_back(state.output_counts()[id]);
  return counts;
}

kernels::cpu::SampleRowInput RowInput(std::span<const float> logits, const SequenceState& state,
                                      int64_t position, const std::vector<int32_t>& counts) {
  kernels::cpu::SampleRowInput row;
  row.logits = logits;
  row.params = RowParams(state, position);
  row.penalty_ids = state.seen_ids();
  row.penalty_counts = counts;
  row.ban_ids = state.params().stop_token_ids;
  return row;
}

}  // namespace

SequenceState::SequenceState(const SamplingParams& params, int32_t num_prompt_tokens,
                             int64_t vocab_size)
    : params_(params),
      num_prompt_tokens_(num_prompt_tokens),
      output_counts_(static_cast<size_t>(vocab_size), 0),
      seen_(static_cast<size_t>(vocab_size), 0) {}

void SequenceState::Observe(std::span<const int32_t> tokens, int32_t start_pos) {
  const int64_t vocab = static_cast<int64_t>(seen_.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    int32_t id = tokens[i];
    if (id < 0 || id >= vocab) continue;
    if (!seen_[id]) seen_ids_.push_back(id);
    seen_[id] = 1;
    if (start_pos + static_cast<int32_t>(i) >= num_prompt_tokens_) {
      ++output_counts_[id];
      ++num_output_tokens_;
    }
  }
}

void ApplyPenalties(std::span<float> logits, const SequenceState& state) {
  kernels::cpu::ApplySamplePenalties(logits, RowParams(state, 0), state.seen_ids(),
                                     PenaltyCounts(state));
}

std::vector<int32_t> FilteredSet(std::span<const float> logits, const SequenceState& state,
                                 std::vector<float>* processed) {
  const std::vector<int32_t> counts = PenaltyCounts(state);
  return kernels::cpu::SampleFilteredSet(RowInput(logits, state, 0, counts), processed);
}

SampleOutput Sample(std::span<const float> logits, const SequenceState& state, int64_t position) {
  const std::vector<int32_t> counts = PenaltyCounts(state);
  const size_t capacity = static_cast<size_t>(std::max(state.params().logprobs, 0));
  std::vector<int32_t> top_ids(capacity);
  std::vector<float> top_logprobs(capacity);
  const kernels::cpu::SampleRowResult res =
      kernels::cpu::SampleRow(RowInput(logits, state, position, counts), top_ids, top_logprobs);
  SampleOutput out;
  out.token_id = res.token_id;
  out.logprob = res.logprob;
  for (int64_t i = 0; i < res.num_top; ++i)
    out.top_logprobs.push_back({top_ids[i], top_logprobs[i]});
  return out;
}

void SampleBatch::Add(const SequenceState& state, int64_t position) {
  rows.push_back(RowParams(state, position));
  penalty_ids.insert(penalty_ids.end(), state.seen_ids().begin(), state.seen_ids().end());
  for (int32_t id : state.seen_ids()) penalty_counts.push_back(state.output_counts()[id]);
  penalty_offsets.push_back(static_cast<int32_t>(penalty_ids.size()));
  ban_ids.insert(ban_ids.end(), state.params().stop_token_ids.begin(),
                 state.params().stop_token_ids.end());
  ban_offsets.push_back(static_cast<int32_t>(ban_ids.size()));
  max_logprobs = std::max<int64_t>(max_logprobs, state.params().logprobs);
}

}  // namespace olmo::sampler
