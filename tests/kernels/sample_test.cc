// Sample (CPU op) against properties computed here independently: greedy = argmax of the
// penalized and banned logits; raw logprobs and their top list; draws never outside the top-k
// (ties at the k-th value kept); empirical frequencies over many positions against the filtered
// softmax (chi-square); the all-banned fallback; batch invariance with mixed parameters.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "common/philox.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/kernels/sample_batch.h"

namespace olmo::kernels {
namespace {

using sample_test::SampleBatch;
using Row = sample_test::SampleRow;
using Result = sample_test::SampleResult;
using sample_test::Penalized;
using sample_test::RandomLogits;

// One Sample call over the rows on `threads` threads.
std::vector<Result> RunOp(const std::vector<Row>& rows, int64_t max_logprobs, int threads) {
  return SampleBatch(rows, max_logprobs).Run([&](const SampleParams& p) {
    cpu::Sample(p, threads);
  });
}

int32_t Argmax(const std::vector<float>& v) {
  int32_t best = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] > v[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

double LogSumExp(const std::vector<float>& v) {
  double mx = -INFINITY, sum = 0;
  for (float x : v) mx = std::max<double>(mx, x);
  for (float x : v) sum += std::exp(x - mx);
  return mx + std::log(sum);
}

// The filtered distribution of a non-greedy row, from scratch: (id, probability) by (z desc,
// id asc), in long double.
std::vector<std::pair<int32_t, double>> FilteredDistribution(const Row& row) {
  const SampleRowParams& p = row.params;
  const std::vector<float> pen = Penalized(row);
  std::vector<std::pair<float, int32_t>> c;
  for (size_t i = 0; i < pen.size(); ++i)
    c.push_back({pen[i] / p.temperature, static_cast<int32_t>(i)});
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  if (p.top_k > 0 && p.top_k < static_cast<int32_t>(c.size())) {
    const float kth = c[p.top_k - 1].first;
    while (c.back().first < kth) c.pop_back();
  }
  while (!c.empty() && c.back().first == -INFINITY) c.pop_back();
  auto normalized = [&]() {
    std::vector<long double> q(c.size());
    long double sum = 0;
    for (size_t i = 0; i < c.size(); ++i)
      sum += q[i] = std::exp(static_cast<long double>(c[i].first) - c[0].first);
    for (auto& x : q) x /= sum;
    return q;
  };
  if (p.top_p < 1.0f) {  // smallest prefix whose remaining tail mass is <= 1 - top_p
    std::vector<long double> q = normalized();
    long double tail = 0;
    size_t keep = c.size();
    for (size_t m = c.size() - 1; m >= 1; --m) {
      tail += q[m];
      if (tail > 1.0L - p.top_p) break;
      keep = m;
    }
    c.resize(keep);
  }
  if (p.min_p > 0.0f) {
    std::vector<long double> q = normalized();
    size_t keep = 1;
    while (keep < c.size() && q[keep] >= p.min_p * q[0]) ++keep;
    c.resize(keep);
  }
  std::vector<long double> q = normalized();
  std::vector<std::pair<int32_t, double>> out;
  for (size_t i = 0; i < c.size(); ++i) out.push_back({c[i].second, static_cast<double>(q[i])});
  return out;
}

// Wilson-Hilferty approximation of the chi-square quantile at p = 0.999.
double ChiSquareCritical(int df) {
  const double z = 3.0902, a = 2.0 / (9.0 * df);
  return df * std::pow(1 - a + z * std::sqrt(a), 3);
}

// Checks a row's logprob and top list against log-softmax in double and an independent sort.
void ExpectRawLogprobs(const Row& row, const Result& res, int64_t max_logprobs) {
  const double lse = LogSumExp(row.logits);
  EXPECT_NEAR(res.logprob, row.logits[res.token] - lse, 1e-5);
  std::vector<int32_t> order(row.logits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return row.logits[a] > row.logits[b]; });
  const int64_t n = std::min<int64_t>(row.params.num_logprobs, max_logprobs);
  for (int64_t j = 0; j < max_logprobs; ++j) {
    if (j < n) {
      EXPECT_EQ(res.top_ids[j], order[j]) << "rank " << j;
      EXPECT_NEAR(res.top_logprobs[j], row.logits[order[j]] - lse, 1e-5);
    } else {
      EXPECT_EQ(res.top_ids[j], -1);
      EXPECT_EQ(res.top_logprobs[j], -INFINITY);
    }
  }
}

TEST(Sample, GreedyIsTheArgmaxOfPenalizedLogits) {
  for (int64_t vocab : {1000, 50000}) {
    std::vector<Row> rows(5);
    for (size_t r = 0; r < rows.size(); ++r) {
      rows[r].logits = RandomLogits(vocab, 10 + static_cast<uint32_t>(r), 3.0f);
      rows[r].params.temperature = 0.0f;
      rows[r].params.num_logprobs = static_cast<int32_t>(r * 2);
    }
    // Row 0: two equal maxima: the lower id wins.
    rows[0].logits[vocab / 2] = 50.0f;
    rows[0].logits[vocab / 3] = 50.0f;
    // Rows 1 and 4: the best three ids b1 > b2 > b3 are close, the rest at least 0.5 below.
    std::vector<int32_t> best(5);
    for (int r : {1, 4}) {
      best[r] = Argmax(rows[r].logits);
      rows[r].logits[best[r]] += 1.0f;
      const int32_t b2 = (best[r] + 1) % static_cast<int32_t>(vocab);
      const int32_t b3 = (best[r] + 2) % static_cast<int32_t>(vocab);
      rows[r].logits[b2] = rows[r].logits[best[r]] - 0.01f;
      rows[r].logits[b3] = rows[r].logits[best[r]] - 0.5f;
    }
    // Row 1: b1 seen in the prompt only: repetition applies, presence and frequency do not.
    rows[1].params.repetition_penalty = 3.0f;
    rows[1].params.presence_penalty = 5.0f;
    rows[1].params.frequency_penalty = 5.0f;
    rows[1].penalty_ids = {best[1], 3};
    rows[1].penalty_counts = {0, 1};
    // Row 4: b1 twice and b2 once in the output: 0.7 + 0.3 count each; b3 wins.
    rows[4].params.presence_penalty = 0.7f;
    rows[4].params.frequency_penalty = 0.3f;
    rows[4].penalty_ids = {(best[4] + 1) % static_cast<int32_t>(vocab), best[4]};
    rows[4].penalty_counts = {1, 2};
    // Row 2: the best id is a stop id, banned; row 3 lists it too but min_tokens is reached.
    for (int r : {2, 3})
      rows[r].ban_ids = {Argmax(rows[r].logits), -5, static_cast<int32_t>(vocab)};
    rows[2].params.ban_stop_ids = 1;
    const std::vector<Result> got = RunOp(rows, 8, 2);
    EXPECT_EQ(got[0].token, vocab / 3);
    for (size_t r = 0; r < rows.size(); ++r) {
      EXPECT_EQ(got[r].token, Argmax(Penalized(rows[r]))) << "vocab " << vocab << " row " << r;
      ExpectRawLogprobs(rows[r], got[r], 8);
    }
    EXPECT_EQ(got[1].token, (best[1] + 1) % vocab);
    EXPECT_EQ(got[4].token, (best[4] + 2) % vocab);
    EXPECT_NE(got[2].token, Argmax(rows[2].logits));
    EXPECT_EQ(got[3].token, Argmax(rows[3].logits));
  }
}

TEST(Sample, DrawsStayInTheTopKWithTiesKept) {
  // Logits on a coarse grid: many exact ties, also at the k-th value.
  const int64_t vocab = 1000, draws = 4000;
  std::vector<float> logits = RandomLogits(vocab, 3, 1.0f);
  for (auto& x : logits) x = std::round(x * 2.0f) / 2.0f;
  std::vector<float> sorted = logits;
  std::sort(sorted.rbegin(), sorted.rend());
  const int k = 10;
  const float kth = sorted[k - 1];
  const int64_t tied = std::count(logits.begin(), logits.end(), kth);
  const int64_t above =
      std::count_if(logits.begin(), logits.end(), [&](float x) { return x > kth; });
  ASSERT_GT(above + tied, k) << "the test needs ties across the k-th value";
  std::vector<Row> rows(static_cast<size_t>(draws));
  for (int64_t d = 0; d < draws; ++d) {
    rows[d].logits = logits;
    rows[d].params.temperature = 5.0f;  // flat: the tied ids get drawn too
    rows[d].params.top_k = k;
    rows[d].params.seed = 99;
    rows[d].params.position = d;
  }
  std::map<int32_t, int> seen;
  for (const Result& r : RunOp(rows, 0, 2)) {
    ASSERT_GE(logits[r.token], kth) << "token " << r.token << " is outside the top-k";
    ++seen[r.token];
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), above + tied) << "every tied id can be drawn";
}

TEST(Sample, FrequenciesFollowTheFilteredSoftmax) {
  const int64_t vocab = 100, draws = 20000;
  std::vector<float> logits(vocab);
  for (int64_t i = 0; i < vocab; ++i) logits[i] = 2.0f * std::sin(0.9f * static_cast<float>(i));
  std::vector<Row> cases(5);
  for (Row& c : cases) {
    c.logits = logits;
    c.params.seed = 1234;
  }
  cases[0].params.temperature = 0.8f;
  cases[0].params.top_p = 0.9f;
  cases[1].params.temperature = 1.5f;
  cases[1].params.repetition_penalty = 1.3f;
  cases[1].params.frequency_penalty = 0.4f;
  cases[1].params.presence_penalty = 0.2f;
  cases[1].penalty_ids = {Argmax(logits), 5, 17, 40};
  cases[1].penalty_counts = {3, 0, 1, 2};
  cases[2].params.temperature = 1.0f;
  cases[2].params.min_p = 0.1f;
  cases[2].params.ban_stop_ids = 1;
  cases[2].ban_ids = {Argmax(logits)};
  cases[3].params.temperature = 1.2f;
  cases[3].params.top_k = 30;
  cases[3].params.top_p = 0.8f;
  cases[3].params.min_p = 0.05f;
  // Exact ties on a coarse grid: the draw order among equal logits is by id.
  for (auto& x : cases[4].logits) x = std::round(x * 4.0f) / 4.0f;
  cases[4].params.temperature = 0.9f;
  cases[4].params.top_p = 0.95f;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const std::vector<std::pair<int32_t, double>> dist = FilteredDistribution(cases[ci]);
    ASSERT_GE(dist.size(), 4u) << "case " << ci;
    ASSERT_LT(dist[0].second, 0.8) << "case " << ci << " must not be near-greedy";
    std::vector<Row> rows(static_cast<size_t>(draws), cases[ci]);
    for (int64_t d = 0; d < draws; ++d) rows[d].params.position = 1000 + d;
    std::map<int32_t, int> counts;
    const std::vector<Result> got = RunOp(rows, 0, 2);
    int ambiguous = 0;
    for (int64_t d = 0; d < draws; ++d) {
      ++counts[got[d].token];
      // The draw itself: the first id (in (z desc, id asc) order) whose cumulative probability
      // exceeds u, unless u is within rounding of that boundary.
      const double u = PhiloxUniform(cases[ci].params.seed, 1000 + d, 0);
      double cum = 0;
      size_t pick = dist.size() - 1;
      for (size_t i = 0; i < dist.size(); ++i) {
        cum += dist[i].second;
        if (cum > u) {
          pick = i;
          break;
        }
      }
      if (std::fabs(cum - u) < 1e-9 || std::fabs(cum - dist[pick].second - u) < 1e-9) {
        ++ambiguous;
        continue;
      }
      ASSERT_EQ(got[d].token, dist[pick].first) << "case " << ci << " draw " << d;
    }
    EXPECT_LT(ambiguous, 3);
    // Bins with an expected count below 5 are pooled into one.
    double chi2 = 0, pooled_expected = 0, pooled_observed = 0;
    int bins = 0;
    for (const auto& [id, prob] : dist) {
      const double expected = prob * draws;
      const double observed = counts.count(id) ? counts[id] : 0;
      counts.erase(id);
      if (expected < 5) {
        pooled_expected += expected;
        pooled_observed += observed;
        continue;
      }
      chi2 += (observed - expected) * (observed - expected) / expected;
      ++bins;
    }
    if (pooled_expected > 0) {
      chi2 += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) /
              std::max(pooled_expected, 1.0);
      ++bins;
    }
    EXPECT_TRUE(counts.empty()) << "case " << ci << ": a filtered-out token was drawn";
    EXPECT_LT(chi2, ChiSquareCritical(bins - 1)) << "case " << ci << ", " << bins << " bins";
  }
}

