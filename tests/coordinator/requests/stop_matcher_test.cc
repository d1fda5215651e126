#include "coordinator/requests/stop_matcher.h"

#include <random>

#include "gtest/gtest.h"

namespace olmo::requests {
namespace {

std::string FeedAll(StopMatcher& m, const std::vector<std::string>& deltas) {
  std::string out;
  for (const auto& d : deltas) out += m.Feed(d);
  return out + m.Flush();
}

TEST(StopMatcher, StopSpanningTwoDeltasIsExcludedAndHeldBack) {
  auto m = StopMatcher::Create({"</answer>"});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->Feed("The answer is 4</ans"), "The answer is 4");  // "</ans" held back
  EXPECT_EQ(m->Feed("wer> trailing"), "");
  ASSERT_TRUE(m->matched().has_value());
  EXPECT_EQ(*m->matched(), "</answer>");
  EXPECT_EQ(m->Feed("more"), "");  // tokens after the stop are discarded
  EXPECT_EQ(m->Flush(), "");
}

TEST(StopMatcher, FalseStartIsReleased) {
  auto m = StopMatcher::Create({"STOP"});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->Feed("ST"), "");
  EXPECT_EQ(m->Feed("OP"), "");
  EXPECT_TRUE(m->matched().has_value());
  auto n = StopMatcher::Create({"STOP"});
  EXPECT_EQ(n->Feed("STO"), "");
  EXPECT_EQ(n->Feed("RM"), "STORM");
  EXPECT_EQ(n->Flush(), "");
  EXPECT_FALSE(n->matched().has_value());
}

TEST(StopMatcher, EarliestMatchWinsAndOverlapsAreHandled) {
  auto m = StopMatcher::Create({"abcd", "bc"});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(FeedAll(*m, {"xa", "bcd"}), "x");  // "abcd" starts before "bc"
  EXPECT_EQ(*m->matched(), "abcd");
  auto k = StopMatcher::Create({"abcd", "bc"});
  EXPECT_EQ(FeedAll(*k, {"xab", "ce"}), "xa");
  EXPECT_EQ(*k->matched(), "bc");
  auto n = StopMatcher::Create({"aab"});
  EXPECT_EQ(FeedAll(*n, {"a", "a", "a", "b", "c"}), "a");  // "aaab": stop at index 1
}

TEST(StopMatcher, AnySplitGivesTheSameOutput) {
  // Random texts split at random points: the output equals the text up to the first stop.
  std::mt19937 rng(5);
  const std::vector<std::string> stops = {"xyz", "yy", "\n\n"};
  for (int it = 0; it < 2000; ++it) {
    std::string text;
    for (int i = 0; i < 30; ++i) text.push_back("xyz\nab"[rng() % 6]);
    size_t first = std::string::npos;
    for (const auto& s : stops) first = std::min(first, text.find(s));
    std::string want = first == std::string::npos ? text : text.substr(0, first);
    auto m = StopMatcher::Create(stops);
    std::vector<std::string> deltas;
    for (size_t i = 0; i < text.size();) {
      size_t n = 1 + rng() % 4;
      deltas.push_back(text.substr(i, n));
      i += n;
    }
    ASSERT_EQ(FeedAll(*m, deltas), want) << text;
    ASSERT_EQ(m->matched().has_value(), first != std::string::npos);
  }
}

TEST(StopMatcher, Limits) {
  EXPECT_FALSE(StopMatcher::Create({""}).ok());
  EXPECT_FALSE(StopMatcher::Create({std::string(300, 'a')}).ok());
  std::vector<std::string> many(17, "x");
  auto r = StopMatcher::Create(many);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("stop"), std::string::npos);
}

}  // namespace
}  // namespace olmo::requests
