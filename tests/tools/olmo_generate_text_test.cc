// olmo-generate with text input on a checkpoint that ships the Olmo 3 tokenizer and chat
// template (make-tiny --tokenizer/--chat-template): prompt ids equal olmo-tokenize's, the chat
// prompt is framed by control tokens, and "text" is the decode of token_ids.
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/tools/run_tool.h"

namespace {

using olmo::testing::JsonLines;
using olmo::testing::RunTool;
using olmo::testing::TempFile;

const std::string kBin = std::string(OLMO_BINARY_DIR) + "/tools/";
const std::string kData = std::string(OLMO_TEST_DATA_DIR) + "/tokenizer";

std::string MakeDemo() {
  std::string dir = TempFile("demo");
  std::filesystem::remove_all(dir);
  auto r = RunTool(kBin + "make-tiny/make-tiny",
                   "--preset tiny-demo --out " + dir + " --tokenizer " + kData +
                       "/olmo3_instruct.tokenizer.json --chat-template " + kData +
                       "/chat_templates/olmo_instruct.jinja");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return dir;
}

TEST(OlmoGenerateText, PromptAndChatUseTheCheckpointTokenizer) {
  std::string dir = MakeDemo();
  auto p = RunTool(kBin + "olmo-generate/olmo-generate",
                   "--model " + dir + " --prompt 'Hello world' --temperature 0 --max-tokens 5");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  auto out = JsonLines(p.out);
  ASSERT_EQ(out.size(), 1u);
  auto enc = RunTool(kBin + "olmo-tokenize/olmo-tokenize", "--tokenizer " + dir + " --jsonl",
                     "{\"text\": \"Hello world\"}\n");
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  EXPECT_EQ(out[0]["prompt_ids"], JsonLines(enc.out)[0]["ids"]);
  auto dec = RunTool(kBin + "olmo-tokenize/olmo-tokenize",
                     "--tokenizer " + dir + " --jsonl --decode --skip-special",
                     nlohmann::json{{"ids", out[0]["token_ids"]}}.dump() + "\n");
  EXPECT_EQ(out[0]["text"], JsonLines(dec.out)[0]["text"]);

  auto c = RunTool(kBin + "olmo-generate/olmo-generate",
                   "--model " + dir + " --chat 'Hi there' --temperature 0 --max-tokens 3");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  auto ids = JsonLines(c.out)[0]["prompt_ids"].get<std::vector<int32_t>>();
  ASSERT_GE(ids.size(), 6u);
  EXPECT_EQ(ids.front(), 100264);  // <|im_start|>system ...
  // ... <|im_start|> assistant \n: the generation prompt ends the chat prompt.
  EXPECT_EQ(ids[ids.size() - 3], 100264);
  EXPECT_EQ(ids.back(), 198);
}

}  // namespace
