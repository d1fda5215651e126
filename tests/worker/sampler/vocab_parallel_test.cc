// Vocab-parallel sampling: each of tp slices reduced by the SampleSlice CPU op, the reports merged
// (worker/sampler/vocab_parallel), against Sample over the full row (the reference both backends
// follow): the same token and top-logprob ids, logprobs within float rounding, for greedy rows and
// rows with top-k (with top-p, min-p, penalties, bans), over even and uneven splits, slices
// narrower than the candidate lists and empty slices. A row is sent back for its full logits only
// when it needs them: no top-k, or a tie at the k-th value that a rank may not have reported.
#include "worker/sampler/vocab_parallel.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "common/parallel_config.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/sample_row.h"
#include "tests/kernels/sample_batch.h"

namespace olmo::sampler {
namespace {

using kernels::sample_test::SampleBatch;
using Row = kernels::sample_test::SampleRow;

// The rows merged from `parts` slices (SplitEvenly, or the given widths).
std::vector<std::optional<SampleOutput>> MergeSlices(const std::vector<Row>& rows,
                                                     int64_t max_logprobs,
                                                     const std::vector<int64_t>& widths) {
  const SampleBatch b(rows, max_logprobs);
  int64_t candidates = 1;
  for (const Row& r : rows) candidates = std::max(candidates, SliceCandidates(r.params, b.vocab()));
  const SliceReportLayout layout = SliceReportLayout::For(b.rows(), max_logprobs, candidates);
  std::vector<std::vector<uint64_t>> blocks;
  int64_t begin = 0;
  for (int64_t width : widths) {
    std::vector<float> slice;
    kernels::SampleSliceParams p = b.SliceInputs(begin, width, &slice);
    blocks.emplace_back(static_cast<size_t>(layout.bytes / 8));
    layout.Bind(blocks.back().data(), &p);
    kernels::cpu::SampleSlice(p, 1);
    begin += width;
  }
  EXPECT_EQ(begin, b.vocab());
  std::vector<SliceReport> reports;
  for (const auto& block : blocks) reports.emplace_back(layout, block.data());
  std::vector<std::optional<SampleOutput>> out;
  for (int64_t r = 0; r < b.rows(); ++r) {
    out.push_back(MergeSliceReports(reports, r, rows[r].params, b.vocab()));
  }
  return out;
}

std::vector<int64_t> EvenWidths(int64_t vocab, int tp) {
  std::vector<int64_t> w;
  for (int r = 0; r < tp; ++r) w.push_back(SplitEvenly(vocab, tp, r).size());
  return w;
}

// Sample over the full row, as the host sampler runs it (top list sized by the row's logprobs).
SampleOutput FullRow(const Row& row) {
  const size_t n = static_cast<size_t>(std::max(row.params.num_logprobs, 0));
  std::vector<int32_t> ids(n);
  std::vector<float> logprobs(n);
  const kernels::cpu::SampleRowResult res = kernels::cpu::SampleRow(
      {row.logits, row.params, row.penalty_ids, row.penalty_counts, row.ban_ids}, ids, logprobs);
  SampleOutput out{res.token_id, res.logprob, {}};
  for (int64_t i = 0; i < res.num_top; ++i) out.top_logprobs.push_back({ids[i], logprobs[i]});
  return out;
}

// Whether the k-th largest processed logit of a top-k row is tied with another (or -inf): a rank
// may then hold ties it did not report, and the row must come back for its full logits.
bool TieAtTheCut(const Row& row) {
  std::vector<float> z;
  kernels::cpu::SampleFilteredSet(
      {row.logits, row.params, row.penalty_ids, row.penalty_counts, row.ban_ids}, &z);
  std::sort(z.begin(), z.end(), std::greater<float>());
  const float kth = z[row.params.top_k - 1];
  return kth == -INFINITY || std::count(z.begin(), z.end(), kth) > 1;
}

void ExpectSame(const SampleOutput& got, const SampleOutput& want) {
  EXPECT_EQ(got.token_id, want.token_id);
  EXPECT_NEAR(got.logprob, want.logprob, 1e-6);
  ASSERT_EQ(got.top_logprobs.size(), want.top_logprobs.size());
  for (size_t k = 0; k < want.top_logprobs.size(); ++k) {
    EXPECT_EQ(got.top_logprobs[k].id, want.top_logprobs[k].id) << "top " << k;
    EXPECT_NEAR(got.top_logprobs[k].logprob, want.top_logprobs[k].logprob, 1e-6) << "top " << k;
  }
}

TEST(VocabParallel, MergedSlicesSampleAsTheFullRow) {
  int merged = 0, eligible = 0;
  for (int64_t vocab : {300, 1001}) {
    const std::vector<Row> rows = kernels::sample_test::MixedRows(vocab, 48, 5);
    std::vector<std::vector<int64_t>> splits;
    for (int tp : {2, 3, 4, 7}) splits.push_back(EvenWidths(vocab, tp));
    splits.push_back({vocab - 9, 0, 4, 5});  // an empty slice and two narrower than the lists
    for (const auto& widths : splits) {
      SCOPED_TRACE(::testing::Message() << "vocab " << vocab << ", " << widths.size() << " slices");
      const auto got = MergeSlices(rows, 7, widths);
      for (size_t r = 0; r < rows.size(); ++r) {
        SCOPED_TRACE(::testing::Message() << "row " << r);
        const kernels::SampleRowParams& p = rows[r].params;
        if (SliceCandidates(p, vocab) == 0) {
          EXPECT_FALSE(got[r].has_value()) << "a row without top-k needs its full logits";
          continue;
        }
        ++eligible;
        if (!got[r].has_value()) {
          EXPECT_TRUE(p.temperature != 0.0f && TieAtTheCut(rows[r]))
              << "sent back for full logits without a tie at the cut";
          continue;
        }
        ++merged;
        ExpectSame(*got[r], FullRow(rows[r]));
      }
    }
  }
  std::printf("rows finished from slice reports: %d of %d eligible\n", merged, eligible);
  EXPECT_GT(merged, eligible * 3 / 4);
}

// Ties: greedy takes the lowest id across slices; top-k with ties at the cut spread over slices
// (HF keeps every tie) comes back for its full logits instead of dropping some.
TEST(VocabParallel, TiesAcrossSlices) {
  Row row;
  row.logits.assign(40, 1.0f);
  row.logits[33] = 2.0f;
  row.logits[21] = 2.0f;
  row.params.temperature = 0.0f;
  Row topk = row;
  topk.params.temperature = 1.0f;
  topk.params.top_k = 3;
  const auto got = MergeSlices({row, topk}, 0, {20, 20});
  ASSERT_TRUE(got[0].has_value());
  EXPECT_EQ(got[0]->token_id, 21);
  EXPECT_FALSE(got[1].has_value());
  EXPECT_TRUE(TieAtTheCut(topk));
}

// Everything banned in a top-k row: Sample falls back to the raw argmax; so do the reports when
// every slice reported all of its ids (slices no wider than the candidate lists).
TEST(VocabParallel, EverythingBannedFallsBackToTheRawArgmax) {
  Row row;
  row.logits = {0.5f, -1.0f, 3.0f, 2.0f, 3.0f, 0.0f};
  row.params.top_k = 3;
  row.params.ban_stop_ids = 1;
  row.ban_ids = {0, 1, 2, 3, 4, 5};
  row.params.num_logprobs = 2;
  const auto got = MergeSlices({row}, 2, {2, 2, 2});
  ASSERT_TRUE(got[0].has_value());
  EXPECT_EQ(got[0]->token_id, 2);
  ExpectSame(*got[0], FullRow(row));
}

// Reports with fewer top logprobs than a row asks for cannot prove its top list: the row comes
// back for its full logits (ids 0 and 1 are the best two, both in the first slice).
TEST(VocabParallel, ShortTopListsSendTheRowForItsFullLogits) {
  Row row;
  row.logits = {5.0f, 4.0f, 1.0f, 0.0f};
  row.params.temperature = 0.0f;
  row.params.num_logprobs = 2;
  EXPECT_FALSE(MergeSlices({row}, 1, {2, 2})[0].has_value());
  const auto got = MergeSlices({row}, 2, {2, 2});
  ASSERT_TRUE(got[0].has_value());
  ExpectSame(*got[0], FullRow(row));
}

// Ids outside the vocabulary in a report (a backend or transport fault) are an error, not a token.
TEST(VocabParallel, ReportIdsOutsideTheVocabularyAreRejected) {
  const SampleBatch b(kernels::sample_test::MixedRows(50, 3, 2), 4);
  const SliceReportLayout layout = SliceReportLayout::For(3, 4, 5);
  std::vector<uint64_t> block(static_cast<size_t>(layout.bytes / 8));
  std::vector<float> slice;
  kernels::SampleSliceParams p = b.SliceInputs(10, 30, &slice);
  layout.Bind(block.data(), &p);
  kernels::cpu::SampleSlice(p, 1);
  EXPECT_TRUE(CheckSliceReport(SliceReport(layout, block.data()), 50).ok());
  EXPECT_FALSE(CheckSliceReport(SliceReport(layout, block.data()), 30).ok());  // ids reach 39
  p.cand_ids[7] = 50;
  const absl::Status st = CheckSliceReport(SliceReport(layout, block.data()), 50);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_NE(st.message().find("candidate id 50 for row 1"), std::string::npos) << st;
}

}  // namespace
}  // namespace olmo::sampler
