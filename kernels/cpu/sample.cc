// Sample (kernels/ops.h) on the CPU, the reference of the CUDA kernel: one row at a time, rows in
// parallel (each row's result depends on that row only). Per row: a dense copy of the logits,
// penalties and the ban applied sparsely, an nth_element + sort of the top-k candidates by
// (z desc, id asc), softmax mass in double summed in that order.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/philox.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/sample_row.h"

namespace olmo::kernels::cpu {
namespace {

// a * b rounded to f32 on its own. Out of line so that the compiler cannot fuse it with the
// addition that follows into an FMA (this library is built with -mfma): the penalty must round
// the product and the sum separately, as the CUDA kernel does (__fmul_rn, __fadd_rn).
[[gnu::noinline]] float RoundedProduct(float a, float b) { return a * b; }

// Softmax over the ordered values (zs[0] the largest), in double, normalized.
std::vector<double> Probabilities(std::span<const float> zs) {
  const double mx = zs[0];
  std::vector<double> pr(zs.size());
  double sum = 0.0;
  for (size_t i = 0; i < zs.size(); ++i) sum += pr[i] = std::exp(zs[i] - mx);
  for (auto& x : pr) x /= sum;
  return pr;
}

}  // namespace

void ApplySamplePenalties(std::span<float> z, const SampleRowParams& p,
                          std::span<const int32_t> penalty_ids,
                          std::span<const int32_t> penalty_counts, int64_t id_begin) {
  const bool rep = p.repetition_penalty != 1.0f;
  const bool pres_freq = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (!rep && !pres_freq) return;
  const int64_t vocab = static_cast<int64_t>(z.size());
  for (size_t k = 0; k < penalty_ids.size(); ++k) {
    const int64_t id = penalty_ids[k] - id_begin;
    if (id < 0 || id >= vocab) continue;
    float v = z[id];
    if (rep) v = v < 0 ? v * p.repetition_penalty : v / p.repetition_penalty;
    if (pres_freq && penalty_counts[k] > 0) {
      v -= p.presence_penalty +
           RoundedProduct(p.frequency_penalty, static_cast<float>(penalty_counts[k]));
    }
    z[id] = v;
  }
}

size_t CutSurvivors(std::span<const float> zs, const SampleRowParams& p) {
  size_t n = zs.size();
  if (p.top_p < 1.0f && n > 1) {
    // HF TopPLogitsWarper: drop the low tail whose cumulative mass (ascending) <= 1 - top_p;
    // at least one token stays.
    std::vector<double> pr = Probabilities(zs);
    double tail = 0.0;
    while (n > 1) {
      double next = tail + pr[n - 1];
      if (next <= 1.0 - static_cast<double>(p.top_p)) {
        tail = next;
        --n;
      } else {
        break;
      }
    }
  }
  if (p.min_p > 0.0f && n > 1) {
    // HF MinPLogitsWarper: drop tokens with prob < min_p * max prob (probs over the current set).
    std::vector<double> pr = Probabilities(zs.first(n));
    double threshold = static_cast<double>(p.min_p) * pr[0];
    while (n > 1 && pr[n - 1] < threshold) --n;
  }
  return n;
}

size_t DrawSurvivor(std::span<const float> zs, const SampleRowParams& p) {
  if (zs.size() <= 1) return 0;
  std::vector<double> pr(zs.size());
  double total = 0.0;
  const double zmax = zs[0];
  for (size_t i = 0; i < zs.size(); ++i) total += pr[i] = std::exp(zs[i] - zmax);
  const double u =
      static_cast<double>(PhiloxUniform(p.seed, static_cast<uint64_t>(p.position), 0)) * total;
  double cum = 0.0;
  for (size_t i = 0; i < zs.size(); ++i) {
    cum += pr[i];
    if (cum > u) return i;
  }
  return zs.size() - 1;
}

std::vector<int32_t> SampleFilteredSet(const SampleRowInput& row, std::vector<float>* processed) {
  const SampleRowParams& p = row.params;
  const std::span<const float> logits = row.logits;
  const int64_t V = static_cast<int64_t>(logits.size());
  std::vector<float> z(logits.begin(), logits.end());
  ApplySamplePenalties(z, p, row.penalty_ids, row.penalty_counts);
  if (p.ban_stop_ids != 0) {
    for (int32_t id : row.ban_ids) {
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
  std::vector<float> zs(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) zs[i] = z[ids[i]];
  ids.resize(CutSurvivors(zs, p));
  if (processed) *processed = std::move(z);
  return ids;
}

SampleRowResult SampleRow(const SampleRowInput& row, std::span<int32_t> top_ids,
                          std::span<float> top_logprobs) {
  const SampleRowParams& p = row.params;
  const std::span<const float> logits = row.logits;
  const int64_t V = static_cast<int64_t>(logits.size());
  SampleRowResult out;
  // Raw log-softmax: what logprobs report.
  float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v - mx));
  const float lse = mx + static_cast<float>(std::log(sum));

  std::vector<float> z;
  std::vector<int32_t> ids = SampleFilteredSet(row, &z);
  if (p.temperature == 0.0f || ids.size() == 1) {
    out.token_id = ids[0];
  } else {
    std::vector<float> zs(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) zs[i] = z[ids[i]];
    out.token_id = ids[DrawSurvivor(zs, p)];
  }
  out.logprob = logits[out.token_id] - lse;
  const int64_t capacity = static_cast<int64_t>(std::min(top_ids.size(), top_logprobs.size()));
  const int64_t n = std::clamp<int64_t>(p.num_logprobs, 0, std::min(V, capacity));
  if (n > 0) {
    std::vector<int32_t> top(static_cast<size_t>(V));
    std::iota(top.begin(), top.end(), 0);
    std::partial_sort(top.begin(), top.begin() + n, top.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int64_t i = 0; i < n; ++i) {
      top_ids[i] = top[i];
      top_logprobs[i] = logits[top[i]] - lse;
    }
  }
  for (int64_t i = n; i < capacity; ++i) {
    top_ids[i] = -1;
    top_logprobs[i] = -INFINITY;
  }
  out.num_top = n;
  return out;
}

void Sample(const SampleParams& p, int num_threads) {
  const int64_t vocab = p.vocab;
  if (vocab <= 0) return;
#pragma omp parallel for num_threads(num_threads) schedule(dynamic, 1) if (p.rows > 1)
  for (int64_t r = 0; r < p.rows; ++r) {
    SampleRowInput row;
    row.logits = std::span<const float>(p.logits + r * vocab, static_cast<size_t>(vocab));
    row.params = p.row_params[r];
    row.penalty_ids = CsrRow(p.penalty_offsets, p.penalty_ids, r);
    row.penalty_counts = CsrRow(p.penalty_offsets, p.penalty_counts, r);
    row.ban_ids = CsrRow(p.ban_offsets, p.ban_ids, r);
    const size_t top = static_cast<size_t>(std::max<int64_t>(p.max_logprobs, 0));
    const SampleRowResult res =
        SampleRow(row, std::span<int32_t>(top > 0 ? p.top_ids + r * p.max_logprobs : nullptr, top),
                  std::span<float>(top > 0 ? p.top_logprobs + r * p.max_logprobs : nullptr, top));
    p.token_ids[r] = res.token_id;
    p.logprobs[r] = res.logprob;
  }
}

}  // namespace olmo::kernels::cpu
