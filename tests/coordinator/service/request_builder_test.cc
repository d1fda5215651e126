// RequestBuilder: client requests -> engine requests. Defaults, every validation error naming its
// field, ignore_eos semantics, and chat rendering through the checkpoint's template.
#include "coordinator/service/request_builder.h"

#include "gtest/gtest.h"

namespace olmo::service {
namespace {

class RequestBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = tokenizer::Tokenizer::FromTokenizerJson(std::string(OLMO_TEST_DATA_DIR) +
                                                     "/tokenizer/olmo3_instruct.tokenizer.json");
    ASSERT_TRUE(t.ok()) << t.status();
    tok_ = std::move(*t);
  }
  RequestBuilder Builder(int64_t max_model_len = 100) {
    RequestLimits limits;
    limits.max_model_len = max_model_len;
    return RequestBuilder(tok_.get(), tokenizer::ChatTemplateKind::kOlmoInstruct, {100257},
                          tok_->vocab_size(), limits);
  }
  static v1::GenerateRequest Ids(std::vector<int32_t> ids) {
    v1::GenerateRequest r;
    for (int32_t i : ids) r.mutable_token_ids()->add_ids(i);
    return r;
  }
  std::unique_ptr<tokenizer::Tokenizer> tok_;
};

TEST_F(RequestBuilderTest, DefaultsTakeTheRemainingContextAndModelStopIds) {
  auto b = Builder().FromGenerate(Ids({1, 2, 3}));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->engine.max_tokens, 97);
  EXPECT_FALSE(b->explicit_max_tokens);
  EXPECT_EQ(b->engine.sampling.temperature, 1.0f);
  EXPECT_EQ(b->engine.sampling.stop_token_ids, std::vector<int32_t>{100257});
  EXPECT_FALSE(b->engine.ignore_eos);
}

TEST_F(RequestBuilderTest, TextIsTokenizedWithAddedTokensAsPlainTextUnlessAllowed) {
  v1::GenerateRequest r;
  r.set_text("<|im_start|>hi");
  auto plain = Builder().FromGenerate(r);
  ASSERT_TRUE(plain.ok());
  EXPECT_NE(plain->engine.prompt_ids.front(), 100264);  // <|im_start|> is not a control token
  r.mutable_sampling()->set_allow_special_tokens(true);
  auto special = Builder().FromGenerate(r);
  ASSERT_TRUE(special.ok());
  EXPECT_EQ(special->engine.prompt_ids.front(), 100264);
}

TEST_F(RequestBuilderTest, InvalidUtf8TextIsRejectedNamingText) {
  v1::GenerateRequest r;
  r.set_text(std::string("ab\xff\xfe", 4));  // protobuf keeps it in memory; the wire would not
  auto b = Builder().FromGenerate(r);
  ASSERT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("text"), std::string::npos) << b.status();
}

TEST_F(RequestBuilderTest, EveryBadFieldIsNamed) {
  struct Case {
    std::string field;
    std::function<void(v1::GenerateRequest*)> edit;
  };
  std::vector<Case> cases = {
      {"max_tokens", [](auto* r) { r->mutable_sampling()->set_max_tokens(98); }},
      {"max_tokens", [](auto* r) { r->mutable_sampling()->set_max_tokens(0); }},
      {"min_tokens", [](auto* r) { r->mutable_sampling()->set_min_tokens(-1); }},
      {"temperature", [](auto* r) { r->mutable_sampling()->set_temperature(-1e-3f); }},
      {"temperature", [](auto* r) { r->mutable_sampling()->set_temperature(NAN); }},
      // logit / 1e-40 overflows to inf: every probability would be NaN.
      {"temperature", [](auto* r) { r->mutable_sampling()->set_temperature(1e-40f); }},
      {"repetition_penalty",
       [](auto* r) { r->mutable_sampling()->set_repetition_penalty(1e-40f); }},
      {"top_k", [](auto* r) { r->mutable_sampling()->set_top_k(-1); }},
      {"top_p", [](auto* r) { r->mutable_sampling()->set_top_p(1.01f); }},
      {"min_p", [](auto* r) { r->mutable_sampling()->set_min_p(-0.1f); }},
      {"repetition_penalty", [](auto* r) { r->mutable_sampling()->set_repetition_penalty(0); }},
      {"presence_penalty", [](auto* r) { r->mutable_sampling()->set_presence_penalty(2.5f); }},
      {"frequency_penalty", [](auto* r) { r->mutable_sampling()->set_frequency_penalty(-3); }},
      {"logprobs", [](auto* r) { r->mutable_sampling()->set_logprobs(-1); }},
      {"stop_token_ids", [](auto* r) { r->mutable_sampling()->add_stop_token_ids(-1); }},
      {"token_ids", [](auto* r) { r->mutable_token_ids()->add_ids(200000); }},
      {"prompt", [](auto* r) {
         for (int i = 0; i < 100; ++i) r->mutable_token_ids()->add_ids(5);
       }},
  };
  for (const auto& c : cases) {
    v1::GenerateRequest r = Ids({1, 2, 3});
    c.edit(&r);
    auto b = Builder().FromGenerate(r);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(b.status().message().find(c.field), std::string::npos)
        << c.field << ": " << b.status();
  }
}

TEST_F(RequestBuilderTest, IgnoreEosKeepsOnlyTheRequestsOwnStopIds) {
  v1::GenerateRequest r = Ids({1, 2, 3});
  r.mutable_sampling()->set_ignore_eos(true);
  r.mutable_sampling()->add_stop_token_ids(42);
  auto b = Builder().FromGenerate(r);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->engine.sampling.stop_token_ids, std::vector<int32_t>{42});
  EXPECT_FALSE(b->engine.ignore_eos);  // the engine still stops at 42
  r.mutable_sampling()->set_ignore_eos(false);
  b = Builder().FromGenerate(r);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->engine.sampling.stop_token_ids, (std::vector<int32_t>{100257, 42}));
}

TEST_F(RequestBuilderTest, ChatRendersTheTemplateAndRejectsUnknownRoles) {
  v1::ChatRequest c;
  auto* m = c.add_messages();
  m->set_role("user");
  m->set_content("Hi");
  auto b = Builder().FromChat(c);
  ASSERT_TRUE(b.ok()) << b.status();
  auto segments = tokenizer::RenderChat(*tok_, tokenizer::ChatTemplateKind::kOlmoInstruct,
                                        {{"user", std::string("Hi"), {}, {}}}, true);
  ASSERT_TRUE(segments.ok());
  EXPECT_EQ(b->engine.prompt_ids, *tokenizer::EncodeChat(*tok_, *segments));
  m->set_role("wizard");
  b = Builder().FromChat(c);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("messages"), std::string::npos);
  EXPECT_EQ(Builder().FromChat(v1::ChatRequest()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace olmo::service
