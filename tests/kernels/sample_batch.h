// Test helper of the Sample op (kernels/ops.h): rows given as host vectors, flattened into the
// arrays of one call (CSR penalty and ban lists), and the call's flat outputs split per row.
// Used by the CPU op tests, the sampler-vs-op test and the CUDA-vs-CPU test.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
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
    p.rows = rows();
    p.vocab = vocab_;
    p.row_params = params_.data();
    p.penalty_offsets = pen_off_.data();
    p.penalty_ids = pen_ids_.data();
    p.penalty_counts = pen_counts_.data();
    p.ban_offsets = ban_off_.data();
    p.ban_ids = ban_ids_.data();
    p.max_logprobs = max_;
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
  std::vector<SampleRow> rows_;
  int64_t vocab_;
  int64_t max_;
  std::vector<float> logits_;
  std::vector<SampleRowParams> params_;
  std::vector<int32_t> pen_off_, pen_ids_, pen_counts_, ban_off_, ban_ids_;
};

}  // namespace olmo::kernels::sample_test
