// StepPlan / StepResult: what the engine asks a worker group to compute in one step, and what
// comes back (DESIGN.md §2). Plain structs: no gRPC, no MPI.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "common/sampling_params.h"

namespace olmo {

// KV groups: full-attention layers and sliding-window layers each own a block pool.
enum KvGroup : int { kKvGroupFull = 0, kKvGroupSliding = 1, kNumKvGroups = 2 };

// Change to one sequence's block table in one KV group.
struct BlockTableDelta {
  bool reset = false;             // clear the table first (set on (re)admission)
  std::vector<int32_t> append;    // block ids appended at the end
};

struct SeqStep {
  int64_t seq_id = 0;
  int32_t epoch = 0;                 // bumped at every (re)admission
  std::vector<int32_t> token_ids;    // prefill chunk or one decode token
  int32_t start_pos = 0;             // absolute position of token_ids[0]
  bool sample = false;               // last prompt chunk or decode: sample the next token
  BlockTableDelta blocks[kNumKvGroups];
  // Present on the first step of an (re)admission.
  std::optional<SamplingParams> sampling;
  // With `sampling`: input tokens at positions < num_prompt_tokens are prompt, later ones are
  // output (a re-admitted sequence replays prompt + output as its prefill).
  int32_t num_prompt_tokens = 0;
};

struct StepPlan {
  int64_t step_id = 0;
  std::vector<SeqStep> seqs;
  std::vector<int64_t> free_seq_ids;  // sequences whose worker state is dropped before the step
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0.0f;
};

struct SeqResult {
  int64_t seq_id = 0;
  int32_t epoch = 0;
  int32_t token_id = 0;
  float logprob = 0.0f;                 // under the unmodified model distribution
  std::vector<TokenLogprob> top_logprobs;
};

struct StepResult {
  int64_t step_id = 0;
  absl::Status status;
  std::vector<SeqResult> seqs;  // one per SeqStep with sample == true, in plan order
  double step_seconds = 0.0;
};

}  // namespace olmo
