// Tensor parallelism (Megatron layout) against one rank: tp ranks run as threads of this process
// over in-memory collectives, each holding only its slices (q/k/v heads, intermediate, vocab).
// Logits match one rank and HF within 1e-4; greedy and seeded generation through the engine match
// one rank up to the first near-tie of the reference (DESIGN.md §5 margin rule).
#include "gmock/gmock.h"
#include "group_harness.h"

namespace olmo::testing {
namespace {

class TpTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(TpTest, LogitsMatchOneRankAndHf) {
  auto [name, tp] = GetParam();
  TpGroup g = LoadGroup(name, tp, 16, 64);
  ASSERT_FALSE(g.workers.empty()) << name << " cannot be split " << tp << " ways";
  Golden gold = LoadGolden(name);
  const int T = static_cast<int>(gold.input_ids.size());
  std::vector<std::vector<float>> logits(tp);
  OnAllRanks(tp, [&](int r) {
    const auto& w = *g.workers[r];
    kv::KvCacheShape shape{w.model->local_kv_heads(), w.config.head_dim, 16, {64, 64}};
    kv::KvCache cache(shape, w.config.layer_types, 0, w.config.num_hidden_layers);
    logits[r] =
        RunForward(*w.model, cache, {{gold.input_ids, 0, ShuffledTable((T + 15) / 16, 64, 9)}});
  });
  for (int r = 1; r < tp; ++r)
    ASSERT_EQ(0, std::memcmp(logits[r].data(), logits[0].data(), logits[0].size() * 4));
  auto one = LoadWorker(ModelsDir() + "/" + name, 16, 64);
  kv::KvCacheShape shape{one->config.num_key_value_heads, one->config.head_dim, 16, {64, 64}};
  kv::KvCache cache(shape, one->config.layer_types, 0, one->config.num_hidden_layers);
  std::vector<float> ref =
      RunForward(*one->model, cache, {{gold.input_ids, 0, ShuffledTable((T + 15) / 16, 64, 9)}});
  float vs_one = MaxAbsDiff(logits[0], ref), vs_hf = MaxAbsDiff(logits[0], gold.logits);
  std::printf("[%s tp=%d] max |logit diff| vs one rank %.3g, vs HF %.3g\n", name.c_str(), tp,
              vs_one, vs_hf);
  EXPECT_LE(vs_one, 1e-4f);
  EXPECT_LE(vs_hf, 1e-4f);
}

TEST_P(TpTest, GenerationMatchesOneRank) {
  auto [name, tp] = GetParam();
  TpGroup g = LoadGroup(name, tp, 8, 128);
  ASSERT_FALSE(g.workers.empty()) << name << " cannot be split " << tp << " ways";
  Golden gold = LoadGolden(name);
  GroupExecutor group(&g);
  Outputs got = RunPrompts(&group, gold, 12);
  auto one = LoadWorker(ModelsDir() + "/" + name, 8, 128);
  ExpectMatches(got, RunPrompts(one->runner.get(), gold, 12), 12,
                name + " tp " + std::to_string(tp));
}

// Vocab-parallel sampling (each rank reduces its logit slice with SampleSlice, the group
// exchanges small reports) against gathering every row, at the same tp: the same tokens and top
// logprob ids, logprobs within float rounding (the log-sum-exp is combined from the slices), and
// fewer all-gathered bytes. The prompts mix rows finished from reports (greedy; top-k 5 with
// top-p) and rows that still gather (temperature without top-k), on the CPU backend and on the
// device path sampling with the ops (device collectives). A device backend sampling on the host
// keeps gathering every row (the slice kernel is opt-in there with device sampling).
TEST_P(TpTest, VocabParallelSamplingMatchesGatheredRows) {
  auto [name, tp] = GetParam();
  Golden gold = LoadGolden(name);
  for (Backend backend : {Backend::kHost, Backend::kDeviceCollectives, Backend::kDeviceSampling}) {
    for (bool every_filter : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "backend " << static_cast<int>(backend)
                                        << (every_filter ? " every filter" : ""));
      Outputs out[2];
      int64_t bytes[2] = {0, 0}, sliced = 0, gathered = 0;
      for (int on = 0; on < 2; ++on) {
        PipelineGroup g = LoadPipeline(name, tp, 1, 8, 128, backend);
        for (const auto& w : g.workers) {
          ASSERT_NE(w, nullptr);
          w->runner->set_vocab_parallel_sampling(on == 1);
        }
        PipelineExecutor ex(&g);
        out[on] = RunPrompts(&ex, gold, 8, every_filter);
        bytes[on] = g.workers[0]
                        ->model->tp_comm()
                        ->stats()[comm::CollectiveKind::kAllGather]
                        .bytes_received;
        if (on == 1) {
          sliced = g.workers[0]->runner->slice_sampled_rows();
          gathered = g.workers[0]->runner->gathered_rows();
        }
      }
      if (backend == Backend::kDeviceCollectives) {
        EXPECT_EQ(sliced, 0);
        EXPECT_EQ(bytes[1], bytes[0]);
      } else {
        EXPECT_GT(sliced, 0);
        EXPECT_GT(gathered, 0);
        EXPECT_LT(bytes[1], bytes[0]);
      }
      for (int i = 0; i < 4; ++i) {
        ASSERT_EQ(out[1][i].size(), out[0][i].size());
        for (size_t t = 0; t < out[0][i].size(); ++t) {
          const engine::SeqUpdate &got = out[1][i][t], &want = out[0][i][t];
          ASSERT_EQ(got.token_id, want.token_id) << "seq " << i << " token " << t;
          EXPECT_NEAR(got.logprob, want.logprob, 1e-6) << "seq " << i << " token " << t;
          ASSERT_EQ(got.top_logprobs.size(), want.top_logprobs.size());
          for (size_t k = 0; k < want.top_logprobs.size(); ++k) {
            EXPECT_EQ(got.top_logprobs[k].id, want.top_logprobs[k].id);
            EXPECT_NEAR(got.top_logprobs[k].logprob, want.top_logprobs[k].logprob, 1e-6);
          }
        }
      }
      if (every_filter) {
        std::printf(
            "[%s tp=%d backend %d] rows from slice reports %lld, gathered %lld; "
            "all-gathered bytes %lld -> %lld\n",
            name.c_str(), tp, static_cast<int>(backend), static_cast<long long>(sliced),
            static_cast<long long>(gathered), static_cast<long long>(bytes[0]),
            static_cast<long long>(bytes[1]));
      }
    }
  }
}

class PpTest : public ::testing::TestWithParam<std::tuple<std::string, int, int>> {};

// tp x pp against one rank through the engine: greedy and seeded sampling, chunked prefill mixed
// with decodes, logprobs within 1e-4, tokens equal up to the reference's first near-tie.
TEST_P(PpTest, GenerationMatchesOneRank) {
  auto [name, tp, pp] = GetParam();
  PipelineGroup g = LoadPipeline(name, tp, pp, 8, 128);
  for (const auto& w : g.workers) ASSERT_NE(w, nullptr);
  Golden gold = LoadGolden(name);
  PipelineExecutor ex(&g);
  Outputs got = RunPrompts(&ex, gold, 10);
  auto one = LoadWorker(ModelsDir() + "/" + name, 8, 128);
  ExpectMatches(got, RunPrompts(one->runner.get(), gold, 10), 10,
                name + " tp " + std::to_string(tp) + " pp " + std::to_string(pp));
}

// The model's device path (backend buffers, staged inputs and outputs) on the CPU kernels gives
// bitwise the host path's results, at tp x pp with replicated kv heads and uneven vocab slices
// too, with either kind of collectives: a host Comm (staged through host memory: how a GPU group
// runs over MPI) or a device Comm (backend buffers handed to the Comm: the NCCL path), and with
// sampling by the Sample op on the backend logits (GPU sampling), also with every sampling filter.
TEST_P(PpTest, DevicePathMatchesHostPathBitwise) {
  auto [name, tp, pp] = GetParam();
  Golden gold = LoadGolden(name);
  for (bool every_filter : {false, true}) {
    PipelineGroup host = LoadPipeline(name, tp, pp, 8, 128);
    PipelineExecutor hx(&host);
    Outputs want = RunPrompts(&hx, gold, 6, every_filter);
    for (Backend backend : {Backend::kDeviceStaged, Backend::kDeviceCollectives,
                            Backend::kDeviceSampling, Backend::kDeviceGraphs}) {
      SCOPED_TRACE(::testing::Message() << "backend " << static_cast<int>(backend)
                                        << (every_filter ? " every filter" : ""));
      PipelineGroup dev = LoadPipeline(name, tp, pp, 8, 128, backend);
      for (const auto& w : dev.workers) {
        ASSERT_NE(w, nullptr);
        ASSERT_TRUE(w->ops->on_device());
        ASSERT_EQ(w->collectives != nullptr, backend != Backend::kDeviceStaged);
      }
      PipelineExecutor dx(&dev);
      Outputs got = RunPrompts(&dx, gold, 6, every_filter);
      if (backend == Backend::kDeviceGraphs) {
        for (const auto& w : dev.workers) {
          EXPECT_GT(w->model->graph_launches(), 0) << "no decode step ran as a graph";
          EXPECT_GT(static_cast<DeviceLikeCpuOps*>(w->ops.get())->graph_launches, 0);
          EXPECT_EQ(static_cast<DeviceLikeCpuOps*>(w->ops.get())->stale_replays, 0);
        }
        ExpectUniformGraphs(dev);
      }
      for (int i = 0; i < 4; ++i) {
        ASSERT_EQ(got[i].size(), want[i].size());
        for (size_t t = 0; t < want[i].size(); ++t) {
          EXPECT_EQ(got[i][t].token_id, want[i][t].token_id) << "seq " << i << " token " << t;
          EXPECT_EQ(got[i][t].logprob, want[i][t].logprob) << "seq " << i << " token " << t;
          ASSERT_EQ(got[i][t].top_logprobs.size(), want[i][t].top_logprobs.size());
          for (size_t k = 0; k < want[i][t].top_logprobs.size(); ++k) {
            EXPECT_EQ(got[i][t].top_logprobs[k].id, want[i][t].top_logprobs[k].id);
            EXPECT_EQ(got[i][t].top_logprobs[k].logprob, want[i][t].top_logprobs[k].logprob);
          }
        }
      }
    }
  }
}

// make_collectives runs on every rank, also one whose backend failed (it gets null, so a
// collective set-up can agree instead of hanging); the backend's error is what the load reports,
// and a failing set-up's error is reported too.
TEST(LocalWorkerCollectives, SetUpSeesBackendFailureAndReportsItsOwn) {
  step::LocalWorkerOptions o;
  o.num_blocks = 16;
  int calls = 0;
  o.make_ops = []() -> absl::StatusOr<std::unique_ptr<kernels::Ops>> {
    return absl::FailedPreconditionError("no device");
  };
  o.make_collectives = [&](kernels::Ops* ops) -> absl::StatusOr<std::unique_ptr<comm::Comm>> {
    ++calls;
    EXPECT_EQ(ops, nullptr);
    return std::unique_ptr<comm::Comm>();
  };
  auto w = step::LoadLocalWorker(ModelsDir() + "/mha_f32", o);
  EXPECT_EQ(calls, 1);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().message(), "no device");

