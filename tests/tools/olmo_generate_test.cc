// olmo-generate as a user runs it: the JSON contract, greedy output against the HF fixture,
// per-prompt seeds inside a --batch, and one-line errors with a non-zero exit for bad input.
#include <cstdio>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/tools/run_tool.h"
#include "worker/checkpoint/checkpoint.h"

namespace {

const std::string kBinary = std::string(OLMO_BINARY_DIR) + "/tools/olmo-generate/olmo-generate";
const std::string kModels = std::string(OLMO_TEST_DATA_DIR) + "/models";

using olmo::testing::JsonLines;
using olmo::testing::RunResult;
using olmo::testing::TempFile;

RunResult RunTool(const std::string& args) { return olmo::testing::RunTool(kBinary, args); }
std::vector<nlohmann::json> Lines(const std::string& out) { return JsonLines(out); }

std::string FirstModel() { return kModels + "/gqa_bf16"; }

std::vector<int32_t> GoldenInts(const std::string& model, const std::string& tensor) {
  auto ckpt = olmo::checkpoint::Checkpoint::Open(model + "/golden.safetensors");
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  auto t = (*ckpt)->Get(tensor);
  std::vector<int32_t> v(t->numel());
  std::memcpy(v.data(), t->data, v.size() * 4);
  return v;
}

std::string Join(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

TEST(OlmoGenerate, GreedyMatchesHfFixture) {
  std::string model = FirstModel();
  auto prompt = GoldenInts(model, "input_ids");
  auto greedy = GoldenInts(model, "greedy_ids");
  RunResult r = RunTool("--model " + model + " --prompt-ids " + Join(prompt) +
                    " --temperature 0 --max-tokens 32 --ignore-eos --logprobs 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 1u);
  const auto& j = lines[0];
  EXPECT_EQ(j["prompt_ids"].get<std::vector<int32_t>>(), prompt);
  EXPECT_EQ(j["token_ids"].get<std::vector<int32_t>>(), greedy);
  ASSERT_EQ(j["logprobs"].size(), 32u);
  ASSERT_EQ(j["top_logprobs"].size(), 32u);
  for (size_t i = 0; i < 32; ++i) {
    // Greedy: the chosen token is the most likely one and its logprob is the top entry.
    ASSERT_EQ(j["top_logprobs"][i].size(), 3u);
    EXPECT_EQ(j["top_logprobs"][i][0]["id"].get<int32_t>(), greedy[i]);
    EXPECT_FLOAT_EQ(j["top_logprobs"][i][0]["logprob"].get<float>(), j["logprobs"][i].get<float>());
    EXPECT_LE(j["logprobs"][i].get<float>(), 0.0f);
  }
  EXPECT_EQ(j["finish_reason"], "length");
}

TEST(OlmoGenerate, BatchSeedsAreIndependentOfBatch) {
  std::string model = FirstModel();
  auto prompt = GoldenInts(model, "input_ids");
  std::string batch = TempFile("batch.jsonl");
  {
    std::ofstream f(batch);
    for (int i = 0; i < 4; ++i) {
      std::vector<int32_t> p(prompt.begin() + i, prompt.begin() + 5 + 6 * i);
      f << "{\"prompt_ids\":[" << Join(p) << "],\"seed\":" << 40 + i
        << ",\"temperature\":0.8,\"max_tokens\":" << 6 + i << "}\n";
    }
  }
  RunResult all = RunTool("--model " + model + " --batch " + batch + " --ignore-eos");
  ASSERT_EQ(all.exit_code, 0) << all.err;
  auto lines = Lines(all.out);
  ASSERT_EQ(lines.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    std::vector<int32_t> p(prompt.begin() + i, prompt.begin() + 5 + 6 * i);
    EXPECT_EQ(lines[i]["prompt_ids"].get<std::vector<int32_t>>(), p);  // input order kept
    RunResult one = RunTool("--model " + model + " --prompt-ids " + Join(p) + " --seed " +
                        std::to_string(40 + i) + " --temperature 0.8 --ignore-eos --max-tokens " +
                        std::to_string(6 + i));
    ASSERT_EQ(one.exit_code, 0) << one.err;
    auto single = Lines(one.out);
    ASSERT_EQ(single.size(), 1u);
    EXPECT_EQ(single[0]["token_ids"], lines[i]["token_ids"]) << "prompt " << i;
    EXPECT_EQ(single[0]["token_ids"].size(), static_cast<size_t>(6 + i));
  }
}

TEST(OlmoGenerate, BadInputGivesOneLineError) {
  std::string model = FirstModel();
  struct Case {
    std::string args;
    std::string expect;
  } cases[] = {
      {"--prompt-ids 1,2", "--model"},
      {"--model " + model, "exactly one of"},
      {"--model /nonexistent --prompt-ids 1,2", "/nonexistent"},
      {"--model " + model + " --prompt-ids 1,x", "--prompt-ids"},
      {"--model " + model + " --prompt-ids 1,2 --temperature -1", "temperature"},
      {"--model " + model + " --prompt-ids 1,2 --top-p 0", "top_p"},
      {"--model " + model + " --prompt-ids 1,2 --top-p 1.5", "top_p"},
      {"--model " + model + " --prompt-ids 1,2 --logprobs 21", "logprobs"},
      {"--model " + model + " --prompt-ids 1,2 --max-tokens 0", "max_tokens"},
      {"--model " + model + " --prompt-ids 1,99999999", "vocabulary"},
      {"--model " + model + " --prompt-ids 1,2 --max-tokens 100000", "max_model_len"},
      {"--model " + model + " --prompt-ids 1,2 --bogus 3", "unknown flag"},
      {"--model " + model + " --batch /nonexistent.jsonl", "cannot open"},
      {"--model " + model + " --prompt-ids 1,2 --sampling gpu", "--sampling"},
      {"--model " + model + " --prompt-ids 1,2 --sampling device", "device backend"},
      {"--model " + model + " --prompt-ids 1,2 --collectives fast", "--collectives"},
      {"--model " + model + " --prompt-ids 1,2 --kv-dtype f16", "--kv-dtype"},
  };
  for (const Case& c : cases) {
    RunResult r = RunTool(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_TRUE(r.out.empty()) << c.args;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << "\nstderr: " << r.err;
    // The error is one line (logs before it, if any, are separate lines starting with '[').
    size_t pos = r.err.find("olmo-generate: error:");
    ASSERT_NE(pos, std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\n', pos), r.err.size() - 1) << r.err;
  }
}

TEST(OlmoGenerate, BadBatchLinesNameTheLine) {
  std::string batch = TempFile("bad.jsonl");
  {
    std::ofstream f(batch);
    f << "{\"prompt_ids\":[1,2]}\n{\"prompt_ids\":[1,2],\"top_k\":\"many\"}\n";
  }
  RunResult r = RunTool("--model " + FirstModel() + " --batch " + batch);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("line 2: top_k"), std::string::npos) << r.err;
}

TEST(OlmoGenerate, HelpExplainsFlags) {
  RunResult r = RunTool("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag : {"--model", "--prompt-ids", "--batch", "--temperature", "--top-k",
                           "--top-p", "--min-p", "--seed", "--logprobs", "--ignore-eos",
                           "--max-batch-tokens", "--block-size", "--min-tokens"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
