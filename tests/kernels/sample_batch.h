// Test helper of the Sample and SampleSlice ops (kernels/ops.h): rows given as host vectors,
// flattened into the arrays of one call (CSR penalty and ban lists), and the call's flat outputs
// split per row. Used by the CPU op tests, the sampler-vs-op tests and the CUDA-vs-CPU tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <vector>

#include "kernels/ops.h"

namespace olmo::kernels::sample_test {

struct SampleRow {
  std::vector<float> logits;  // f32 [vocab]
  SampleRowParams params;
  std::vector<int32_t> penalty_ids, penalty_counts, ban_ids;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<int32_t> top_ids;     // [max_logprobs]
  std::vector<float> top_logprobs;  // [max_logprobs]
};

class SampleBatch {
 public:
  // Every row has the same vocab size.
  SampleBatch(const std::vector<SampleRow>& rows, int64_t max_logprobs)
      : rows_(rows), vocab_(static_cast<int64_t>(rows.at(0).logits.size())), max_(max_logprobs) {
    pen_off_ = {0};
    ban_off_ = {0};
    for (const SampleRow& r : rows_) {
      logits_.insert(logits_.end(), r.logits.begin(), r.logits.end());
      params_.push_back(r.params);
      pen_ids_.insert(pen_ids_.end(), r.penalty_ids.begin(), r.penalty_ids.end());
      pen_counts_.insert(pen_counts_.end(), r.penalty_counts.begin(), r.penalty_counts.end());
      pen_off_.push_back(static_cast<int32_t>(pen_ids_.size()));
      ban_ids_.insert(ban_ids_.end(), r.ban_ids.begin(), r.ban_ids.end());
      ban_off_.push_back(static_cast<int32_t>(ban_ids_.size()));
    }
  }

  int64_t rows() const { return static_cast<int64_t>(rows_.size()); }
  int64_t vocab() const { return vocab_; }
  int64_t max_logprobs() const { return max_; }
  const SampleRow& row(int64_t r) const { return rows_[r]; }

  // The flattened inputs, host memory.
  const std::vector<float>& logits() const { return logits_; }
  const std::vector<SampleRowParams>& params() const { return params_; }
  const std::vector<int32_t>& penalty_offsets() const { return pen_off_; }
  const std::vector<int32_t>& penalty_ids() const { return pen_ids_; }
  const std::vector<int32_t>& penalty_counts() const { return pen_counts_; }
  const std::vector<int32_t>& ban_offsets() const { return ban_off_; }
  const std::vector<int32_t>& ban_ids() const { return ban_ids_; }

  // The call over the host inputs; outputs unset.
  SampleParams Inputs() const {
    SampleParams p;
    p.logits = logits_.data();
    p.vocab = vocab_;
    BindRows(&p);
    return p;
  }

  // Runs `sample` on the host inputs with host outputs (prefilled with -7 / NaN, so unwritten
  // entries show) and splits them per row.
  std::vector<SampleResult> Run(const std::function<void(const SampleParams&)>& sample) const {
    std::vector<int32_t> tokens(rows_.size(), -7), top_ids(rows_.size() * max_, -7);
    std::vector<float> logprobs(rows_.size(), NAN), top_logprobs(rows_.size() * max_, NAN);
    SampleParams p = Inputs();
    p.token_ids = tokens.data();
    p.logprobs = logprobs.data();
    p.top_ids = top_ids.data();
    p.top_logprobs = top_logprobs.data();
    sample(p);
    return Split(tokens, logprobs, top_ids, top_logprobs);
  }

  // The SampleSlice call over columns [begin, begin + width) of every row (copied into
  // *slice_logits, which must outlive the call); outputs unset, max_candidates 1.
  SampleSliceParams SliceInputs(int64_t begin, int64_t width,
                                std::vector<float>* slice_logits) const {
    slice_logits->clear();
    for (const SampleRow& r : rows_) {
      slice_logits->insert(slice_logits->end(), r.logits.begin() + begin,
                           r.logits.begin() + begin + width);
    }
    SampleSliceParams p;
    p.logits = slice_logits->data();
    p.vocab = width;
    p.vocab_begin = begin;
    BindRows(&p);
    return p;
  }

  // Flat outputs (i32 [rows], f32 [rows], i32 [rows, max], f32 [rows, max]) per row.
  std::vector<SampleResult> Split(const std::vector<int32_t>& tokens,
                                  const std::vector<float>& logprobs,
                                  const std::vector<int32_t>& top_ids,
                                  const std::vector<float>& top_logprobs) const {
    std::vector<SampleResult> out(rows_.size());
    for (int64_t r = 0; r < rows(); ++r) {
      out[r].token = tokens[r];
      out[r].logprob = logprobs[r];
      out[r].top_ids.assign(top_ids.begin() + r * max_, top_ids.begin() + (r + 1) * max_);
      out[r].top_logprobs.assign(top_logprobs.begin() + r * max_,
                                 top_logprobs.begin() + (r + 1) * max_);
    }
    return out;
  }

 private:
  // The row inputs both ops share (SampleParams, SampleSliceParams).
  template <typename Params>
  void BindRows(Params* p) const {
    p->rows = rows();
    p->row_params = params_.data();
    p->penalty_offsets = pen_off_.data();
    p->penalty_ids = pen_ids_.data();
    p->penalty_counts = pen_counts_.data();
    p->ban_offsets = ban_off_.data();
    p->ban_ids = ban_ids_.data();
    p->max_logprobs = max_;
  }

