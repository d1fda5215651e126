// Tensor parallelism (Megatron layout) against one rank: tp ranks run as threads of this process
// over in-memory collectives, each holding only its slices (q/k/v heads, intermediate, vocab).
// Logits match one rank and HF within 1e-4; greedy and seeded generation through the engine match
// one rank up to the first near-tie of the reference (DESIGN.md §5 margin rule).
#include <barrier>
#include <functional>
#include <set>
#include <thread>

#include "common/parallel_config.h"
#include "coordinator/engine/engine.h"
#include "device_like_ops.h"
#include "gmock/gmock.h"
#include "model_test_util.h"
#include "worker/comm/comm.h"

namespace olmo::testing {
namespace {

// Ranks of one TP group as threads: every collective is two barrier phases over shared slots.
struct ThreadGroup {
  explicit ThreadGroup(int n) : size(n), barrier(n), slots(n) {}
  int size;
  std::barrier<> barrier;
  std::vector<std::vector<float>> slots;
};

// Only what the model uses (all-reduce, all-gather) is implemented; the rest is not needed by
// TP math and reports Unimplemented.
// With MemorySpace::kDevice it stands for a device Comm (NCCL): the model then hands it its
// backend buffers directly, which DeviceLikeCpuOps keeps in host memory. Given the backend
// (`stream`), it enqueues its collectives there, stream-ordered as NCCL's: inside a graph
// capture they are recorded and run when the graph is replayed on every rank.
class ThreadCollectives final : public comm::Comm {
 public:
  ThreadCollectives(ThreadGroup* g, int rank, comm::MemorySpace space = comm::MemorySpace::kHost,
                    DeviceLikeCpuOps* stream = nullptr)
      : g_(g), rank_(rank), space_(space), stream_(stream) {}
  int rank() const override { return rank_; }
  int size() const override { return g_->size; }
  comm::MemorySpace memory_space() const override { return space_; }
  absl::Status Broadcast(void*, int64_t, int) override { return Unimplemented(); }
  absl::Status Send(const void*, int64_t, int, int) override { return Unimplemented(); }
  absl::Status Recv(void*, int64_t, int, int) override { return Unimplemented(); }
  absl::Status Barrier() override {
    g_->barrier.arrive_and_wait();
    return absl::OkStatus();
  }
  absl::Status AllReduceSum(float* data, int64_t n) override {
    OnStream([g = g_, rank = rank_, data, n] {
      g->slots[rank].assign(data, data + n);
      g->barrier.arrive_and_wait();
      for (int64_t i = 0; i < n; ++i) {  // rank order: every rank gets the same bits
        float s = g->slots[0][i];
        for (int r = 1; r < g->size; ++r) s += g->slots[r][i];
        data[i] = s;
      }
      g->barrier.arrive_and_wait();
    });
    return absl::OkStatus();
  }
  absl::Status AllGather(const void* send, int64_t bytes, void* recv) override {
    OnStream([g = g_, rank = rank_, send, bytes, recv] {
      const int64_t n = bytes / static_cast<int64_t>(sizeof(float));
      const float* s = static_cast<const float*>(send);
      g->slots[rank].assign(s, s + n);
      g->barrier.arrive_and_wait();
      for (int r = 0; r < g->size; ++r) {
        std::copy_n(g->slots[r].data(), n, static_cast<float*>(recv) + r * n);
      }
      g->barrier.arrive_and_wait();
    });
    Record(comm::CollectiveKind::kAllGather, bytes * (g_->size - 1), bytes * (g_->size - 1), 0.0);
    return absl::OkStatus();
  }

