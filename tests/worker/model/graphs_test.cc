// CUDA graphs for decode steps, on the device-like CPU backend that records and replays captures:
// no launch of a graph older than a workspace reallocation, padded table widths (few shapes), and
// TP ranks that capture and launch together (NCCL's rule), also when one rank's capture fails.
#include <set>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "group_harness.h"

namespace olmo::testing {
namespace {

// Greedy requests arriving in an order that grows the attention workspace between a graph's
// capture and its next launch: 12 one-block prompts (60 tokens, each done after its first token)
// size the model's buffers for the whole run; two sequences decode
// past their first KV block (their graphs are captured at max_blocks 2); then a 40-token prompt
// (3 blocks) grows the backend's split-K partials; when it finishes, the first shape returns.
Outputs RunGrowingWorkspace(StepExecutor* ex) {
  engine::Engine engine(ex, {64, 64, 0});
  auto add = [&](int64_t id, int prompt_len, int max_tokens) {
    engine::Request r;
    r.seq_id = id;
    for (int i = 0; i < prompt_len; ++i) r.prompt_ids.push_back((id * 37 + i * 11) % 380 + 1);
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    EXPECT_TRUE(engine.Add(r).ok());
  };
  Outputs out;
  auto step = [&] {
    auto u = engine.Step();
    EXPECT_TRUE(u.ok()) << u.status();
    if (!u.ok()) return false;
    for (auto& x : *u) out[x.seq_id].push_back(x);
    return true;
  };
  for (int i = 0; i < 12; ++i) add(10 + i, 5, 1);  // 60 tokens in one block each
  add(1, 5, 60);
  add(2, 5, 60);
  add(3, 5, 8);
  while (out[1].size() < 16) {
    if (!step()) return out;
  }
  add(4, 40, 3);
  while (engine.HasWork()) {
    if (!step()) break;
  }
  return out;
}

// A graph captured before the backend grew a workspace it uses must not be launched again (on
// CUDA it would read freed memory); at tp 2 the ranks also drop and recapture together.
TEST(GraphsTest, NoLaunchOfAGraphOlderThanAWorkspaceGrowth) {
  for (int tp : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << "tp " << tp);
    PipelineGroup plain = LoadPipeline("gqa_bf16", tp, 1, 16, 64, Backend::kDeviceSampling);
    PipelineExecutor px(&plain);
    const Outputs want = RunGrowingWorkspace(&px);
    PipelineGroup graphed = LoadPipeline("gqa_bf16", tp, 1, 16, 64, Backend::kDeviceGraphs);
    PipelineExecutor gx(&graphed);
    const Outputs got = RunGrowingWorkspace(&gx);
    ASSERT_EQ(got.size(), 16u);
    for (const auto& [id, tokens] : want) {
      ASSERT_EQ(got.at(id).size(), tokens.size()) << "seq " << id;
      for (size_t t = 0; t < tokens.size(); ++t) {
        EXPECT_EQ(got.at(id)[t].token_id, tokens[t].token_id) << "seq " << id << " token " << t;
        EXPECT_EQ(got.at(id)[t].logprob, tokens[t].logprob) << "seq " << id << " token " << t;
      }
    }
    for (const auto& w : graphed.workers) {
      auto* ops = static_cast<DeviceLikeCpuOps*>(w->ops.get());
      EXPECT_GE(ops->workspace_epoch(), 3) << "the scenario did not grow the workspace";
      EXPECT_GT(w->model->graph_launches(), 0);
      EXPECT_EQ(ops->stale_replays, 0) << "a graph ran on a reallocated workspace";
    }
    ExpectUniformGraphs(graphed);
  }
}

TEST(GraphsTest, TableWidthsRoundUpToFourPerPowerOfTwo) {
  for (auto [mb, want] : std::vector<std::pair<int64_t, int64_t>>{{0, 0},
                                                                  {1, 1},
                                                                  {4, 4},
                                                                  {5, 5},
                                                                  {7, 7},
                                                                  {8, 8},
                                                                  {9, 10},
                                                                  {11, 12},
                                                                  {16, 16},
                                                                  {17, 20},
                                                                  {33, 40},
                                                                  {100, 112},
                                                                  {4097, 5120}}) {
    EXPECT_EQ(model::GraphTableWidth(mb), want) << mb;
  }
  std::set<int64_t> widths;
  for (int64_t mb = 1; mb <= 8192; ++mb) {
    const int64_t w = model::GraphTableWidth(mb);
    ASSERT_GE(w, mb);
    ASSERT_LE(4 * w, 5 * mb) << mb;  // at most 25% wider
    widths.insert(w);
  }
  EXPECT_EQ(widths.size(), 4u + 4u * 11u);  // 1-4, then four per power of two up to 8192
}

// One sequence decoding 200 tokens in 4-token blocks (its table grows to 52 blocks): padded
// table widths and geometrically grown input buffers keep the captures few, and the tokens and
// logprobs are those of the plain device path.
TEST(GraphsTest, LongDecodeCapturesFewShapes) {
  auto run = [](StepExecutor* ex) {
    engine::Engine engine(ex, {64, 64, 0});
    engine::Request r;
    r.seq_id = 1;
    r.prompt_ids = {3, 1, 4, 1, 5};
    r.max_tokens = 200;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    EXPECT_TRUE(engine.Add(r).ok());
    std::vector<engine::SeqUpdate> out;
    while (engine.HasWork()) {
      auto u = engine.Step();
      EXPECT_TRUE(u.ok()) << u.status();
      if (!u.ok()) break;
      out.insert(out.end(), u->begin(), u->end());
    }
    return out;
  };
  PipelineGroup plain = LoadPipeline("gqa_bf16", 1, 1, 4, 128, Backend::kDeviceSampling);
  PipelineExecutor px(&plain);
  const auto want = run(&px);
  PipelineGroup graphed = LoadPipeline("gqa_bf16", 1, 1, 4, 128, Backend::kDeviceGraphs);
  PipelineExecutor gx(&graphed);
  const auto got = run(&gx);
  ASSERT_EQ(got.size(), 200u);
  ASSERT_EQ(want.size(), 200u);
  for (size_t t = 0; t < want.size(); ++t) {
    EXPECT_EQ(got[t].token_id, want[t].token_id) << t;
    EXPECT_EQ(got[t].logprob, want[t].logprob) << t;
  }
  auto* ops = static_cast<DeviceLikeCpuOps*>(graphed.workers[0]->ops.get());
  EXPECT_LE(ops->captures, 20) << "one capture per table width (19 up to 52 blocks), and few more";
  EXPECT_GE(graphed.workers[0]->model->graph_launches(), 150);
  EXPECT_EQ(ops->stale_replays, 0);
}

// A capture that fails on one TP rank only (at its end, e.g. an invalidated capture) turns
// graphs off on every rank of the group, and the results stay those of the plain device path.
// At tp 1 a capture that cannot begin does the same. (At tp > 1 it fails the step: the other
// ranks recorded NCCL calls that this one did not; in a worker group that rank ends the job.)
TEST(GraphsTest, CaptureFailureOnOneRankTurnsGraphsOffOnEveryRank) {
  const Golden gold = LoadGolden("gqa_bf16");
  for (auto [tp, fault] : {std::pair{2, DeviceLikeCpuOps::CaptureFault::kEnd},
                           std::pair{1, DeviceLikeCpuOps::CaptureFault::kBegin},
                           std::pair{1, DeviceLikeCpuOps::CaptureFault::kEnd}}) {
    SCOPED_TRACE(::testing::Message() << "tp " << tp << " fault " << static_cast<int>(fault));
    PipelineGroup plain = LoadPipeline("gqa_bf16", tp, 1, 8, 128, Backend::kDeviceSampling);
    PipelineExecutor px(&plain);
    const Outputs want = RunPrompts(&px, gold, 6);
    PipelineGroup g = LoadPipeline("gqa_bf16", tp, 1, 8, 128, Backend::kDeviceGraphs);
    static_cast<DeviceLikeCpuOps*>(g.workers[tp - 1]->ops.get())->capture_fault = fault;
    PipelineExecutor gx(&g);
    const Outputs got = RunPrompts(&gx, gold, 6);
    for (const auto& w : g.workers) EXPECT_EQ(w->model->graph_launches(), 0);
    for (int i = 0; i < 4; ++i) {
      ASSERT_EQ(got.at(i).size(), want.at(i).size());
      for (size_t t = 0; t < want.at(i).size(); ++t) {
        EXPECT_EQ(got.at(i)[t].token_id, want.at(i)[t].token_id) << "seq " << i << " token " << t;
      }
    }
  }
}

}  // namespace
}  // namespace olmo::testing
