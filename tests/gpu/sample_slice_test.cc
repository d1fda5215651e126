// CUDA SampleSlice against the CPU op on the same inputs: the Olmo vocab (100278) split 8 ways
// (slices of 12534-12535 ids, offset), 70 mixed rows (more than one pass of 64: greedy with
// penalties and a ban, top-k with top-p / min-p, top-k on a coarse grid with ties, temperature,
// top-p, min-p, everything banned), 129 candidates (kMaxSliceTopK + 1) and 20 top logprobs; then
// slices narrower than the lists and an empty one. Every id and value must be equal bit for bit
// (the selections are exact and z uses the same rounded operations); Σ exp(x - max) within
// 1e-12 relative (another summation order).
#include <cmath>

#include "common/parallel_config.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/kernels/sample_batch.h"

namespace olmo::kernels::gpu_test {
namespace {

using sample_test::SampleBatch;
using sample_test::SliceOutputs;

class SampleSliceGpuTest : public GpuOpsTest {
 protected:
  // Columns [begin, begin + width) of the batch reduced by the CPU op and by the CUDA op.
  void ExpectSameReports(const SampleBatch& b, int64_t begin, int64_t width, int64_t candidates);
};

void SampleSliceGpuTest::ExpectSameReports(const SampleBatch& b, int64_t begin, int64_t width,
                                           int64_t candidates) {
  std::vector<float> slice;
  SampleSliceParams p = b.SliceInputs(begin, width, &slice);
  p.max_candidates = candidates;
  SliceOutputs want;
  want.Bind(&p);
  cpu_->SampleSlice(p);

  Dev<float> logits(slice);
  Dev<SampleRowParams> params(b.params());
  Dev<int32_t> pen_off(b.penalty_offsets()), pen_ids(b.penalty_ids());
  Dev<int32_t> pen_counts(b.penalty_counts()), ban_off(b.ban_offsets()), ban_ids(b.ban_ids());
  const size_t rows = static_cast<size_t>(b.rows());
  const size_t top = rows * static_cast<size_t>(b.max_logprobs());
  const size_t cand = rows * static_cast<size_t>(candidates);
  Dev<float> max(rows), top_raw(top), cand_z(cand), cand_raw(cand);
  Dev<int32_t> argmax(rows), top_ids(top), cand_ids(cand);
  Dev<double> sum_exp(rows);
  p.logits = logits.ptr;
  p.row_params = params.ptr;
  p.penalty_offsets = pen_off.ptr;
  p.penalty_ids = pen_ids.ptr;
  p.penalty_counts = pen_counts.ptr;
  p.ban_offsets = ban_off.ptr;
  p.ban_ids = ban_ids.ptr;
  p.max = max.ptr;
  p.argmax = argmax.ptr;
  p.sum_exp = sum_exp.ptr;
  p.top_ids = top > 0 ? top_ids.ptr : nullptr;
  p.top_raw = top > 0 ? top_raw.ptr : nullptr;
  p.cand_ids = cand_ids.ptr;
  p.cand_z = cand_z.ptr;
  p.cand_raw = cand_raw.ptr;
  gpu_->SampleSlice(p);

  EXPECT_EQ(max.Host(), want.max);
  EXPECT_EQ(argmax.Host(), want.argmax);
  const std::vector<double> s = sum_exp.Host();
  for (size_t r = 0; r < rows; ++r) {
    EXPECT_NEAR(s[r], want.sum_exp[r], 1e-12 * want.sum_exp[r]) << "row " << r;
  }
  if (top > 0) {
    EXPECT_EQ(top_ids.Host(), want.top_ids);
    EXPECT_EQ(top_raw.Host(), want.top_raw);
  }
  EXPECT_EQ(cand_ids.Host(), want.cand_ids);
  EXPECT_EQ(cand_z.Host(), want.cand_z);
  EXPECT_EQ(cand_raw.Host(), want.cand_raw);
}

TEST_F(SampleSliceGpuTest, OlmoVocabInEightSlicesEqualsTheCpu) {
  OLMO_SKIP_WITHOUT_GPU();
  const int64_t vocab = 100278;
  const SampleBatch b(sample_test::MixedRows(vocab, 70, 21), 20);
  for (int part = 0; part < 8; ++part) {
    SCOPED_TRACE(::testing::Message() << "slice " << part);
    const Slice vs = SplitEvenly(vocab, 8, part);
    ExpectSameReports(b, vs.begin, vs.size(), 129);
  }
}

TEST_F(SampleSliceGpuTest, NarrowAndEmptySlices) {
  OLMO_SKIP_WITHOUT_GPU();
  const SampleBatch b(sample_test::MixedRows(64, 9, 4), 5);
  ExpectSameReports(b, 60, 4, 8);
  ExpectSameReports(b, 64, 0, 8);
  ExpectSameReports(SampleBatch(sample_test::MixedRows(64, 9, 4), 0), 10, 30, 1);
}

}  // namespace
}  // namespace olmo::kernels::gpu_test