 private:
  static absl::Status Unimplemented() {
    return absl::UnimplementedError("not used by tensor-parallel math");
  }
  void OnStream(std::function<void()> f) {
    if (stream_ != nullptr) {
      stream_->Enqueue(std::move(f));
    } else {
      f();
    }
  }
  ThreadGroup* g_;
  int rank_;
  comm::MemorySpace space_;
  DeviceLikeCpuOps* stream_;
};

struct TpGroup {
  std::unique_ptr<ThreadGroup> group;
  std::vector<std::unique_ptr<ThreadCollectives>> comms;
  std::vector<std::unique_ptr<step::LocalWorker>> workers;
};

// A tp x pp worker group: stage s holds SplitStages' layer range and its own TP group.
struct PipelineGroup {
  int tp = 1, pp = 1;
  std::vector<std::unique_ptr<ThreadGroup>> groups;  // one per stage
  std::vector<std::unique_ptr<ThreadCollectives>> comms;
  std::vector<std::unique_ptr<step::LocalWorker>> workers;  // [stage * tp + tp_rank]
};

// How the ranks run: the CPU backend; DeviceLikeCpuOps (the model's device path on the CPU) with
// a host Comm (collectives staged through host memory, as a GPU group over MPI runs); or
// DeviceLikeCpuOps with a device-like Comm built by LocalWorkerOptions::make_collectives (the
// NCCL path: collectives on backend buffers).
// kDeviceSampling: device collectives and the Sample op on the backend's logits. kDeviceGraphs:
// that, with decode steps captured and replayed as graphs (DeviceLikeCpuOps records the ops and
// the device collectives of a capture and replays them on the captured pointers, as CUDA graphs
// with NCCL calls do).
enum class Backend { kHost, kDeviceStaged, kDeviceCollectives, kDeviceSampling, kDeviceGraphs };

PipelineGroup LoadPipeline(const std::string& name, int tp, int pp, int64_t block_size,
                           int64_t num_blocks, Backend backend = Backend::kHost) {
  PipelineGroup g;
  auto config = ModelConfig::Load(ModelsDir() + "/" + name);
  EXPECT_TRUE(config.ok());
  EXPECT_TRUE(ParallelConfig::Make(tp, pp, 0, tp * pp, *config).ok());
  g.tp = tp;
  g.pp = pp;
  auto stages = ParallelConfig::SplitStages(*config, pp);
  for (int s = 0; s < pp; ++s) g.groups.push_back(std::make_unique<ThreadGroup>(tp));
  for (int s = 0; s < pp; ++s) {
    for (int r = 0; r < tp; ++r) {
      g.comms.push_back(std::make_unique<ThreadCollectives>(g.groups[s].get(), r));
      step::LocalWorkerOptions o;
      o.block_size = block_size;
      o.num_blocks = num_blocks;
      o.ops.num_threads = 1;
      o.model.tp = tp;
      o.model.tp_rank = r;
      o.model.collectives = g.comms.back().get();
      o.model.layer_begin = stages[s].layer_begin;
      o.model.layer_end = stages[s].layer_end;
      const bool graphs = backend == Backend::kDeviceGraphs;
      if (backend != Backend::kHost) {
        o.make_ops = [graphs]() -> absl::StatusOr<std::unique_ptr<kernels::Ops>> {
          auto ops = std::make_unique<DeviceLikeCpuOps>();
          ops->graphs_enabled = graphs;
          return std::unique_ptr<kernels::Ops>(std::move(ops));
        };
      }
      o.model.graphs = graphs;
      o.device_sampling = backend == Backend::kDeviceSampling || graphs;
      if (backend == Backend::kDeviceCollectives || backend == Backend::kDeviceSampling || graphs) {
        ThreadGroup* group = g.groups[s].get();
        o.make_collectives = [group,
                              r](kernels::Ops* ops) -> absl::StatusOr<std::unique_ptr<comm::Comm>> {
          EXPECT_NE(ops, nullptr);
          return std::unique_ptr<comm::Comm>(std::make_unique<ThreadCollectives>(
              group, r, comm::MemorySpace::kDevice, static_cast<DeviceLikeCpuOps*>(ops)));
        };
      }
      auto w = step::LoadLocalWorker(ModelsDir() + "/" + name, o);
      EXPECT_TRUE(w.ok()) << w.status();
      g.workers.push_back(w.ok() ? std::move(*w) : nullptr);
    }
  }
  return g;
}

// Loads `tp` ranks of `name` (in parallel: each rank's load is independent). Empty when the
// model cannot be split `tp` ways.
TpGroup LoadGroup(const std::string& name, int tp, int64_t block_size, int64_t num_blocks) {
  TpGroup g;
  auto config = ModelConfig::Load(ModelsDir() + "/" + name);
  if (!config.ok() || !ParallelConfig::Make(tp, 1, 0, tp, *config).ok()) return g;
  g.group = std::make_unique<ThreadGroup>(tp);
  g.workers.resize(tp);
  for (int r = 0; r < tp; ++r)
    g.comms.push_back(std::make_unique<ThreadCollectives>(g.group.get(), r));
  for (int r = 0; r < tp; ++r) {
    step::LocalWorkerOptions o;
    o.block_size = block_size;
    o.num_blocks = num_blocks;
    o.ops.num_threads = 1;
    o.model.tp = tp;
    o.model.tp_rank = r;
    o.model.collectives = g.comms[r].get();
    auto w = step::LoadLocalWorker(ModelsDir() + "/" + name, o);
    EXPECT_TRUE(w.ok()) << w.status();
    if (w.ok()) g.workers[r] = std::move(*w);
  }
  return g;
}

// Runs fn(rank) on every rank's thread and waits.
void OnAllRanks(int tp, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < tp; ++r) threads.emplace_back(fn, r);
  for (auto& t : threads) t.join();
}

// The StepExecutor of a TP group: every rank executes the plan; all ranks must agree.
class GroupExecutor final : public StepExecutor {
 public:
  explicit GroupExecutor(TpGroup* g) : g_(g) {}
  const ExecutorInfo& info() const override { return g_->workers[0]->runner->info(); }
  absl::StatusOr<StepResult> Execute(const StepPlan& plan) override {
    const int tp = static_cast<int>(g_->workers.size());
    std::vector<absl::StatusOr<StepResult>> results(tp, absl::UnknownError("not run"));
    OnAllRanks(tp, [&](int r) { results[r] = g_->workers[r]->runner->Execute(plan); });
    for (int r = 1; r < tp; ++r) {
      if (!results[r].ok()) return results[r].status();
      EXPECT_EQ(results[r]->seqs.size(), results[0]->seqs.size());
      for (size_t i = 0; i < results[0]->seqs.size(); ++i) {
        EXPECT_EQ(results[r]->seqs[i].token_id, results[0]->seqs[i].token_id) << "rank " << r;
      }
    }
    return results[0];
  }

