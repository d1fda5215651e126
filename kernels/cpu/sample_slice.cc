// SampleSlice (kernels/ops.h) on the CPU, the reference of the CUDA kernel: one row at a time,
// rows in parallel. The processed logits come from Sample's own helpers (sample_row.h), so a
// candidate's z is bitwise the z Sample computes over the full row.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/sample_row.h"

namespace olmo::kernels::cpu {
namespace {

// The first n indices of v [size] by (v desc, index asc).
std::vector<int32_t> Best(const float* v, int64_t size, int64_t n) {
  std::vector<int32_t> idx(static_cast<size_t>(size));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(),
                    [v](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  idx.resize(static_cast<size_t>(n));
  return idx;
}

}  // namespace

void SampleSlice(const SampleSliceParams& p, int num_threads) {
  const int64_t V = std::max<int64_t>(p.vocab, 0);
  const int64_t begin = p.vocab_begin;
  const int64_t N = std::max<int64_t>(p.max_logprobs, 0);
  const int64_t C = std::max<int64_t>(p.max_candidates, 0);  // the contract says >= 1
#pragma omp parallel for num_threads(num_threads) schedule(dynamic, 1) if (p.rows > 1)
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.logits + r * V;
    const SampleRowParams& rp = p.row_params[r];
    // The raw log-sum-exp's parts.
    int64_t best = 0;
    for (int64_t i = 1; i < V; ++i) {
      if (x[i] > x[best]) best = i;
    }
    const float mx = V > 0 ? x[best] : -INFINITY;
    double sum = 0.0;
    if (mx != -INFINITY) {
      for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(x[i] - mx));
    }
    p.max[r] = mx;
    p.argmax[r] = V > 0 ? static_cast<int32_t>(begin + best) : -1;
    p.sum_exp[r] = sum;
    // The best raw logits.
    if (N > 0) {
      const int64_t n = std::min<int64_t>(std::clamp<int64_t>(rp.num_logprobs, 0, N), V);
      const std::vector<int32_t> top = Best(x, V, n);
      for (int64_t j = 0; j < N; ++j) {
        p.top_ids[r * N + j] = j < n ? static_cast<int32_t>(begin + top[j]) : -1;
        p.top_raw[r * N + j] = j < n ? x[top[j]] : -INFINITY;
      }
    }
    // Processed logits, exactly as Sample: penalties, ban, temperature.
    std::vector<float> z(x, x + V);
    ApplySamplePenalties(z, rp, CsrRow(p.penalty_offsets, p.penalty_ids, r),
                         CsrRow(p.penalty_offsets, p.penalty_counts, r), begin);
    if (rp.ban_stop_ids != 0) {
      for (int32_t id : CsrRow(p.ban_offsets, p.ban_ids, r)) {
        if (id - begin >= 0 && id - begin < V) z[id - begin] = -INFINITY;
      }
    }
    if (rp.temperature != 0.0f) {
      for (auto& v : z) v /= rp.temperature;
    }
    const int64_t nc = std::min(C, V);
    const std::vector<int32_t> cand = Best(z.data(), V, nc);
    for (int64_t j = 0; j < C; ++j) {
      p.cand_ids[r * C + j] = j < nc ? static_cast<int32_t>(begin + cand[j]) : -1;
      p.cand_z[r * C + j] = j < nc ? z[cand[j]] : -INFINITY;
      p.cand_raw[r * C + j] = j < nc ? x[cand[j]] : -INFINITY;
    }
  }
}

}  // namespace olmo::kernels::cpu
