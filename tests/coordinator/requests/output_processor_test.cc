// Output processing with the real Olmo 3 tokenizer: text deltas, stop strings spanning tokens,
// stop tokens, discarded lookahead tokens and usage counts.
#include "coordinator/requests/output_processor.h"

#include "coordinator/tokenizer/utf8.h"
#include "gtest/gtest.h"

namespace olmo::requests {
namespace {

const tokenizer::Tokenizer& Tok() {
  static auto t = tokenizer::Tokenizer::FromTokenizerJson(
      std::string(OLMO_TEST_DATA_DIR) + "/tokenizer/olmo3_instruct.tokenizer.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return **t;
}

engine::SeqUpdate Update(int32_t id, engine::FinishReason finish = engine::FinishReason::kNone) {
  engine::SeqUpdate u;
  u.has_token = true;
  u.token_id = id;
  u.logprob = -1.0f;
  u.finish = finish;
  return u;
}

TEST(OutputProcessor, StopStringAcrossTokensEndsTheStream) {
  auto ids = *Tok().Encode("The answer is 42.\n\nNext question, please");
  OutputProcessor p(&Tok(), *StopMatcher::Create({".\n\nNext"}), 7);
  std::string text;
  size_t stop_at = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    OutputEvent e = p.Apply(Update(ids[i]));
    text += e.text;
    if (e.finish != Finish::kNone && stop_at == 0) {
      stop_at = i + 1;
      EXPECT_EQ(e.finish, Finish::kStop);
      EXPECT_EQ(e.matched_stop, ".\n\nNext");
      EXPECT_EQ(e.completion_tokens, static_cast<int32_t>(i + 1));
      EXPECT_EQ(e.prompt_tokens, 7);
    }
  }
  EXPECT_EQ(text, "The answer is 42");
  ASSERT_GT(stop_at, 0u);
  EXPECT_LT(stop_at, ids.size());  // later tokens came and were discarded
  EXPECT_TRUE(p.needs_abort());
  EXPECT_EQ(p.Apply(Update(ids[0])).completion_tokens, static_cast<int32_t>(stop_at));
}

TEST(OutputProcessor, DeltasNeverSplitCharactersAndLengthFlushes) {
  std::string want = "😀 naïve 日本語 ok";
  auto ids = *Tok().Encode(want);
  OutputProcessor p(&Tok(), *StopMatcher::Create({}), 3);
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    bool last = i + 1 == ids.size();
    OutputEvent e = p.Apply(Update(ids[i], last ? engine::FinishReason::kLength
                                                  : engine::FinishReason::kNone));
    EXPECT_TRUE(tokenizer::IsValidUtf8(e.text));
    text += e.text;
    if (last) {
      EXPECT_EQ(e.finish, Finish::kLength);
    }
  }
  EXPECT_EQ(text, want);
  EXPECT_FALSE(p.needs_abort());
}

TEST(OutputProcessor, StopTokenIsReportedNotPrinted) {
  auto ids = *Tok().Encode("Paris.");
  OutputProcessor p(&Tok(), *StopMatcher::Create({"zzz"}), 1);
  std::string text;
  for (int32_t id : ids) text += p.Apply(Update(id)).text;
  OutputEvent e = p.Apply(Update(100265, engine::FinishReason::kStop));  // <|im_end|>
  text += e.text;
  EXPECT_EQ(text, "Paris.");
  EXPECT_EQ(e.finish, Finish::kStop);
  EXPECT_EQ(e.matched_stop, "<|im_end|>");
  EXPECT_EQ(e.completion_tokens, static_cast<int32_t>(ids.size() + 1));
  EXPECT_FALSE(p.needs_abort());
}

TEST(OutputProcessor, EndReleasesHeldBackText) {
  OutputProcessor p(&Tok(), *StopMatcher::Create({"STOP"}), 1);
  std::string text;
  std::vector<int32_t> ids = *Tok().Encode("go ST");
  for (int32_t id : ids) text += p.Apply(Update(id)).text;
  OutputEvent e = p.End(Finish::kShutdown);
  EXPECT_EQ(text + e.text, "go ST");
  EXPECT_EQ(e.finish, Finish::kShutdown);
}

}  // namespace
}  // namespace olmo::requests
