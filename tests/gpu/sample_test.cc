// CUDA Sample against the CPU op on the same inputs: the Olmo vocab (100278) with mixed rows
// (greedy with penalties and bans, temperature, top-k with ties, top-p, min-p, all of them,
// logprobs up to 20), the all-banned fallback, and more rows than one pass (64) holds. Greedy
// tokens and top-logprob ids must be equal and logprobs within 1e-5; sampled tokens must be
// equal except in rows where the CPU's uniform or a top-p/min-p cut lies within 1e-6 of a
// boundary (the GPU sums its double probabilities in another order); such rows must be rare.
#include <cmath>

#include "common/philox.h"
#include "kernels/cpu/sample_row.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/memory_plan.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/kernels/sample_batch.h"

namespace olmo::kernels::gpu_test {
namespace {

using sample_test::SampleBatch;
using sample_test::SampleResult;
using Row = sample_test::SampleRow;

// The batch on the GPU: inputs copied in, outputs copied back.
std::vector<SampleResult> RunGpu(Ops& gpu, const SampleBatch& b) {
  Dev<float> logits(b.logits());
  Dev<SampleRowParams> params(b.params());
  Dev<int32_t> pen_off(b.penalty_offsets()), pen_ids(b.penalty_ids());
  Dev<int32_t> pen_counts(b.penalty_counts()), ban_off(b.ban_offsets()), ban_ids(b.ban_ids());
  const size_t rows = static_cast<size_t>(b.rows()), top = rows * b.max_logprobs();
  Dev<int32_t> tokens(rows), top_ids(top);
  Dev<float> logprobs(rows), top_logprobs(top);
  SampleParams p = b.Inputs();
  p.logits = logits.ptr;
  p.row_params = params.ptr;
  p.penalty_offsets = pen_off.ptr;
  p.penalty_ids = pen_ids.ptr;
  p.penalty_counts = pen_counts.ptr;
  p.ban_offsets = ban_off.ptr;
  p.ban_ids = ban_ids.ptr;
  p.token_ids = tokens.ptr;
  p.logprobs = logprobs.ptr;
  p.top_ids = top_ids.ptr;
  p.top_logprobs = top_logprobs.ptr;
  gpu.Sample(p);
  return b.Split(tokens.Host(), logprobs.Host(), top_ids.Host(), top_logprobs.Host());
}

// Whether the CPU's draw in `row` is within `tol` of a decision boundary: u against a cumulative
// probability of the final set, a top-p tail mass against 1 - top_p, a min-p probability
// against min_p × the largest.
bool NearBoundary(const Row& row, double tol) {
  if (row.params.temperature == 0.0f) return false;
  cpu::SampleRowInput in{row.logits, row.params, row.penalty_ids, row.penalty_counts, row.ban_ids};
  in.params.top_p = 1.0f;
  in.params.min_p = 0.0f;
  std::vector<float> z;
  const std::vector<int32_t> top_k = cpu::SampleFilteredSet(in, &z);
  // Probabilities of the first n ids of top_k, renormalized over them.
  auto probs = [&](size_t n) {
    std::vector<double> q(n);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      sum += q[i] = std::exp(static_cast<double>(z[top_k[i]]) - z[top_k[0]]);
    }
    for (auto& x : q) x /= sum;
    return q;
  };
  if (row.params.top_p < 1.0f) {
    const std::vector<double> q = probs(top_k.size());
    double tail = 0;
    for (size_t j = q.size(); j-- > 1;) {
      tail += q[j];
      if (std::fabs(tail - (1.0 - row.params.top_p)) < tol) return true;
    }
  }
  in.params = row.params;
  const size_t final_size = cpu::SampleFilteredSet(in, nullptr).size();
  if (row.params.min_p > 0.0f) {
    in.params.min_p = 0.0f;  // the set min-p saw: what top-p kept
    const std::vector<double> q = probs(cpu::SampleFilteredSet(in, nullptr).size());
    for (double x : q) {
      if (std::fabs(x - row.params.min_p * q[0]) < tol * q[0]) return true;
    }
  }
  const double u = PhiloxUniform(row.params.seed, static_cast<uint64_t>(row.params.position));
  double cum = 0;
  for (double x : probs(final_size)) {
    cum += x;
    if (std::fabs(cum - u) < tol * std::max(u, 1e-30)) return true;
  }
  return false;
}

// The comparison of the file comment; returns the rows skipped as near a boundary.
int ExpectSameSamples(const SampleBatch& b, const std::vector<SampleResult>& gpu,
                      const std::vector<SampleResult>& cpu, const std::string& what) {
  int near = 0;
  std::vector<float> got_lp, want_lp;
  for (int64_t r = 0; r < b.rows(); ++r) {
    EXPECT_EQ(gpu[r].top_ids, cpu[r].top_ids) << what << " row " << r;
    for (int64_t j = 0; j < b.max_logprobs(); ++j) {
      if (std::isinf(cpu[r].top_logprobs[j])) {
        EXPECT_EQ(gpu[r].top_logprobs[j], cpu[r].top_logprobs[j]) << what << " row " << r;
      } else {
        got_lp.push_back(gpu[r].top_logprobs[j]);
        want_lp.push_back(cpu[r].top_logprobs[j]);
      }
    }
    if (gpu[r].token != cpu[r].token) {
      const bool near_boundary = NearBoundary(b.row(r), 1e-6);
      EXPECT_TRUE(near_boundary) << what << " row " << r << ": GPU token " << gpu[r].token
                                 << ", CPU token " << cpu[r].token;
      near += near_boundary;
      continue;
    }
    got_lp.push_back(gpu[r].logprob);
    want_lp.push_back(cpu[r].logprob);
  }
  ExpectClose(got_lp, want_lp, 0.0f, 1e-5f, what + " logprobs");
  return near;
}

class SampleGpuTest : public GpuOpsTest {};

TEST_F(SampleGpuTest, MixedRowsOnTheOlmoVocab) {
  OLMO_SKIP_WITHOUT_GPU();
  const int64_t vocab = 100278;
  std::vector<Row> rows(24);
  for (size_t r = 0; r < rows.size(); ++r) {
    rows[r].logits = Random(static_cast<size_t>(vocab), 21 + static_cast<uint32_t>(r), 3.0f);
    SampleRowParams& p = rows[r].params;
    p.seed = 500 + r;
    p.position = 17 + static_cast<int64_t>(r) * 31;
    p.num_logprobs = static_cast<int32_t>(r % 5 == 0 ? 20 : r % 4);
    switch (r % 8) {
      case 0:
        p.temperature = 0.0f;
        break;
      case 1:
        p.temperature = 0.7f;
        break;
      case 2:  // top-k with ties: the row on a coarse grid
        p.top_k = static_cast<int32_t>(5 + r);
        for (float& x : rows[r].logits) x = std::round(x * 2.0f) / 2.0f;
        break;
      case 3:
        p.top_p = 0.6f + 0.01f * static_cast<float>(r);
        break;
      case 4:
        p.min_p = 0.02f;
        p.temperature = 1.3f;
        break;
      case 5:
        p.temperature = 0.9f;
        p.top_k = 1000;
        p.top_p = 0.9f;
        p.min_p = 0.01f;
        break;
      case 6:  // greedy with penalties and a ban
        p.temperature = 0.0f;
        p.repetition_penalty = 1.3f;
        p.presence_penalty = 0.4f;
        p.frequency_penalty = 0.2f;
        p.ban_stop_ids = 1;
        break;
      default:  // sampled with penalties and an inactive ban
        p.temperature = 1.1f;
        p.top_p = 0.95f;
        p.repetition_penalty = 0.9f;
        p.frequency_penalty = -0.3f;
        break;
    }
    std::mt19937 rng(static_cast<uint32_t>(r));
    for (int k = 0; k < 300; ++k) {
      rows[r].penalty_ids.push_back(static_cast<int32_t>(k * 331 % vocab));  // unique
      rows[r].penalty_counts.push_back(static_cast<int32_t>(rng() % 4));
    }
    // The best logit is a stop id (also listed twice, with an id out of range).
    const auto best = std::max_element(rows[r].logits.begin(), rows[r].logits.end());
    const int32_t id = static_cast<int32_t>(best - rows[r].logits.begin());
    rows[r].ban_ids = {id, id, -1};
  }
  const SampleBatch b(rows, 20);
  const auto cpu = b.Run([&](const SampleParams& p) { cpu_->Sample(p); });
  EXPECT_LE(ExpectSameSamples(b, RunGpu(*gpu_, b), cpu, "olmo vocab"), 2);
}

TEST_F(SampleGpuTest, ManyRowsInSeveralPassesAndFallbacks) {
  OLMO_SKIP_WITHOUT_GPU();
  const int64_t vocab = 5000;
  // A small call first: the workspace then grows for the large one (three passes of 64 rows).
  for (int64_t num_rows : {3, 150}) {
    std::vector<Row> rows(static_cast<size_t>(num_rows));
    for (int64_t r = 0; r < num_rows; ++r) {
      rows[r].logits = Random(static_cast<size_t>(vocab), 5 + static_cast<uint32_t>(r), 2.0f);
      SampleRowParams& p = rows[r].params;
      p.seed = 9;
      p.position = r;
      p.temperature = r % 3 == 0 ? 0.0f : 1.0f;
      p.top_p = r % 2 == 0 ? 0.8f : 1.0f;
      p.num_logprobs = static_cast<int32_t>(r % 5);
    }
    // Row 1: everything banned: the raw argmax.
    rows[1].params.ban_stop_ids = 1;
    for (int32_t i = 0; i < vocab; ++i) rows[1].ban_ids.push_back(i);
    const SampleBatch b(rows, 4);
    const auto cpu = b.Run([&](const SampleParams& p) { cpu_->Sample(p); });
    const std::string what = "rows " + std::to_string(num_rows);
    EXPECT_LE(ExpectSameSamples(b, RunGpu(*gpu_, b), cpu, what), num_rows / 20);
    const std::vector<float>& row1 = rows[1].logits;
    EXPECT_EQ(cpu[1].token, std::max_element(row1.begin(), row1.end()) - row1.begin());
  }
}

TEST_F(SampleGpuTest, NullListsAndNoLogprobs) {
  OLMO_SKIP_WITHOUT_GPU();
  const int64_t vocab = 1000, rows = 4;
  std::vector<float> logits = Random(rows * vocab, 6, 2.0f);
  std::vector<SampleRowParams> params(rows);
  params[0].temperature = 0.0f;
  params[2].top_k = 3;
  params[3].num_logprobs = 5;  // max_logprobs is 0: none written
  std::vector<int32_t> cpu_tokens(rows);
  std::vector<float> cpu_logprobs(rows);
  SampleParams p;
  p.logits = logits.data();
  p.rows = rows;
  p.vocab = vocab;
  p.row_params = params.data();
  p.token_ids = cpu_tokens.data();
  p.logprobs = cpu_logprobs.data();
  cpu_->Sample(p);
  Dev<float> dl(logits);
  Dev<SampleRowParams> dp(params);
  Dev<int32_t> dt(static_cast<size_t>(rows));
  Dev<float> dlp(static_cast<size_t>(rows));
  p.logits = dl.ptr;
  p.row_params = dp.ptr;
  p.token_ids = dt.ptr;
  p.logprobs = dlp.ptr;
  gpu_->Sample(p);
  EXPECT_EQ(dt.Host(), cpu_tokens);
  ExpectClose(dlp.Host(), cpu_logprobs, 0.0f, 1e-5f, "null lists");
}

// The memory plan budgets SamplingWorkspaceBound(vocab) for the sampling ops
// (worker/step/local_worker.cc); the real workspaces of any batch must fit it.
TEST(SampleWorkspaceGpuTest, FitsTheMemoryPlanBound) {
  OLMO_SKIP_WITHOUT_GPU();
  for (int64_t vocab : {1000, 50257, 100278, 100278 / 8 + 1}) {
    for (int64_t rows : {1, 7, 64, 65, 1000}) {
      absl::StatusOr<int64_t> sample = cuda::SampleWorkspaceBytes(rows, vocab);
      ASSERT_TRUE(sample.ok()) << sample.status();
      const int64_t slice = cuda::SampleSliceWorkspaceBytes(rows, vocab);
      EXPECT_LE(*sample + slice, cuda::SamplingWorkspaceBound(vocab))
          << "vocab " << vocab << ", rows " << rows << ": Sample " << *sample << " bytes, "
          << "SampleSlice " << slice;
    }
  }
}

}  // namespace
}  // namespace olmo::kernels::gpu_test