  o.make_ops = nullptr;
  o.make_collectives = [](kernels::Ops* ops) -> absl::StatusOr<std::unique_ptr<comm::Comm>> {
    EXPECT_NE(ops, nullptr);
    return absl::InternalError("ncclCommInitRank failed");
  };
  w = step::LoadLocalWorker(ModelsDir() + "/mha_f32", o);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().message(), "ncclCommInitRank failed");
}

// A device Comm needs a device backend: the CPU backend with one is refused at load.
TEST(LocalWorkerCollectives, DeviceCommOnHostBackendIsRefused) {
  ThreadGroup group(2);
  ThreadCollectives comm(&group, 0, comm::MemorySpace::kDevice);
  step::LocalWorkerOptions o;
  o.num_blocks = 16;
  o.model.tp = 2;
  o.model.tp_rank = 0;
  o.model.collectives = &comm;
  auto w = step::LoadLocalWorker(ModelsDir() + "/mha_f32", o);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(std::string(w.status().message()), ::testing::HasSubstr("device backend"));
}

INSTANTIATE_TEST_SUITE_P(Models, PpTest,
                         // 5 layers split 2, 3 and 4 ways (uneven; a full-attention layer first in
                         // stage 0), and tp 2 x pp 2 with replicated kv heads on the MQA model.
                         ::testing::Values(std::tuple{std::string("sharded3_gqa_5layers"), 1, 2},
                                           std::tuple{std::string("sharded3_gqa_5layers"), 1, 3},
                                           std::tuple{std::string("sharded3_gqa_5layers"), 1, 4},
                                           std::tuple{std::string("sharded3_gqa_5layers"), 2, 2},
                                           std::tuple{std::string("mqa_hd32_yarn_default_af"), 2,
                                                      2},
                                           std::tuple{std::string("gqa_bf16"), 1, 4}),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_tp" +
                                  std::to_string(std::get<1>(info.param)) + "_pp" +
                                  std::to_string(std::get<2>(info.param));
                         });

INSTANTIATE_TEST_SUITE_P(
    Models, TpTest,
    // MQA at tp 2 and 4 and GQA (2 kv heads) at tp 4 replicate kv heads; sharded3 has vocab
    // 1001 (not divisible by tp), 5 layers and a full-attention layer first.
    ::testing::Values(std::tuple{std::string("mha_f32"), 2}, std::tuple{std::string("mha_f32"), 4},
                      std::tuple{std::string("gqa_bf16"), 2},
                      std::tuple{std::string("gqa_bf16"), 4},
                      std::tuple{std::string("mqa_hd32_yarn_default_af"), 2},
                      std::tuple{std::string("mqa_hd32_yarn_default_af"), 4},
                      std::tuple{std::string("sharded3_gqa_5layers"), 2},
                      std::tuple{std::string("sharded3_gqa_5layers"), 4},
                      std::tuple{std::string("hd128_mqa"), 2}),
    [](const auto& info) {
      return std::get<0>(info.param) + "_tp" + std::to_string(std::get<1>(info.param));
    });

}  // namespace
}  // namespace olmo::testing