TEST(Sample, EverythingBannedFallsBackToTheRawArgmax) {
  const int64_t vocab = 50;
  Row row;
  row.logits = RandomLogits(vocab, 8, 2.0f);
  row.params.temperature = 0.7f;
  row.params.ban_stop_ids = 1;
  for (int32_t i = 0; i < vocab; ++i) row.ban_ids.push_back(i);
  const Result got = RunOp({row}, 0, 1)[0];
  EXPECT_EQ(got.token, Argmax(row.logits));
  EXPECT_NEAR(got.logprob, row.logits[got.token] - LogSumExp(row.logits), 1e-5);
}

TEST(Sample, NullListsAndClampedLogprobs) {
  const int64_t vocab = 6;
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 0.0f, 1.0f};
  SampleRowParams params;
  params.temperature = 0.0f;
  params.num_logprobs = 20;  // more than max_logprobs (8) and vocab (6)
  int32_t token = -1, top_ids[8];
  float logprob = 0, top_lps[8];
  SampleParams p;
  p.logits = logits.data();
  p.rows = 1;
  p.vocab = vocab;
  p.row_params = &params;
  p.max_logprobs = 8;
  p.token_ids = &token;
  p.logprobs = &logprob;
  p.top_ids = top_ids;
  p.top_logprobs = top_lps;
  cpu::Sample(p, 1);
  EXPECT_EQ(token, 1);
  const std::vector<int32_t> want = {1, 3, 5, 0, 4, 2, -1, -1};
  for (int j = 0; j < 8; ++j) EXPECT_EQ(top_ids[j], want[j]) << j;
  EXPECT_EQ(top_lps[7], -INFINITY);
}