  std::vector<SampleRow> rows_;
  int64_t vocab_;
  int64_t max_;
  std::vector<float> logits_;
  std::vector<SampleRowParams> params_;
  std::vector<int32_t> pen_off_, pen_ids_, pen_counts_, ban_off_, ban_ids_;
};

inline std::vector<float> RandomLogits(int64_t vocab, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(vocab));
  for (auto& x : v) x = nd(rng);
  return v;
}

// The contract's processed logits before temperature, dense: repetition on seen ids, then
// presence + frequency × count (each rounded on its own) on output ids, then the ban.
inline std::vector<float> Penalized(const SampleRow& row) {
  const SampleRowParams& p = row.params;
  const size_t vocab = row.logits.size();
  std::vector<int32_t> count(vocab, -1);  // -1: not seen
  for (size_t k = 0; k < row.penalty_ids.size(); ++k)
    count[row.penalty_ids[k]] = row.penalty_counts[k];
  std::vector<float> z = row.logits;
  for (size_t i = 0; i < vocab; ++i) {
    if (count[i] < 0) continue;
    if (p.repetition_penalty != 1.0f) {
      if (z[i] < 0) {
        z[i] *= p.repetition_penalty;
      } else {
        z[i] /= p.repetition_penalty;
      }
    }
    if (count[i] > 0 && (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)) {
      const float freq = p.frequency_penalty * static_cast<float>(count[i]);
      const float total = p.presence_penalty + freq;
      z[i] -= total;
    }
  }
  if (p.ban_stop_ids != 0) {
    for (int32_t id : row.ban_ids) {
      if (id >= 0 && id < static_cast<int32_t>(vocab)) z[id] = -INFINITY;
    }
  }
  return z;
}

// `n` rows over `vocab` ids with mixed parameters, row r by r % 8: greedy; greedy with penalties
// and its best id banned; top-k (1 .. 40) with top-p and min-p; top-k on a coarse grid (ties);
// temperature only; top-p only; min-p with penalties; everything banned with top-k 2. Every row
// has a penalty list (unique ids, counts 0 .. 3) and asks for r % 8 logprobs.
inline std::vector<SampleRow> MixedRows(int64_t vocab, int64_t n, uint32_t seed) {
  std::vector<SampleRow> rows(static_cast<size_t>(n));
  std::mt19937 rng(seed);
  for (int64_t r = 0; r < n; ++r) {
    SampleRow& row = rows[r];
    row.logits = RandomLogits(vocab, seed * 1000 + static_cast<uint32_t>(r), 2.0f);
    SampleRowParams& p = row.params;
    p.seed = seed + 17;
    p.position = r;
    p.num_logprobs = static_cast<int32_t>(r % 8);
    p.temperature = 0.8f;
    for (int64_t id = static_cast<int64_t>(rng() % 5); id < vocab; id += 5 + rng() % 7) {
      row.penalty_ids.push_back(static_cast<int32_t>(id));
      row.penalty_counts.push_back(static_cast<int32_t>(rng() % 4));
    }
    const int32_t best = static_cast<int32_t>(
        std::max_element(row.logits.begin(), row.logits.end()) - row.logits.begin());
    switch (r % 8) {
      case 0:
        p.temperature = 0.0f;
        break;
      case 1:
        p.temperature = 0.0f;
        p.repetition_penalty = 1.3f;
        p.presence_penalty = 0.4f;
        p.frequency_penalty = 0.2f;
        p.ban_stop_ids = 1;
        row.ban_ids = {best, best, -1};
        break;
      case 2:
        p.top_k = static_cast<int32_t>(1 + rng() % 40);
        p.top_p = 0.9f;
        p.min_p = 0.05f;
        break;
      case 3:
        p.top_k = static_cast<int32_t>(3 + rng() % 10);
        for (float& x : row.logits) x = std::round(x * 2.0f) / 2.0f;
        break;
      case 4:
        p.temperature = 1.2f;
        break;
      case 5:
        p.top_p = 0.7f;
        break;
      case 6:
        p.min_p = 0.1f;
        p.repetition_penalty = 0.9f;
        p.frequency_penalty = -0.3f;
        break;
      default:
        p.top_k = 2;
        p.ban_stop_ids = 1;
        for (int32_t id = 0; id < vocab; ++id) row.ban_ids.push_back(id);
        break;
    }
  }
  return rows;
}

// SampleSlice's outputs in host vectors (prefilled with -7 / NaN, so unwritten entries show).
struct SliceOutputs {
  std::vector<float> max;
  std::vector<int32_t> argmax;
  std::vector<double> sum_exp;
  std::vector<int32_t> top_ids, cand_ids;
  std::vector<float> top_raw, cand_z, cand_raw;

  // Sizes the vectors for p's rows, max_logprobs and max_candidates and points p's outputs at
  // them.
  void Bind(SampleSliceParams* p) {
    const size_t rows = static_cast<size_t>(p->rows);
    const size_t top = rows * static_cast<size_t>(p->max_logprobs);
    const size_t cand = rows * static_cast<size_t>(p->max_candidates);
    max.assign(rows, NAN);
    argmax.assign(rows, -7);
    sum_exp.assign(rows, NAN);
    top_ids.assign(top, -7);
    top_raw.assign(top, NAN);
    cand_ids.assign(cand, -7);
    cand_z.assign(cand, NAN);
    cand_raw.assign(cand, NAN);
    p->max = max.data();
    p->argmax = argmax.data();
    p->sum_exp = sum_exp.data();
    p->top_ids = top > 0 ? top_ids.data() : nullptr;
    p->top_raw = top > 0 ? top_raw.data() : nullptr;
    p->cand_ids = cand_ids.data();
    p->cand_z = cand_z.data();
    p->cand_raw = cand_raw.data();
  }
};

}  // namespace olmo::kernels::sample_test
