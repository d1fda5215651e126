// The in-process worker-group harness of the model tests: TP ranks as threads over in-memory
// collectives (ThreadCollectives: host, or device-like and stream-ordered on DeviceLikeCpuOps),
// pipeline stages run one after another, and StepExecutors over them for the engine.
#pragma once

#include <barrier>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/parallel_config.h"
#include "coordinator/engine/engine.h"
#include "device_like_ops.h"
#include "gtest/gtest.h"
#include "model_test_util.h"
#include "worker/comm/comm.h"
#include "worker/step/local_worker.h"

namespace olmo::testing {

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

inline PipelineGroup LoadPipeline(const std::string& name, int tp, int pp, int64_t block_size,
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
inline TpGroup LoadGroup(const std::string& name, int tp, int64_t block_size, int64_t num_blocks) {
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
inline void OnAllRanks(int tp, const std::function<void(int)>& fn) {
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
inline Outputs RunPrompts(StepExecutor* ex, const Golden& gold, int max_tokens,
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
inline void ExpectMatches(const Outputs& got, const Outputs& ref, size_t tokens,
                          const std::string& what) {
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

// NCCL's rule for graphs: every rank of a TP group captures and launches the same steps. Each
// stage's ranks must have launched the same number of graphs.
inline void ExpectUniformGraphs(const PipelineGroup& g) {
  for (int s = 0; s < g.pp; ++s) {
    const int64_t first = g.workers[s * g.tp]->model->graph_launches();
    for (int r = 1; r < g.tp; ++r) {
      EXPECT_EQ(g.workers[s * g.tp + r]->model->graph_launches(), first)
          << "stage " << s << ": tp rank " << r << " launched graphs on other steps than rank 0";
    }
  }
}

}  // namespace olmo::testing