TEST(Sample, MixedBatchEqualsEachRowAlone) {
  for (int64_t vocab : {1000, 50000}) {
    std::vector<Row> rows(8);
    for (size_t r = 0; r < rows.size(); ++r) {
      rows[r].logits = RandomLogits(vocab, 100 + static_cast<uint32_t>(r), 2.5f);
      rows[r].params.seed = 7 + r;
      rows[r].params.position = 40 + static_cast<int64_t>(r);
      rows[r].params.num_logprobs = static_cast<int32_t>(r % 4);
    }
    rows[0].params.temperature = 0.0f;
    rows[1].params.temperature = 0.9f;
    rows[2].params.top_k = 40;
    for (auto& x : rows[2].logits) x = std::round(x);  // ties at the k-th value
    rows[3].params.top_p = 0.7f;
    rows[4].params.min_p = 0.02f;
    rows[5].params.repetition_penalty = 1.2f;
    rows[5].params.presence_penalty = 0.5f;
    rows[5].params.frequency_penalty = 0.25f;
    rows[5].penalty_ids = {1, 7, 99, 500};
    rows[5].penalty_counts = {0, 4, 1, 2};
    rows[6].params.ban_stop_ids = 1;
    rows[6].ban_ids = {Argmax(rows[6].logits), 3, 3};
    rows[7].params.temperature = 1.3f;
    rows[7].params.top_k = 200;
    rows[7].params.top_p = 0.95f;
    rows[7].params.min_p = 0.01f;
    const std::vector<Result> batch = RunOp(rows, 3, 2);
    for (size_t r = 0; r < rows.size(); ++r) {
      const Result alone = RunOp({rows[r]}, 3, 1)[0];
      EXPECT_EQ(alone.token, batch[r].token) << "row " << r;
      EXPECT_EQ(std::memcmp(&alone.logprob, &batch[r].logprob, 4), 0) << "row " << r;
      EXPECT_EQ(alone.top_ids, batch[r].top_ids) << "row " << r;
      EXPECT_EQ(std::memcmp(alone.top_logprobs.data(), batch[r].top_logprobs.data(), 12), 0);
      ExpectRawLogprobs(rows[r], batch[r], 3);
      if (rows[r].params.temperature == 0.0f) {
        EXPECT_EQ(batch[r].token, Argmax(Penalized(rows[r])));
      } else {
        const auto dist = FilteredDistribution(rows[r]);
        EXPECT_TRUE(std::any_of(dist.begin(), dist.end(),
                                [&](const auto& e) { return e.first == batch[r].token; }))
            << "row " << r << " drew a filtered-out token";
      }
    }
  }
}

}  // namespace
}  // namespace olmo::kernels