 private:
  TpGroup* g_;
};

// Runs a plan stage by stage (each stage's TP ranks as threads); the hidden states of a stage's
// tp rank 0 feed the next stage; the last stage's tp 0 returns the result.
class PipelineExecutor final : public StepExecutor {
 public:
  explicit PipelineExecutor(PipelineGroup* g) : g_(g) {}
  const ExecutorInfo& info() const override { return g_->workers[0]->runner->info(); }
  absl::StatusOr<StepResult> Execute(const StepPlan& plan) override {
    std::vector<float> hidden;
    StepResult last;
    for (int s = 0; s < g_->pp; ++s) {
      std::vector<std::vector<float>> out(g_->tp);
      std::vector<absl::StatusOr<StepResult>> res(g_->tp, absl::UnknownError("not run"));
      OnAllRanks(g_->tp, [&](int r) {
        res[r] = g_->workers[s * g_->tp + r]->runner->ExecuteStage(
            plan, s == 0 ? nullptr : hidden.data(), &out[r]);
      });
      for (int r = 0; r < g_->tp; ++r) {
        if (!res[r].ok()) return res[r].status();
        if (!res[r]->status.ok()) return res[r]->status;
        EXPECT_EQ(0, std::memcmp(out[r].data(), out[0].data(), out[0].size() * 4));
      }
      hidden = std::move(out[0]);
      last = std::move(*res[0]);
    }
    return last;
  }

 private:
  PipelineGroup* g_;
};

using Outputs = std::map<int64_t, std::vector<engine::SeqUpdate>>;

// Four prompts of the golden input (two greedy, two seeded), run to completion through the
// engine with a small step budget (chunked prefill mixed with decodes).
// every_filter: each sequence also uses penalties, top-k / top-p / min-p, min_tokens with stop
// ids (which then end it) and other logprob counts.
Outputs RunPrompts(StepExecutor* ex, const Golden& gold, int max_tokens,
                   bool every_filter = false) {
  engine::Engine engine(ex, {16, 64, 0});
  for (int i = 0; i < 4; ++i) {
    engine::Request r;
    r.seq_id = i;
    r.prompt_ids.assign(gold.input_ids.begin() + i, gold.input_ids.begin() + 9 + 13 * i);
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    r.sampling.temperature = i < 2 ? 0.0f : 0.8f;
    r.sampling.seed = 11 + i;
    r.sampling.logprobs = 2;
    if (every_filter) {
      const int32_t common = gold.input_ids[3];
      switch (i) {
        case 0:
          r.sampling.repetition_penalty = 1.3f;
          r.sampling.min_tokens = 3;
          r.sampling.stop_token_ids = {common, gold.input_ids[5]};
          r.ignore_eos = false;
          break;
        case 1:
          r.sampling.presence_penalty = 0.5f;
          r.sampling.frequency_penalty = 0.3f;
          r.sampling.logprobs = 0;
          break;
        case 2:
          r.sampling.top_k = 5;
          r.sampling.top_p = 0.9f;
          r.sampling.logprobs = 5;
          break;
        default:
          r.sampling.temperature = 1.3f;
          r.sampling.min_p = 0.05f;
          r.sampling.repetition_penalty = 0.9f;
          r.sampling.min_tokens = 2;
          r.sampling.stop_token_ids = {common};
          r.ignore_eos = false;
          break;
      }
    }
    EXPECT_TRUE(engine.Add(r).ok());
  }
  Outputs out;
  while (engine.HasWork()) {
    auto u = engine.Step();
    EXPECT_TRUE(u.ok()) << u.status();
    if (!u.ok()) break;
    for (auto& x : *u) out[x.seq_id].push_back(x);
  }
  return out;
}

// DESIGN.md §5 margin rule: logprobs within 1e-4; tokens equal up to the reference's first
// greedy near-tie (top-1 minus top-2 logprob < 1e-4).
void ExpectMatches(const Outputs& got, const Outputs& ref, size_t tokens, const std::string& what) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(ref.at(i).size(), tokens);
    ASSERT_EQ(got.at(i).size(), tokens);
    for (size_t t = 0; t < tokens; ++t) {
      const auto& r = ref.at(i)[t];
      float margin = r.top_logprobs[0].logprob - r.top_logprobs[1].logprob;
      EXPECT_NEAR(got.at(i)[t].logprob, r.logprob, 1e-4);
      if (i < 2 && margin < 1e-4f) break;
      ASSERT_EQ(got.at(i)[t].token_id, r.token_id) << what << " seq " << i << " token " << t;
    }
  }
}

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

