#include "common/plan_codec.h"

#include <random>

#include "gtest/gtest.h"

namespace olmo {
namespace {

StepPlan SamplePlan() {
  StepPlan p;
  p.step_id = 42;
  p.free_seq_ids = {3, 9};
  SeqStep a;
  a.seq_id = 7;
  a.epoch = 2;
  a.token_ids = {1, 2, 3};
  a.start_pos = 16;
  a.sample = true;
  a.blocks[0] = {true, {5, 6}};
  a.blocks[1] = {false, {8}};
  SamplingParams s;
  s.temperature = 0.7f;
  s.top_k = 40;
  s.seed = 0xdeadbeefcafeull;
  s.stop_token_ids = {2, 100265};
  a.sampling = s;
  a.num_prompt_tokens = 12;
  SeqStep b;
  b.seq_id = 8;
  b.token_ids = {4};
  p.seqs = {a, b};
  return p;
}

TEST(PlanCodec, RoundTrips) {
  StepPlan p = SamplePlan();
  auto d = DecodePlan(EncodePlan(p));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->step_id, 42);
  EXPECT_EQ(d->free_seq_ids, p.free_seq_ids);
  ASSERT_EQ(d->seqs.size(), 2u);
  EXPECT_EQ(d->seqs[0].token_ids, p.seqs[0].token_ids);
  EXPECT_EQ(d->seqs[0].blocks[0].append, (std::vector<int32_t>{5, 6}));
  EXPECT_TRUE(d->seqs[0].blocks[0].reset);
  EXPECT_FALSE(d->seqs[0].blocks[1].reset);
  ASSERT_TRUE(d->seqs[0].sampling.has_value());
  EXPECT_EQ(d->seqs[0].sampling->seed, 0xdeadbeefcafeull);
  EXPECT_EQ(d->seqs[0].sampling->stop_token_ids, (std::vector<int32_t>{2, 100265}));
  EXPECT_EQ(d->seqs[0].num_prompt_tokens, 12);
  EXPECT_FALSE(d->seqs[1].sampling.has_value());
  EXPECT_EQ(EncodePlan(*d), EncodePlan(p));

  StepResult r;
  r.step_id = 42;
  r.status = absl::InternalError("boom");
  r.seqs = {{7, 2, 99, -0.5f, {{99, -0.5f}, {3, -1.5f}}}};
  auto dr = DecodeResult(EncodeResult(r));
  ASSERT_TRUE(dr.ok()) << dr.status();
  EXPECT_EQ(dr->status, r.status);
  EXPECT_EQ(dr->seqs[0].top_logprobs[1].id, 3);
}

TEST(PlanCodec, RejectsEveryTruncationAndCorruptions) {
  std::string bytes = EncodePlan(SamplePlan());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodePlan(bytes.substr(0, n)).ok()) << n;
  }
  std::mt19937 rng(1);
  for (int i = 0; i < 2000; ++i) {  // random corruption: never a crash
    std::string b = bytes;
    b[rng() % b.size()] ^= static_cast<char>(1 + rng() % 255);
    (void)DecodePlan(b);
  }
  EXPECT_FALSE(DecodeResult(bytes).ok());  // wrong magic
}

}  // namespace
}  // namespace olmo
