// SampleSlice (CPU op) against references computed here: the slice's raw max, lowest argmax and
// Σ exp(x - max) (long double); the best raw logits and the best processed logits by an
// independent sort of the contract's penalized logits (sample_batch.h Penalized, / temperature);
// those processed values also equal, bit for bit, the ones Sample's own filter computes over the
// full row. Slices at the start, middle and end, narrower than the lists, and empty.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/sample_row.h"
#include "tests/kernels/sample_batch.h"

namespace olmo::kernels {
namespace {

using sample_test::SampleBatch;
using sample_test::SliceOutputs;
using Row = sample_test::SampleRow;

// Indices of v ordered by (v desc, index asc).
std::vector<int32_t> Order(const std::vector<float>& v) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
  return idx;
}

SliceOutputs RunSlice(const SampleBatch& b, int64_t begin, int64_t width, int64_t candidates,
                      int threads) {
  std::vector<float> slice;
  SampleSliceParams p = b.SliceInputs(begin, width, &slice);
  p.max_candidates = candidates;
  SliceOutputs out;
  out.Bind(&p);
  cpu::SampleSlice(p, threads);
  return out;
}

TEST(SampleSlice, ReportsEqualReferencesOverEverySlice) {
  const int64_t vocab = 300, N = 7, C = 9;
  const std::vector<Row> rows = sample_test::MixedRows(vocab, 24, 3);
  const SampleBatch b(rows, N);
  const std::vector<std::pair<int64_t, int64_t>> slices = {
      {0, 300}, {0, 100}, {100, 137}, {237, 63}, {5, 1}, {290, 10}, {300, 0}};
  for (auto [begin, width] : slices) {
    SCOPED_TRACE(::testing::Message() << "slice [" << begin << ", " << begin + width << ")");
    const SliceOutputs out = RunSlice(b, begin, width, C, 2);
    for (int64_t r = 0; r < b.rows(); ++r) {
      SCOPED_TRACE(::testing::Message() << "row " << r);
      const Row& row = rows[r];
      const std::vector<float> x(row.logits.begin() + begin, row.logits.begin() + begin + width);
      // Raw max, argmax, Σ exp.
      if (width == 0) {
        EXPECT_EQ(out.max[r], -INFINITY);
        EXPECT_EQ(out.argmax[r], -1);
        EXPECT_EQ(out.sum_exp[r], 0.0);
      } else {
        const auto best = std::max_element(x.begin(), x.end());
        EXPECT_EQ(out.max[r], *best);
        EXPECT_EQ(out.argmax[r], begin + (best - x.begin()));
        long double sum = 0;  // of exp(x - max) with x - max rounded to f32, as Sample does
        for (float v : x) sum += std::exp(static_cast<long double>(v - *best));
        EXPECT_NEAR(out.sum_exp[r], static_cast<double>(sum), 1e-12 * static_cast<double>(sum));
      }
      // The best raw logits.
      const std::vector<int32_t> raw_order = Order(x);
      const int64_t n = std::min<int64_t>(std::min<int64_t>(row.params.num_logprobs, N), width);
      for (int64_t j = 0; j < N; ++j) {
        EXPECT_EQ(out.top_ids[r * N + j], j < n ? begin + raw_order[j] : -1) << "top " << j;
        EXPECT_EQ(out.top_raw[r * N + j], j < n ? x[raw_order[j]] : -INFINITY) << "top " << j;
      }
      // The best processed logits, against the contract and against Sample's own filter.
      std::vector<float> z_full = sample_test::Penalized(row);
      if (row.params.temperature != 0.0f) {
        for (float& v : z_full) v /= row.params.temperature;
      }
      std::vector<float> sample_z;
      cpu::SampleFilteredSet(
          {row.logits, row.params, row.penalty_ids, row.penalty_counts, row.ban_ids}, &sample_z);
      const std::vector<float> z(z_full.begin() + begin, z_full.begin() + begin + width);
      const std::vector<int32_t> z_order = Order(z);
      const int64_t nc = std::min(C, width);
      for (int64_t j = 0; j < C; ++j) {
        const int32_t id = out.cand_ids[r * C + j];
        if (j >= nc) {
          EXPECT_EQ(id, -1);
          EXPECT_EQ(out.cand_z[r * C + j], -INFINITY);
          EXPECT_EQ(out.cand_raw[r * C + j], -INFINITY);
          continue;
        }
        ASSERT_EQ(id, begin + z_order[j]) << "candidate " << j;
        EXPECT_EQ(out.cand_z[r * C + j], z[z_order[j]]) << "candidate " << j;
        EXPECT_EQ(out.cand_z[r * C + j], sample_z[id]) << "candidate " << j;
        EXPECT_EQ(out.cand_raw[r * C + j], row.logits[id]) << "candidate " << j;
      }
    }
  }
}

// Rows are independent of each other and of the thread count (batch invariance).
TEST(SampleSlice, RowsAloneAndThreadCountsGiveTheSameReports) {
  const std::vector<Row> rows = sample_test::MixedRows(500, 16, 8);
  const SliceOutputs all = RunSlice(SampleBatch(rows, 5), 120, 250, 12, 2);
  for (int64_t r = 0; r < 16; ++r) {
    const SliceOutputs one = RunSlice(SampleBatch({rows[r]}, 5), 120, 250, 12, 1);
    EXPECT_EQ(one.max[0], all.max[r]);
    EXPECT_EQ(one.argmax[0], all.argmax[r]);
    EXPECT_EQ(one.sum_exp[0], all.sum_exp[r]);
    EXPECT_TRUE(std::equal(one.top_ids.begin(), one.top_ids.end(), all.top_ids.begin() + r * 5));
    EXPECT_TRUE(
        std::equal(one.cand_ids.begin(), one.cand_ids.end(), all.cand_ids.begin() + r * 12));
    EXPECT_TRUE(std::equal(one.cand_z.begin(), one.cand_z.end(), all.cand_z.begin() + r * 12));
  }
}

}  // namespace
}  // namespace olmo::kernels
