#include "worker/sampler/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/philox.h"

namespace olmo::sampler {

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
    seen_[id] = 1;
    if (start_pos + static_cast<int32_t>(i) >= num_prompt_tokens_) {
      ++output_counts_[id];
      ++num_output_tokens_;
    }
  }
}

void ApplyPenalties(std::span<float> logits, const SequenceState& state) {
  const SamplingParams& p = state.params();
  const auto& seen = state.seen();
  const auto& counts = state.output_counts();
  const bool rep = p.repetition_penalty != 1.0f;
  const bool pres_freq = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (!rep && !pres_freq) return;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (rep && seen[i]) {
      logits[i] = logits[i] < 0 ? logits[i] * p.repetition_penalty : logits[i] / p.repetition_penalty;
    }
    if (pres_freq && counts[i] > 0) {
      logits[i] -= p.presence_penalty + p.frequency_penalty * static_cast<float>(counts[i]);
    }
  }
}

std::vector<int32_t> FilteredSet(std::span<const float> logits, const SequenceState& state,
                                 std::vector<float>* processed) {
  const SamplingParams& p = state.params();
  const int64_t V = static_cast<int64_t>(logits.size());
  std::vector<float> z(logits.begin(), logits.end());
  ApplyPenalties(z, state);
  if (state.num_output_tokens() < p.min_tokens) {
    for (int32_t id : p.stop_token_ids) {
      if (id >= 0 && id < V) z[id] = -INFINITY;
    }
  }
  if (p.temperature == 0.0f) {  // greedy: argmax, lowest id on ties
    int32_t best = 0;
    for (int64_t i = 1; i < V; ++i) {
      if (z[i] > z[best]) best = static_cast<int32_t>(i);
    }
    if (processed) *processed = std::move(z);
    return {best};
  }
  for (auto& v : z) v /= p.temperature;
  // Candidates ordered by (logit desc, id asc); -inf never survives.
  std::vector<int32_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
  int64_t keep = V;
  if (p.top_k > 0 && p.top_k < V) {
    // HF TopKLogitsWarper keeps every token whose logit >= the k-th largest (ties kept).
    std::nth_element(ids.begin(), ids.begin() + (p.top_k - 1), ids.end(), by_logit);
    float kth = z[ids[p.top_k - 1]];
    keep = std::partition(ids.begin(), ids.end(), [&](int32_t i) { return z[i] >= kth; }) -
           ids.begin();
  }
  ids.resize(static_cast<size_t>(keep));
  std::sort(ids.begin(), ids.end(), by_logit);
  while (!ids.empty() && std::isinf(z[ids.back()]) && z[ids.back()] < 0) ids.pop_back();
  if (ids.empty()) {  // everything banned: fall back to the best raw logit
    if (processed) *processed = std::move(z);
    return {static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())};
  }
  // Softmax over the survivors (in double).
  auto probs = [&]() {
    double mx = z[ids[0]];
    std::vector<double> pr(ids.size());
    double sum = 0.0;
    for (size_t i = 0; i < ids.size(); ++i) sum += pr[i] = std::exp(z[ids[i]] - mx);
    for (auto& x : pr) x /= sum;
    return pr;
  };
  if (p.top_p < 1.0f) {
    // HF TopPLogitsWarper: drop the low tail whose cumulative mass (ascending) <= 1 - top_p;
    // at least one token stays.
    std::vector<double> pr = probs();
    double tail = 0.0;
    size_t n = ids.size();
    while (n > 1) {
      double next = tail + pr[n - 1];
      if (next <= 1.0 - static_cast<double>(p.top_p)) {
        tail = next;
        --n;
      } else {
        break;
      }
    }
    ids.resize(n);
  }
  if (p.min_p > 0.0f) {
    // HF MinPLogitsWarper: drop tokens with prob < min_p * max prob (probs over the current set).
    std::vector<double> pr = probs();
    double threshold = static_cast<double>(p.min_p) * pr[0];
    size_t n = ids.size();
    while (n > 1 && pr[n - 1] < threshold) --n;
    ids.resize(n);
  }
  if (processed) *processed = std::move(z);
  return ids;
}

SampleOutput Sample(std::span<const float> logits, const SequenceState& state, int64_t position) {
  const SamplingParams& p = state.params();
  const int64_t V = static_cast<int64_t>(logits.size());
  SampleOutput out;
  // Raw log-softmax: what logprobs report.
  float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v - mx));
  const float lse = mx + static_cast<float>(std::log(sum));

  std::vector<float> z;
  std::vector<int32_t> ids = FilteredSet(logits, state, &z);
  if (p.temperature == 0.0f || ids.size() == 1) {
    out.token_id = ids[0];
  } else {
    std::vector<double> pr(ids.size());
    double total = 0.0;
    double zmax = z[ids[0]];
    for (size_t i = 0; i < ids.size(); ++i) total += pr[i] = std::exp(z[ids[i]] - zmax);
    double u = static_cast<double>(PhiloxUniform(p.seed, static_cast<uint64_t>(position), 0)) * total;
    out.token_id = ids.back();
    double cum = 0.0;
    for (size_t i = 0; i < ids.size(); ++i) {
      cum += pr[i];
      if (cum > u) {
        out.token_id = ids[i];
        break;
      }
    }
  }
  out.logprob = logits[out.token_id] - lse;
  if (p.logprobs > 0) {
    int64_t n = std::min<int64_t>(p.logprobs, V);
    std::vector<int32_t> top(static_cast<size_t>(V));
    std::iota(top.begin(), top.end(), 0);
    std::partial_sort(top.begin(), top.begin() + n, top.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int64_t i = 0; i < n; ++i) out.top_logprobs.push_back({top[i], logits[top[i]] - lse});
  }
  return out;
}

}  // namespace olmo::sampler
