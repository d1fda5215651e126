// olmo-tokenize as a user runs it: JSONL encode/decode against the oracle vectors, both load
// paths, plain added tokens, and clear errors.
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/tools/run_tool.h"

namespace {

using olmo::testing::JsonLines;
using olmo::testing::RunTool;

const std::string kBinary = std::string(OLMO_BINARY_DIR) + "/tools/olmo-tokenize/olmo-tokenize";
const std::string kData = std::string(OLMO_TEST_DATA_DIR) + "/tokenizer";
const std::string kJson = "--tokenizer " + kData + "/olmo3_instruct.tokenizer.json";
const std::string kTiktoken = "--tokenizer " + std::string(OLMO_SOURCE_DIR) +
                              "/../shared/data/tokenizer/cl100k_base.tiktoken --added-tokens-file " +
                              kData + "/olmo3_special_tokens.json --variant olmo3_instruct";

TEST(OlmoTokenize, JsonlMatchesOracleVectorsOnBothLoadPaths) {
  std::ifstream in(kData + "/vectors.json");
  nlohmann::json cases = nlohmann::json::parse(in)["variants"]["olmo3_instruct"];
  std::string input;
  for (const auto& c : cases) input += nlohmann::json{{"utf8_hex", c["utf8_hex"]}}.dump() + "\n";
  for (const std::string& tok : {kJson, kTiktoken}) {
    auto r = RunTool(kBinary, tok + " --jsonl", input);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto lines = JsonLines(r.out);
    ASSERT_EQ(lines.size(), cases.size());
    for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(lines[i]["ids"], cases[i]["ids"]) << i;
  }
}

TEST(OlmoTokenize, DecodeAndPlainAddedTokens) {
  auto r = RunTool(kBinary, kJson + " --jsonl", "{\"text\": \"x <|endoftext|> y\"}\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(JsonLines(r.out)[0]["ids"], nlohmann::json({87, 220, 100257, 379}));
  auto plain = RunTool(kBinary, kJson + " --jsonl --added-tokens plain",
                       "{\"text\": \"<|endoftext|>\"}\n");
  ASSERT_EQ(plain.exit_code, 0);
  EXPECT_GT(JsonLines(plain.out)[0]["ids"].size(), 1u);
  auto d = RunTool(kBinary, kJson + " --jsonl --decode", "{\"ids\": [87, 220, 100257, 379]}\n");
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_EQ(JsonLines(d.out)[0]["text"], "x <|endoftext|> y");
  auto s = RunTool(kBinary, kJson + " --jsonl --decode --skip-special",
                   "{\"ids\": [87, 220, 100257, 379]}\n");
  EXPECT_EQ(JsonLines(s.out)[0]["text"], "x  y");
}

TEST(OlmoTokenize, ErrorsAreOneLine) {
  struct Case {
    std::string args, input, expect;
  } cases[] = {
      {"", "", "--tokenizer"},
      {"--tokenizer /nonexistent.json", "", "/nonexistent.json"},
      {kJson + " --jsonl", "not json\n", "line 1"},
      {kJson + " --jsonl --decode", "{\"ids\": [999999]}\n", "999999"},
      {kJson + " --jsonl", "{\"utf8_hex\": \"zz\"}\n", "utf8_hex"},
      {kJson + " --added-tokens maybe", "", "--added-tokens"},
  };
  for (const auto& c : cases) {
    auto r = RunTool(kBinary, c.args, c.input);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << ": " << r.err;
    EXPECT_NE(r.err.find("olmo-tokenize: error:"), std::string::npos);
  }
}

}  // namespace
