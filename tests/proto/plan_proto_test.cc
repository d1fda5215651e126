#include "proto/plan_proto.h"

#include "common/plan_codec.h"
#include "gtest/gtest.h"
#include "olmo/v1/inference.pb.h"

namespace olmo::server {
namespace {

TEST(PlanProto, RoundTripsThroughTheWire) {
  StepPlan p;
  p.step_id = 7;
  p.free_seq_ids = {1, 2};
  SeqStep s;
  s.seq_id = 3;
  s.epoch = 1;
  s.token_ids = {10, 11, 12};
  s.start_pos = 32;
  s.sample = true;
  s.blocks[0] = {true, {4, 5}};
  s.blocks[1] = {false, {9}};
  SamplingParams sp;
  sp.temperature = 0.5f;
  sp.top_p = 0.9f;
  sp.seed = 1234567890123ull;
  sp.stop_token_ids = {100257, 100265};
  s.sampling = sp;
  s.num_prompt_tokens = 20;
  p.seqs = {s, SeqStep{}};
  v1::StepPlan msg;
  ToProto(p, &msg);
  v1::StepPlan parsed;
  ASSERT_TRUE(parsed.ParseFromString(msg.SerializeAsString()));
  auto back = FromProto(parsed);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EncodePlan(*back), EncodePlan(p));  // every field survived

  parsed.mutable_seqs(0)->mutable_blocks()->RemoveLast();
  EXPECT_EQ(FromProto(parsed).status().code(), absl::StatusCode::kInvalidArgument);

  StepResult r;
  r.step_id = 7;
  r.status = absl::ResourceExhaustedError("full");
  r.seqs = {{3, 1, 42, -0.25f, {{42, -0.25f}, {7, -2.0f}}}};
  v1::StepResult rm;
  ToProto(r, &rm);
  auto rb = FromProto(rm);
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(EncodeResult(*rb), EncodeResult(r));
}

TEST(InferenceProto, RequestsSerialize) {
  v1::GenerateRequest req;
  req.set_request_id("r-1");
  req.set_text("Hello");
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_sampling()->add_stop("\n\n");
  v1::GenerateRequest back;
  ASSERT_TRUE(back.ParseFromString(req.SerializeAsString()));
  EXPECT_EQ(back.text(), "Hello");
  EXPECT_TRUE(back.sampling().has_temperature());
  EXPECT_FALSE(back.sampling().has_top_p());  // unset: the service default applies
}

}  // namespace
}  // namespace olmo::server
