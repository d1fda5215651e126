// The sampler against transformers' logits processors (recorded fixtures), OpenAI penalty
// semantics, min_tokens, Philox known answers, and a chi-square test of seeded draws.
#include "worker/sampler/sampler.h"

#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <set>

#include "common/philox.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace olmo::sampler {
namespace {

nlohmann::json Fixture() {
  std::ifstream in(std::string(OLMO_TEST_DATA_DIR) + "/sampling/hf_warpers.json");
  EXPECT_TRUE(in.good());
  return nlohmann::json::parse(in);
}

SamplingParams Params(float temperature, int top_k = 0, float top_p = 1.0f, float min_p = 0.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

TEST(Philox, KnownAnswers) {
  // Random123 known-answer vectors for Philox4x32-10.
  EXPECT_EQ(Philox4x32_10({0, 0, 0, 0}, 0),
            (PhiloxCounter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(Philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                          0xffffffffffffffffull),
            (PhiloxCounter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(Philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                          (static_cast<uint64_t>(0x299f31d0u) << 32) | 0xa4093822u),
            (PhiloxCounter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(Sampler, FilteredSetsEqualHfWarpers) {
  nlohmann::json f = Fixture();
  int checked = 0;
  for (const auto& c : f["warpers"]) {
    std::vector<float> logits = c["logits"].get<std::vector<float>>();
    const auto& p = c["params"];
    SequenceState st(Params(p["temperature"].get<float>(), p["top_k"].get<int>(),
                            p["top_p"].get<float>(), p["min_p"].get<float>()),
                     0, static_cast<int64_t>(logits.size()));
    std::vector<int32_t> got = FilteredSet(logits, st);
    std::sort(got.begin(), got.end());
    std::vector<int32_t> want = c["survivors"].get<std::vector<int32_t>>();
    std::set<float> distinct(logits.begin(), logits.end());
    if (distinct.size() == logits.size()) {
      EXPECT_EQ(got, want) << "case " << checked << " " << p;
    } else {
      // Among exactly tied logits HF's choice follows torch.sort's unspecified tie order; the
      // surviving logit values must still agree.
      auto values = [&](const std::vector<int32_t>& ids) {
        std::vector<float> v;
        for (int32_t i : ids) v.push_back(logits[i]);
        std::sort(v.begin(), v.end());
        return v;
      };
      EXPECT_EQ(values(got), values(want)) << "case " << checked << " " << p;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 60);
}

TEST(Sampler, RepetitionPenaltyEqualsHf) {
  nlohmann::json f = Fixture();
  for (const auto& c : f["penalties"]) {
    std::vector<float> logits = c["logits"].get<std::vector<float>>();
    SamplingParams p;
    p.repetition_penalty = c["penalty"].get<float>();
    auto ids = c["input_ids"].get<std::vector<int32_t>>();
    SequenceState st(p, static_cast<int32_t>(ids.size()), static_cast<int64_t>(logits.size()));
    st.Observe(ids, 0);
    ApplyPenalties(logits, st);
    auto want = c["output"].get<std::vector<float>>();
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(logits[i], want[i], 1e-6) << i;
  }
}

TEST(Sampler, PresenceAndFrequencyCountOutputOnly) {
  SamplingParams p;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  SequenceState st(p, /*num_prompt_tokens=*/3, 6);
  st.Observe(std::vector<int32_t>{1, 1, 2}, 0);     // prompt: no presence/frequency effect
  st.Observe(std::vector<int32_t>{2, 4, 4, 4}, 3);  // output: 2 once, 4 three times
  EXPECT_EQ(st.num_output_tokens(), 4);
  std::vector<float> logits = {1, 1, 1, 1, 1, 1};
  ApplyPenalties(logits, st);
  EXPECT_FLOAT_EQ(logits[1], 1.0f);
  EXPECT_FLOAT_EQ(logits[2], 1.0f - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(logits[4], 1.0f - 0.5f - 0.75f);
  EXPECT_FLOAT_EQ(logits[5], 1.0f);
}

TEST(Sampler, MinTokensBansStopIds) {
  SamplingParams p = Params(0.0f);
  p.min_tokens = 2;
  p.stop_token_ids = {3};
  std::vector<float> logits = {0, 1, 2, 9, 0};
  SequenceState st(p, 2, 5);
  st.Observe(std::vector<int32_t>{0, 1}, 0);
  EXPECT_EQ(Sample(logits, st, 2).token_id, 2);  // 0 outputs so far: eos banned
  st.Observe(std::vector<int32_t>{2}, 2);
  EXPECT_EQ(Sample(logits, st, 3).token_id, 2);  // 1 output
  st.Observe(std::vector<int32_t>{2}, 3);
  EXPECT_EQ(Sample(logits, st, 4).token_id, 3);  // 2 outputs: allowed
}

TEST(Sampler, GreedyTieBreaksOnLowestIdAndLogprobsAreRaw) {
  SamplingParams p = Params(0.0f);
  p.repetition_penalty = 2.0f;
  p.logprobs = 3;
  std::vector<float> logits = {1.0f, 3.0f, 3.0f, 2.0f};
  SequenceState st(p, 1, 4);
  st.Observe(std::vector<int32_t>{1}, 0);  // id 1 penalized to 1.5
  SampleOutput out = Sample(logits, st, 1);
  EXPECT_EQ(out.token_id, 2);
  double lse = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0));
  EXPECT_NEAR(out.logprob, 3.0 - lse, 1e-6);  // unmodified distribution
  ASSERT_EQ(out.top_logprobs.size(), 3u);
  EXPECT_EQ(out.top_logprobs[0].id, 1);  // raw ranking: ties by id
  EXPECT_EQ(out.top_logprobs[1].id, 2);
  EXPECT_EQ(out.top_logprobs[2].id, 3);
}

// Wilson-Hilferty approximation of the chi-square quantile at p = 0.999.
double ChiSquareCritical(int df) {
  const double z = 3.0902;
  double a = 2.0 / (9.0 * df);
  return df * std::pow(1 - a + z * std::sqrt(a), 3);
}

TEST(Sampler, SeededDrawsFollowTheFilteredDistribution) {
  std::vector<float> logits(40);
  for (int i = 0; i < 40; ++i) logits[i] = std::sin(1.7 * i) * 2.5f;
  for (auto params : {Params(0.9f, 0, 0.95f), Params(1.3f, 12), Params(1.0f, 0, 1.0f, 0.05f)}) {
    params.seed = 77;
    SequenceState st(params, 0, 40);
    std::vector<float> z;
    std::vector<int32_t> ids = FilteredSet(logits, st, &z);
    ASSERT_GT(ids.size(), 2u);
    std::vector<double> prob(ids.size());
    double total = 0;
    for (size_t i = 0; i < ids.size(); ++i) total += prob[i] = std::exp(z[ids[i]] - z[ids[0]]);
    std::map<int32_t, int> counts;
    const int kDraws = 100000;
    for (int d = 0; d < kDraws; ++d) ++counts[Sample(logits, st, d).token_id];
    double chi2 = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      double expected = kDraws * prob[i] / total;
      double diff = counts[ids[i]] - expected;
      chi2 += diff * diff / expected;
      counts.erase(ids[i]);
    }
    EXPECT_TRUE(counts.empty()) << "a filtered-out token was drawn";
    int df = static_cast<int>(ids.size()) - 1;
    EXPECT_LT(chi2, ChiSquareCritical(df)) << "df " << df;
  }
}

TEST(Sampler, SeedAndPositionDetermineTheDraw) {
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = std::cos(0.37 * i);
  SamplingParams a = Params(1.0f);
  a.seed = 5;
  SamplingParams b = a;
  b.seed = 6;
  SequenceState sa(a, 0, 100), sa2(a, 0, 100), sb(b, 0, 100);
  int same_seed_diff = 0, other_seed_diff = 0;
  for (int pos = 0; pos < 200; ++pos) {
    same_seed_diff += Sample(logits, sa, pos).token_id != Sample(logits, sa2, pos).token_id;
    other_seed_diff += Sample(logits, sa, pos).token_id != Sample(logits, sb, pos).token_id;
  }
  EXPECT_EQ(same_seed_diff, 0);
  EXPECT_GT(other_seed_diff, 150);
}

}  // namespace
}  // namespace olmo::sampler
