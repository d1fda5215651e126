// One row of the Sample op (kernels/ops.h) on the CPU: the reference implementation of the
// sampling pipeline, exposed per row so that the host sampler (worker/sampler) runs exactly this
// code on its per-sequence state.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/ops.h"

namespace olmo::kernels::cpu {

// One row of SampleParams.
struct SampleRowInput {
  std::span<const float> logits;  // f32 [vocab], raw
  SampleRowParams params;
  std::span<const int32_t> penalty_ids;     // unique ids seen in prompt or output
  std::span<const int32_t> penalty_counts;  // [penalty_ids.size()]: output occurrences
  std::span<const int32_t> ban_ids;         // applied when params.ban_stop_ids
};

struct SampleRowResult {
  int32_t token_id = 0;
  float logprob = 0.0f;  // raw log-softmax of token_id
  int64_t num_top = 0;   // entries of the top lists written
};

// Row r of a CSR list (SampleParams' penalty and ban lists); empty when offsets is null.
inline std::span<const int32_t> CsrRow(const int32_t* offsets, const int32_t* values, int64_t r) {
  if (offsets == nullptr) return {};
  return {values + offsets[r], static_cast<size_t>(offsets[r + 1] - offsets[r])};
}

// Penalties in place on z, the logits of ids [id_begin, id_begin + z.size()): repetition on
// every listed id, then presence/frequency on ids with a positive count. Ids outside the range
// are ignored.
void ApplySamplePenalties(std::span<float> z, const SampleRowParams& p,
                          std::span<const int32_t> penalty_ids,
                          std::span<const int32_t> penalty_counts, int64_t id_begin = 0);

// The top-p then min-p cuts over survivors whose processed logits zs are ordered by
// (z desc, id asc), all > -inf: how many of the first survivors stay (at least one).
size_t CutSurvivors(std::span<const float> zs, const SampleRowParams& p);

// The inverse-CDF draw over the final survivors zs (ordered as above): one Philox uniform keyed
// by (seed, position); returns the index drawn.
size_t DrawSurvivor(std::span<const float> zs, const SampleRowParams& p);

// The ids that survive penalties -> ban -> temperature -> top-k -> top-p -> min-p, ordered by
// (processed logit desc, id asc); greedy (temperature 0) gives the single argmax. `processed`
// (optional) receives the penalized, banned, temperature-scaled logits f32 [vocab].
std::vector<int32_t> SampleFilteredSet(const SampleRowInput& row,
                                       std::vector<float>* processed = nullptr);

// Samples one row. Writes n = min(num_logprobs, vocab, top_ids.size()) top raw logprobs by
// (logprob desc, id asc) and fills the rest of top_ids / top_logprobs (same size) with -1 and
// -inf.
SampleRowResult SampleRow(const SampleRowInput& row, std::span<int32_t> top_ids,
                          std::span<float> top_logprobs);

}  // namespace olmo::kernels::cpu
