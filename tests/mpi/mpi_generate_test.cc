// olmo-generate on tp x pp worker groups under mpirun against one process (DESIGN.md §5 margin
// rule: tokens equal up to the reference's first near-tie, logprobs within 1e-4), plus the failure
// paths: an invalid tp and a missing checkpoint end the whole group with one message.
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/tools/run_tool.h"

namespace {

using olmo::testing::JsonLines;
using olmo::testing::RunTool;
using olmo::testing::TempFile;

const std::string kBinary = std::string(OLMO_BINARY_DIR) + "/tools/olmo-generate/olmo-generate";
const std::string kMpirun = "bash " + std::string(OLMO_SOURCE_DIR) + "/deploy/local/mpirun.sh";
const std::string kModels = std::string(OLMO_TEST_DATA_DIR) + "/models";

std::string Batch() {
  std::string path = TempFile("batch.jsonl");
  std::ofstream f(path);
  f << R"({"prompt_ids": [5, 17, 99, 3, 42, 7, 8, 120, 64, 33, 21, 2, 90, 11], "temperature": 0, "max_tokens": 10})"
    << "\n"
    << R"({"prompt_ids": [1, 2, 3], "temperature": 0.8, "seed": 9, "max_tokens": 8})" << "\n"
    << R"({"prompt_ids": [200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229], "temperature": 0, "max_tokens": 6})"
    << "\n";
  return path;
}

class MpiGenerate : public ::testing::TestWithParam<std::tuple<std::string, int, int>> {};

TEST_P(MpiGenerate, MatchesOneProcess) {
  auto [model, tp, pp] = GetParam();
  std::string args = "--model " + kModels + "/" + model + " --batch " + Batch() +
                     " --ignore-eos --logprobs 2 --max-batch-tokens 16";
  auto one = RunTool(kBinary, args);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  auto group = RunTool(kMpirun, std::to_string(tp * pp) + " " + kBinary + " " + args + " --tp " +
                                    std::to_string(tp) + " --pp " + std::to_string(pp));
  ASSERT_EQ(group.exit_code, 0) << group.err;
  // A pipeline runs steps concurrently: a sequential one never has 2 steps in flight.
  size_t at = group.err.find("steps in flight: ");
  ASSERT_NE(at, std::string::npos) << group.err;
  int in_flight = std::stoi(group.err.substr(at + 17));
  if (pp > 1) {
    EXPECT_GE(in_flight, 2) << group.err;
  }
  auto a = JsonLines(one.out), b = JsonLines(group.out);
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u) << "only rank 0 prints, once per prompt";
  for (size_t p = 0; p < 3; ++p) {
    ASSERT_EQ(a[p]["token_ids"].size(), b[p]["token_ids"].size());
    for (size_t i = 0; i < a[p]["token_ids"].size(); ++i) {
      EXPECT_NEAR(a[p]["logprobs"][i].get<double>(), b[p]["logprobs"][i].get<double>(), 1e-4);
      const auto& top = a[p]["top_logprobs"][i];
      if (top[0]["logprob"].get<double>() - top[1]["logprob"].get<double>() < 1e-4) break;
      ASSERT_EQ(a[p]["token_ids"][i], b[p]["token_ids"][i]) << "prompt " << p << " token " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Groups, MpiGenerate,
    ::testing::Values(std::tuple{std::string("mqa_hd32_yarn_default_af"), 2, 1},
                      std::tuple{std::string("gqa_bf16"), 4, 1},
                      std::tuple{std::string("sharded3_gqa_5layers"), 1, 2},
                      std::tuple{std::string("sharded3_gqa_5layers"), 1, 3},
                      std::tuple{std::string("sharded3_gqa_5layers"), 1, 4},
                      std::tuple{std::string("sharded3_gqa_5layers"), 2, 2}),
    [](const auto& info) {
      return std::get<0>(info.param) + "_tp" + std::to_string(std::get<1>(info.param)) + "_pp" +
             std::to_string(std::get<2>(info.param));
    });

TEST(MpiGenerateFailures, WholeGroupExitsWithOneMessage) {
  // tp 3 does not divide 4 heads: every rank finds out; rank 0 alone prints.
  auto bad_tp = RunTool(kMpirun, "3 " + kBinary + " --model " + kModels +
                                     "/gqa_bf16 --prompt-ids 1,2 --tp 3");
  EXPECT_NE(bad_tp.exit_code, 0);
  size_t first = bad_tp.err.find("olmo-generate: error:");
  ASSERT_NE(first, std::string::npos) << bad_tp.err;
  EXPECT_EQ(bad_tp.err.find("olmo-generate: error:", first + 1), std::string::npos) << bad_tp.err;
  EXPECT_NE(bad_tp.err.find("num_attention_heads"), std::string::npos) << bad_tp.err;
  // A missing shard: every rank fails to load; the lowest failing rank alone reports it.
  std::string dir = TempFile("missing_shard");
  std::filesystem::remove_all(dir);
  std::filesystem::copy(kModels + "/sharded3_gqa_5layers", dir);
  std::filesystem::remove(dir + "/model-00002-of-00003.safetensors");
  auto missing = RunTool(kMpirun, "2 " + kBinary + " --model " + dir + " --prompt-ids 1,2 --tp 2");
  EXPECT_NE(missing.exit_code, 0);
  first = missing.err.find("olmo-generate: error:");
  ASSERT_NE(first, std::string::npos) << missing.err;
  EXPECT_EQ(missing.err.find("olmo-generate: error:", first + 1), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("model-00002-of-00003.safetensors"), std::string::npos) << missing.err;
  // World size that is not tp x pp.
  auto bad_world = RunTool(kMpirun, "3 " + kBinary + " --model " + kModels +
                                        "/gqa_bf16 --prompt-ids 1,2 --tp 2");
  EXPECT_NE(bad_world.exit_code, 0);
  EXPECT_NE(bad_world.err.find("world size"), std::string::npos) << bad_world.err;
}

}  // namespace
