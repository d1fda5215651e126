#include "worker/sampler/vocab_parallel.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_format.h"
#include "kernels/cpu/sample_row.h"

namespace olmo::sampler {
namespace {

// (value desc, id asc): Sample's order of candidates and of top logprobs.
struct Entry {
  float value;
  int32_t id;
  float raw;
};
bool Before(const Entry& a, const Entry& b) {
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}

}  // namespace

int64_t SliceCandidates(const kernels::SampleRowParams& p, int64_t vocab) {
  if (p.temperature == 0.0f) return 1;
  if (p.top_k > 0 && p.top_k < vocab && p.top_k <= kMaxSliceTopK) return p.top_k + 1;
  return 0;
}

SliceReportLayout SliceReportLayout::For(int64_t rows, int64_t max_logprobs,
                                         int64_t max_candidates) {
  SliceReportLayout l;
  l.rows = rows;
  l.max_logprobs = std::max<int64_t>(max_logprobs, 0);
  l.max_candidates = std::max<int64_t>(max_candidates, 1);
  int64_t at = 0;
  auto take = [&](int64_t bytes) {
    const int64_t offset = at;
    at += (bytes + 7) / 8 * 8;
    return offset;
  };
  const int64_t top = rows * l.max_logprobs, cand = rows * l.max_candidates;
  l.max_at = take(rows * 4);
  l.argmax_at = take(rows * 4);
  l.sum_exp_at = take(rows * 8);
  l.top_ids_at = take(top * 4);
  l.top_raw_at = take(top * 4);
  l.cand_ids_at = take(cand * 4);
  l.cand_z_at = take(cand * 4);
  l.cand_raw_at = take(cand * 4);
  l.bytes = at;
  return l;
}

void SliceReportLayout::Bind(void* base, kernels::SampleSliceParams* p) const {
  char* b = static_cast<char*>(base);
  p->max_logprobs = max_logprobs;
  p->max_candidates = max_candidates;
  p->max = reinterpret_cast<float*>(b + max_at);
  p->argmax = reinterpret_cast<int32_t*>(b + argmax_at);
  p->sum_exp = reinterpret_cast<double*>(b + sum_exp_at);
  p->top_ids = max_logprobs > 0 ? reinterpret_cast<int32_t*>(b + top_ids_at) : nullptr;
  p->top_raw = max_logprobs > 0 ? reinterpret_cast<float*>(b + top_raw_at) : nullptr;
  p->cand_ids = reinterpret_cast<int32_t*>(b + cand_ids_at);
  p->cand_z = reinterpret_cast<float*>(b + cand_z_at);
  p->cand_raw = reinterpret_cast<float*>(b + cand_raw_at);
}

std::optional<SampleOutput> MergeSliceReports(std::span<const SliceReport> reports, int64_t row,
                                              const kernels::SampleRowParams& p, int64_t vocab) {
  const int64_t need = SliceCandidates(p, vocab);
  if (need == 0 || reports.empty()) return std::nullopt;
  const int64_t C = reports[0].layout().max_candidates;
  if (need > C) return std::nullopt;

  // The raw log-sum-exp from the slices' (max, Σ exp(x - max)), and the raw argmax.
  float mx = -INFINITY;
  int32_t raw_argmax = -1;
  for (const SliceReport& rep : reports) {
    const int32_t id = rep.argmax(row);
    if (id < 0) continue;  // an empty slice
    if (raw_argmax < 0 || rep.max(row) > mx || (rep.max(row) == mx && id < raw_argmax)) {
      mx = rep.max(row);
      raw_argmax = id;
    }
  }
  if (raw_argmax < 0) return std::nullopt;
  double sum = 0.0;
  for (const SliceReport& rep : reports) {
    if (rep.argmax(row) >= 0 && rep.max(row) != -INFINITY) {
      sum += rep.sum_exp(row) * std::exp(static_cast<double>(rep.max(row)) - mx);
    }
  }
  const float lse = mx + static_cast<float>(std::log(sum));

  // Every rank's candidates, in Sample's order.
  std::vector<Entry> cand;
  for (const SliceReport& rep : reports) {
    for (int64_t j = 0; j < C; ++j) {
      const int32_t id = rep.cand_id(row, j);
      if (id >= 0) cand.push_back({rep.cand_z(row, j), id, rep.cand_raw(row, j)});
    }
  }
  std::sort(cand.begin(), cand.end(), Before);
  if (cand.empty()) return std::nullopt;

  SampleOutput out;
  float token_raw = 0.0f;
  if (p.temperature == 0.0f) {  // greedy: the best z over every slice, lowest id on ties
    out.token_id = cand[0].id;
    token_raw = cand[0].raw;
  } else {
    // Top-k keeps z >= the k-th largest z (ties kept). A rank whose last reported candidate
    // reaches that value may hold more ties it did not report: the full row decides then.
    const int64_t k = p.top_k;
    if (static_cast<int64_t>(cand.size()) < k) return std::nullopt;
    const float kth = cand[static_cast<size_t>(k - 1)].value;
    for (const SliceReport& rep : reports) {
      if (rep.cand_id(row, C - 1) >= 0 && rep.cand_z(row, C - 1) >= kth) return std::nullopt;
    }
    size_t n = 0;
    while (n < cand.size() && cand[n].value >= kth && cand[n].value != -INFINITY) ++n;
    if (n == 0) {  // everything banned: the best raw logit
      out.token_id = raw_argmax;
      token_raw = mx;
    } else {
      std::vector<float> zs(n);
      for (size_t i = 0; i < n; ++i) zs[i] = cand[i].value;
      const size_t kept = kernels::cpu::CutSurvivors(zs, p);
      const size_t pick =
          kept == 1 ? 0 : kernels::cpu::DrawSurvivor(std::span<const float>(zs).first(kept), p);
      out.token_id = cand[pick].id;
      token_raw = cand[pick].raw;
    }
  }
  out.logprob = token_raw - lse;

  // Top raw logprobs: the best reported raw logits over every slice.
  const int64_t want = std::min<int64_t>(std::max(p.num_logprobs, 0), vocab);
  if (want > reports[0].layout().max_logprobs) return std::nullopt;  // lists too short
  if (want > 0) {
    std::vector<Entry> top;
    for (const SliceReport& rep : reports) {
      for (int64_t j = 0; j < rep.layout().max_logprobs; ++j) {
        const int32_t id = rep.top_id(row, j);
        if (id >= 0) top.push_back({rep.top_raw(row, j), id, rep.top_raw(row, j)});
      }
    }
    std::sort(top.begin(), top.end(), Before);
    if (static_cast<int64_t>(top.size()) < want) return std::nullopt;
    for (int64_t i = 0; i < want; ++i) out.top_logprobs.push_back({top[i].id, top[i].raw - lse});
  }
  return out;
}

absl::Status CheckSliceReport(const SliceReport& report, int64_t vocab) {
  const SliceReportLayout& l = report.layout();
  auto check = [vocab](int32_t id, const char* what, int64_t r) {
    if (id >= -1 && id < vocab) return absl::OkStatus();
    return absl::InternalError(absl::StrFormat(
        "a SampleSlice report has %s id %d for row %d (vocab %d)", what, id, r, vocab));
  };
  for (int64_t r = 0; r < l.rows; ++r) {
    absl::Status st = check(report.argmax(r), "argmax", r);
    for (int64_t j = 0; st.ok() && j < l.max_logprobs; ++j)
      st = check(report.top_id(r, j), "top", r);
    for (int64_t j = 0; st.ok() && j < l.max_candidates; ++j) {
      st = check(report.cand_id(r, j), "candidate", r);
    }
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace olmo::sampler