// NCCL's rule for graphs: every rank of a TP group captures and launches the same steps. Each
// stage's ranks must have launched the same number of graphs.
void ExpectUniformGraphs(const PipelineGroup& g) {
  for (int s = 0; s < g.pp; ++s) {
    const int64_t first = g.workers[s * g.tp]->model->graph_launches();
    for (int r = 1; r < g.tp; ++r) {
      EXPECT_EQ(g.workers[s * g.tp + r]->model->graph_launches(), first)
          << "stage " << s << ": tp rank " << r << " launched graphs on other steps than rank 0";
    }
  }
}

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

// An op that fails on the backend (CudaOps logs it; the next Synchronize returns it) fails the
// step that ran it, on that rank: the step must not return what the op's outputs held before
// (the last step's tokens, an old report). one_rank: only the last rank's op fails; its peers
// finish the step here (this executor reports any rank's error). In a worker group the failed
// rank ends the job and the last stage's barrier keeps tp rank 0's result of that step in
// (GroupRunner; tested by tests/mpi/expect_failed_step_abort.sh).
struct OpFault {
  Backend backend;
  int tp;
  const char* op;
  bool one_rank;
};

void PrintTo(const OpFault& f, std::ostream* os) {
  *os << f.op << " at tp " << f.tp << " on backend " << static_cast<int>(f.backend)
      << (f.one_rank ? ", last rank only" : ", every rank");
}

class OpFaultTest : public ::testing::TestWithParam<OpFault> {};

TEST_P(OpFaultTest, FailedOpFailsTheStep) {
  const OpFault f = GetParam();
  PipelineGroup g = LoadPipeline("gqa_bf16", f.tp, 1, 16, 64, f.backend);
  for (const auto& w : g.workers) ASSERT_NE(w, nullptr);
  PipelineExecutor ex(&g);
  engine::Engine engine(&ex, {16, 64, 0});
  for (int i = 0; i < 2; ++i) {
    engine::Request r;
    r.seq_id = i;
    r.prompt_ids = {1 + i, 2, 3, 4, 5};
    r.max_tokens = 8;
    r.ignore_eos = true;
    r.sampling.temperature = i == 0 ? 0.0f : 0.7f;
    r.sampling.top_k = i == 0 ? 0 : 20;
    r.sampling.seed = 3;
    ASSERT_TRUE(engine.Add(r).ok());
  }
  for (int step = 0; step < 2; ++step) {  // the prefill and a decode step run cleanly
    auto u = engine.Step();
    ASSERT_TRUE(u.ok()) << u.status();
  }
  for (int r = f.one_rank ? f.tp - 1 : 0; r < f.tp; ++r) {
    static_cast<DeviceLikeCpuOps*>(g.workers[r]->model->ops())->failing_op = f.op;
  }
  auto u = engine.Step();
  ASSERT_FALSE(u.ok()) << f.op << " failed, yet the step returned " << u->size() << " tokens";
  EXPECT_THAT(std::string(u.status().message()), ::testing::HasSubstr(f.op)) << u.status();
}

INSTANTIATE_TEST_SUITE_P(
    Ops, OpFaultTest,
    ::testing::Values(OpFault{Backend::kDeviceSampling, 1, "Sample", false},
                      OpFault{Backend::kDeviceSampling, 2, "SampleSlice", true},
                      OpFault{Backend::kDeviceGraphs, 1, "Attention", false},
                      OpFault{Backend::kDeviceGraphs, 2, "SampleSlice", true},
                      OpFault{Backend::kDeviceCollectives, 2, "Embedding", true},
                      OpFault{Backend::kDeviceStaged, 2, "Matmul", false}),
    [](const auto& info) {
      return std::string(info.param.op) + "_tp" + std::to_string(info.param.tp) +
             (info.param.one_rank ? "_one_rank" : "_every_rank") + "_backend" +
             std::to_string(static_cast<int>(info.param.backend));
    });

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
