// The host sampler (per sequence) against one Sample op call over all sequences (CPU backend):
// the op's row parameters and CSR lists are built here from the dense per-sequence state
// (seen(), output_counts(), min_tokens), so the sampler's translation and the op's row slicing
// are both checked; results must be bitwise equal.
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/ops.h"
#include "tests/kernels/sample_batch.h"
#include "worker/sampler/sampler.h"

namespace olmo::sampler {
namespace {

TEST(SamplerOp, BatchedOpEqualsTheSamplerRowByRow) {
  const int64_t vocab = 3000, rows = 7, max_logprobs = 5;
  std::mt19937 rng(17);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  for (auto& x : logits) x = nd(rng);
  std::vector<SamplingParams> params(rows);
  params[0].temperature = 0.0f;
  params[0].repetition_penalty = 1.4f;
  params[1].temperature = 0.8f;
  params[1].top_k = 50;
  params[1].presence_penalty = 0.3f;
  params[1].frequency_penalty = 0.15f;
  params[2].top_p = 0.85f;
  params[2].min_tokens = 100;
  params[2].logprobs = 5;
  params[3].min_p = 0.05f;
  params[3].repetition_penalty = 0.8f;
  params[3].logprobs = 2;
  params[4].temperature = 1.2f;
  params[4].top_k = 500;
  params[4].top_p = 0.9f;
  params[4].min_p = 0.01f;
  params[4].frequency_penalty = -0.2f;
  params[5].temperature = 0.0f;
  params[5].min_tokens = 11;  // 10 output tokens so far: the stop ids are banned
  params[6].temperature = 0.5f;
  params[6].min_tokens = 10;  // reached: the stop ids are allowed
  std::vector<std::unique_ptr<SequenceState>> states;
  for (int64_t r = 0; r < rows; ++r) {
    SamplingParams& p = params[r];
    p.seed = 1000 + static_cast<uint64_t>(r);
    for (int i = 0; i < 3; ++i) p.stop_token_ids.push_back(static_cast<int32_t>(rng() % vocab));
    p.stop_token_ids.push_back(p.stop_token_ids[0]);  // duplicates are allowed
    const int32_t prompt = 20;
    states.push_back(std::make_unique<SequenceState>(p, prompt, vocab));
    std::vector<int32_t> tokens(prompt + 10);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % 200);  // repeats: counts > 1
    states.back()->Observe(tokens, 0);
  }
  // A stop id is the best logit of rows 5 (banned) and 6 (allowed).
  for (int64_t r : {5, 6}) logits[r * vocab + params[r].stop_token_ids[0]] = 50.0f;

  // The op's inputs, from the dense state.
  const int64_t position = 30;
  std::vector<kernels::sample_test::SampleRow> op_rows(rows);
  for (int64_t r = 0; r < rows; ++r) {
    const SequenceState& st = *states[r];
    const SamplingParams& p = params[r];
    kernels::sample_test::SampleRow& row = op_rows[r];
    row.logits.assign(logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
    row.params.temperature = p.temperature;
    row.params.top_k = p.top_k;
    row.params.top_p = p.top_p;
    row.params.min_p = p.min_p;
    row.params.repetition_penalty = p.repetition_penalty;
    row.params.presence_penalty = p.presence_penalty;
    row.params.frequency_penalty = p.frequency_penalty;
    row.params.num_logprobs = p.logprobs;
    row.params.seed = p.seed;
    row.params.position = position;
    row.params.ban_stop_ids = st.num_output_tokens() < p.min_tokens;
    for (int32_t id = static_cast<int32_t>(vocab) - 1; id >= 0; --id) {  // any order will do
      if (!st.seen()[id]) continue;
      row.penalty_ids.push_back(id);
      row.penalty_counts.push_back(st.output_counts()[id]);
    }
    row.ban_ids = p.stop_token_ids;
  }
  const std::unique_ptr<kernels::Ops> ops = kernels::MakeCpuOps({2, kernels::MatmulPath::kPacked});
  const std::vector<kernels::sample_test::SampleResult> got =
      kernels::sample_test::SampleBatch(op_rows, max_logprobs)
          .Run([&](const kernels::SampleParams& sp) { ops->Sample(sp); });

  int banned_rows = 0;
  for (int64_t r = 0; r < rows; ++r) {
    banned_rows += op_rows[r].params.ban_stop_ids;
    const SampleOutput want =
        Sample(std::span<const float>(logits.data() + r * vocab, static_cast<size_t>(vocab)),
               *states[r], position);
    EXPECT_EQ(got[r].token, want.token_id) << "row " << r;
    EXPECT_EQ(std::memcmp(&got[r].logprob, &want.logprob, 4), 0) << "row " << r;
    ASSERT_EQ(want.top_logprobs.size(), static_cast<size_t>(params[r].logprobs));
    for (size_t j = 0; j < want.top_logprobs.size(); ++j) {
      EXPECT_EQ(got[r].top_ids[j], want.top_logprobs[j].id);
      EXPECT_EQ(std::memcmp(&got[r].top_logprobs[j], &want.top_logprobs[j].logprob, 4), 0);
    }
  }
  EXPECT_EQ(banned_rows, 2);  // rows 2 and 5
  EXPECT_NE(got[5].token, params[5].stop_token_ids[0]);
  EXPECT_EQ(got[6].token, params[6].stop_token_ids[0]);
}

}  // namespace
}  // namespace olmo::sampler
