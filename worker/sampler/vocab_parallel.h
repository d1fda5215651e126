// Vocab-parallel sampling (DESIGN.md §5). With the lm_head split by vocabulary over a TP group,
// each rank reduces its logit slice with the SampleSlice op (kernels/ops.h) and the ranks
// exchange those reports — a few hundred bytes per row — instead of [rows, vocab] logits. Greedy
// rows and rows with a small top-k are finished from the reports with Sample's own math: the same
// token (the same candidates in the same order, the same top-p / min-p cuts and Philox draw as
// kernels/cpu/sample_row.h) and the same top logprobs; the log-sum-exp is combined from the
// slices' parts, so logprobs equal the full row's within float rounding. The other rows (sampling
// without a top-k, top_k > kMaxSliceTopK, a tie at the k-th value that a rank may not have
// reported, or a k-th value of -inf) need the full row.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "absl/status/status.h"
#include "kernels/ops.h"
#include "worker/sampler/sampler.h"

namespace olmo::sampler {

// The largest top-k finished from slice reports (each rank reports top_k + 1 candidates).
inline constexpr int32_t kMaxSliceTopK = 128;

// SampleSliceParams::max_candidates that row p needs to be finished from slice reports over a
// vocabulary of `vocab` ids; 0 when it needs its full logits row.
int64_t SliceCandidates(const kernels::SampleRowParams& p, int64_t vocab);

// One rank's SampleSlice outputs for `rows` rows, laid out in one byte block (one all-gather
// moves a step's reports): max f32 [rows], argmax i32 [rows], sum_exp f64 [rows], top_ids i32 and
// top_raw f32 [rows, max_logprobs], cand_ids i32, cand_z f32 and cand_raw f32
// [rows, max_candidates]; every array and the block size 8-byte aligned.
struct SliceReportLayout {
  int64_t rows = 0;
  int64_t max_logprobs = 0;
  int64_t max_candidates = 1;
  int64_t max_at = 0, argmax_at = 0, sum_exp_at = 0, top_ids_at = 0, top_raw_at = 0;
  int64_t cand_ids_at = 0, cand_z_at = 0, cand_raw_at = 0;
  int64_t bytes = 0;  // the block

  static SliceReportLayout For(int64_t rows, int64_t max_logprobs, int64_t max_candidates);
  // Points the op's outputs (and its max_logprobs, max_candidates) into the block at base.
  void Bind(void* base, kernels::SampleSliceParams* p) const;
};

// A read-only view of one rank's report block in host memory (8-byte aligned).
class SliceReport {
 public:
  SliceReport(const SliceReportLayout& layout, const void* base) : l_(layout), base_(base) {}
  float max(int64_t r) const { return At<float>(l_.max_at, r); }
  int32_t argmax(int64_t r) const { return At<int32_t>(l_.argmax_at, r); }
  double sum_exp(int64_t r) const { return At<double>(l_.sum_exp_at, r); }
  int32_t top_id(int64_t r, int64_t j) const { return At<int32_t>(l_.top_ids_at, Top(r, j)); }
  float top_raw(int64_t r, int64_t j) const { return At<float>(l_.top_raw_at, Top(r, j)); }
  int32_t cand_id(int64_t r, int64_t j) const { return At<int32_t>(l_.cand_ids_at, Cand(r, j)); }
  float cand_z(int64_t r, int64_t j) const { return At<float>(l_.cand_z_at, Cand(r, j)); }
  float cand_raw(int64_t r, int64_t j) const { return At<float>(l_.cand_raw_at, Cand(r, j)); }
  const SliceReportLayout& layout() const { return l_; }

 private:
  // Element i of the array at byte `offset` (memcpy: the block is raw bytes).
  template <typename T>
  T At(int64_t offset, int64_t i) const {
    T v;
    std::memcpy(&v, static_cast<const char*>(base_) + offset + i * static_cast<int64_t>(sizeof(T)),
                sizeof(T));
    return v;
  }
  int64_t Top(int64_t r, int64_t j) const { return r * l_.max_logprobs + j; }
  int64_t Cand(int64_t r, int64_t j) const { return r * l_.max_candidates + j; }
  SliceReportLayout l_;
  const void* base_;
};

// Row `row` (params p) finished from the reports of every rank of the group (reports[r] from tp
// rank r), over a vocabulary of `vocab` ids; nullopt when the row needs its full logits row
// (also when the reports hold fewer top logprobs or candidates than the row asks for).
// top_logprobs holds min(p.num_logprobs, vocab) entries, as sampler::Sample gives.
std::optional<SampleOutput> MergeSliceReports(std::span<const SliceReport> reports, int64_t row,
                                              const kernels::SampleRowParams& p, int64_t vocab);

// Every id in the report inside [-1, vocab) (-1: padding): a check on reports that crossed a
// backend and a network before their ids are trusted.
absl::Status CheckSliceReport(const SliceReport& report, int64_t vocab);

}  // namespace olmo::sampler
