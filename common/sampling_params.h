// Per-request sampling parameters (DESIGN.md §5). Plain data shared by the engine, the worker's
// sampler and the tools.
#pragma once

#include <cstdint>
#include <vector>

namespace olmo {

struct SamplingParams {
  float temperature = 1.0f;  // 0 -> greedy (argmax after penalties and the min_tokens ban)
  int32_t top_k = 0;         // 0 -> off
  float top_p = 1.0f;        // in (0, 1]; 1 -> off
  float min_p = 0.0f;        // in [0, 1]; 0 -> off
  float repetition_penalty = 1.0f;  // HF semantics, over prompt + output; 1 -> off
  float presence_penalty = 0.0f;    // OpenAI semantics, over output only
  float frequency_penalty = 0.0f;   // OpenAI semantics, over output only
  int32_t min_tokens = 0;  // stop ids are banned while fewer output tokens than this exist
  uint64_t seed = 0;       // Philox key; the engine assigns one to every unseeded request
  int32_t logprobs = 0;    // number of top logprobs to return per token (0..20)
  // Ids banned while output < min_tokens (the model's eos ids plus request stop ids).
  std::vector<int32_t> stop_token_ids;
};

}  // namespace olmo
