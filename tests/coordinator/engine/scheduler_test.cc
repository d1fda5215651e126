// Engine tests against a fake executor that checks plan consistency and produces a deterministic
// token from each sequence's full history.
#include <array>
#include <deque>
#include <map>

#include "coordinator/engine/block_manager.h"
#include "coordinator/engine/engine.h"
#include "coordinator/engine/scheduler.h"
#include "gtest/gtest.h"

namespace olmo::engine {
namespace {

// Simulates the KV cache: each token is written to its slot (group 0's table); a sampled token
// is a hash of every token read back through the block table, so a wrong block table, a stale
// cached block or a missing position changes the output.
class FakeExecutor : public StepExecutor {
 public:
  FakeExecutor(int64_t blocks, int64_t block_size, int64_t vocab) {
    info_.num_blocks[0] = info_.num_blocks[1] = blocks;
    info_.block_size = block_size;
    info_.vocab_size = vocab;
    kv_.assign(static_cast<size_t>(blocks * block_size), -1);
  }
  const ExecutorInfo& info() const override { return info_; }
  absl::StatusOr<StepResult> Execute(const StepPlan& plan) override {
    EXPECT_EQ(plan.step_id, next_step_++);
    for (int64_t id : plan.free_seq_ids) tables_.erase(id);
    StepResult r;
    r.step_id = plan.step_id;
    int64_t tokens = 0;
    const int64_t bs = info_.block_size;
    for (const SeqStep& st : plan.seqs) {
      tokens += static_cast<int64_t>(st.token_ids.size());
      auto& t = tables_[st.seq_id];
      for (int g = 0; g < kNumKvGroups; ++g) {
        if (st.blocks[g].reset) t[g].clear();
        t[g].insert(t[g].end(), st.blocks[g].append.begin(), st.blocks[g].append.end());
        EXPECT_GE(static_cast<int64_t>(t[g].size()) * bs,
                  st.start_pos + static_cast<int64_t>(st.token_ids.size()));
      }
      for (size_t j = 0; j < st.token_ids.size(); ++j) {
        int64_t pos = st.start_pos + static_cast<int64_t>(j);
        kv_[t[0][pos / bs] * bs + pos % bs] = st.token_ids[j];
      }
      if (st.sample) {
        uint64_t x = 1469598103934665603ull;
        int64_t end = st.start_pos + static_cast<int64_t>(st.token_ids.size());
        for (int64_t pos = 0; pos < end; ++pos) {
          int32_t tok = kv_[t[0][pos / bs] * bs + pos % bs];
          EXPECT_GE(tok, 0) << "seq " << st.seq_id << " reads unwritten position " << pos;
          x = (x ^ static_cast<uint64_t>(tok)) * 1099511628211ull;
        }
        SeqResult s;
        s.seq_id = st.seq_id;
        s.epoch = st.epoch;
        s.token_id = static_cast<int32_t>(x % static_cast<uint64_t>(info_.vocab_size));
        r.seqs.push_back(s);
      }
    }
    max_step_tokens_ = std::max(max_step_tokens_, tokens);
    return r;
  }
  int64_t max_step_tokens_ = 0;

 private:
  ExecutorInfo info_;
  int64_t next_step_ = 0;
  std::vector<int32_t> kv_;  // [blocks * block_size] token written at each slot
  std::map<int64_t, std::array<std::vector<int32_t>, kNumKvGroups>> tables_;
};

// A pipeline of `depth` stages: Submit queues plans, Collect executes the oldest. Checks that
// plans in flight never share a sequence.
class PipelinedFake : public FakeExecutor {
 public:
  PipelinedFake(int64_t blocks, int64_t block_size, int64_t vocab, int depth)
      : FakeExecutor(blocks, block_size, vocab), depth_(depth) {}
  int max_in_flight() const override { return depth_; }
  absl::Status Submit(const StepPlan& plan) override {
    for (const StepPlan& p : queued_) {
      for (const SeqStep& a : p.seqs) {
        for (const SeqStep& b : plan.seqs) {
          EXPECT_NE(a.seq_id, b.seq_id) << "sequence in two steps in flight";
        }
      }
    }
    queued_.push_back(plan);
    return absl::OkStatus();
  }
  absl::StatusOr<StepResult> Collect() override {
    StepPlan p = queued_.front();
    queued_.pop_front();
    return Execute(p);
  }

 private:
  int depth_;
  std::deque<StepPlan> queued_;
};

std::map<int64_t, std::vector<int32_t>> RunAll(Engine& engine) {
  std::map<int64_t, std::vector<int32_t>> out;
  while (engine.HasWork()) {
    auto updates = engine.Step();
    EXPECT_TRUE(updates.ok()) << updates.status();
    if (!updates.ok()) break;
    for (const auto& u : *updates) out[u.seq_id].push_back(u.token_id);
  }
  return out;
}

Request MakeRequest(int64_t id, int len, int max_tokens) {
  Request r;
  r.seq_id = id;
  for (int i = 0; i < len; ++i) r.prompt_ids.push_back((id * 7 + i) % 50);
  r.max_tokens = max_tokens;
  return r;
}

TEST(BlockManager, GrowFreeAndRefCounts) {
  BlockManager bm(4, {5, 5});
  BlockTableDelta d[kNumKvGroups];
  ASSERT_TRUE(bm.Grow(1, 9, d).ok());  // 3 blocks
  EXPECT_EQ(d[0].append, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(d[1].append.size(), 3u);
  EXPECT_EQ(bm.num_free(0), 2);
  EXPECT_EQ(bm.ref_count(0, 1), 1);
  BlockTableDelta d2[kNumKvGroups];
  EXPECT_FALSE(bm.Grow(2, 12, d2).ok());  // needs 3, only 2 free
  EXPECT_TRUE(d2[0].append.empty());
  EXPECT_EQ(bm.num_free(0), 2);
  ASSERT_TRUE(bm.Grow(1, 12, d).ok());    // still 3 blocks
  ASSERT_TRUE(bm.Grow(1, 13, d).ok());    // 4th block
  EXPECT_EQ(bm.table(1, 0).size(), 4u);
  bm.Free(1);
  EXPECT_TRUE(bm.AllFree());
}

TEST(Scheduler, RejectsBadRequests) {
  BlockManager bm(4, {8, 8});
  Scheduler s({16, 8, 32}, &bm);
  EXPECT_EQ(s.Add(MakeRequest(1, 0, 4)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.Add(MakeRequest(1, 4, 0)).code(), absl::StatusCode::kInvalidArgument);
  absl::Status too_long = s.Add(MakeRequest(1, 30, 3));
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.message().find("max_model_len"), std::string::npos);
  EXPECT_TRUE(s.Add(MakeRequest(1, 4, 4)).ok());
  EXPECT_EQ(s.Add(MakeRequest(1, 4, 4)).code(), absl::StatusCode::kAlreadyExists);
}

TEST(Scheduler, BudgetChunkingAndDecodesFirst) {
  FakeExecutor fake(64, 4, 97);
  Engine engine(&fake, {8, 16, 0});
  ASSERT_TRUE(engine.Add(MakeRequest(0, 3, 5)).ok());
  ASSERT_TRUE(engine.Add(MakeRequest(1, 21, 4)).ok());  // longer than the budget: chunked
  auto out = RunAll(engine);
  EXPECT_LE(fake.max_step_tokens_, 8);
  EXPECT_EQ(out[0].size(), 5u);
  EXPECT_EQ(out[1].size(), 4u);
  EXPECT_GT(engine.scheduler().stats().chunked_prefills, 0);
  EXPECT_TRUE(engine.blocks().AllFree());
}

TEST(Scheduler, StopIdsAndIgnoreEos) {
  // Find which token the fake produces first for a prompt, then make it a stop id.
  FakeExecutor probe(64, 4, 97);
  Engine e0(&probe, {64, 16, 0});
  ASSERT_TRUE(e0.Add(MakeRequest(0, 5, 3)).ok());
  auto base = RunAll(e0);
  ASSERT_EQ(base[0].size(), 3u);

  FakeExecutor fake(64, 4, 97);
  Engine engine(&fake, {64, 16, 0});
  Request stop = MakeRequest(0, 5, 3);
  stop.sampling.stop_token_ids = {base[0][1]};
  Request ignore = stop;
  ignore.seq_id = 1;
  ignore.ignore_eos = true;
  ASSERT_TRUE(engine.Add(stop).ok());
  ASSERT_TRUE(engine.Add(ignore).ok());
  auto out = RunAll(engine);
  EXPECT_EQ(out[0], (std::vector<int32_t>{base[0][0], base[0][1]}));  // stop token included
  EXPECT_EQ(out[1], base[0]);
  EXPECT_TRUE(engine.blocks().AllFree());
}

TEST(Scheduler, PreemptionByRecomputeKeepsOutputs) {
  // Reference: plenty of blocks.
  std::map<int64_t, std::vector<int32_t>> ref;
  {
    FakeExecutor fake(256, 4, 101);
    Engine engine(&fake, {32, 64, 0});
    for (int i = 0; i < 6; ++i) ASSERT_TRUE(engine.Add(MakeRequest(i, 5 + i, 12)).ok());
    ref = RunAll(engine);
  }
  // Tight pool: 6 sequences of up to 23 tokens need 36 blocks at once; give 14.
  FakeExecutor fake(14, 4, 101);
  Engine engine(&fake, {32, 64, 0});
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(engine.Add(MakeRequest(i, 5 + i, 12)).ok());
  auto out = RunAll(engine);
  EXPECT_GT(engine.scheduler().stats().preemptions, 0);
  EXPECT_EQ(out, ref);
  EXPECT_TRUE(engine.blocks().AllFree());
}

TEST(Scheduler, PipelinedStepsGiveTheSameOutputs) {
  std::map<int64_t, std::vector<int32_t>> ref;
  {
    FakeExecutor fake(256, 4, 101);
    Engine engine(&fake, {16, 64, 0});
    for (int i = 0; i < 6; ++i) ASSERT_TRUE(engine.Add(MakeRequest(i, 5 + 3 * i, 9)).ok());
    ref = RunAll(engine);
    EXPECT_EQ(engine.max_in_flight_seen(), 1);
  }
  for (int depth : {2, 3, 4}) {
    PipelinedFake fake(256, 4, 101, depth);
    Engine engine(&fake, {16, 64, 0});
    for (int i = 0; i < 6; ++i) ASSERT_TRUE(engine.Add(MakeRequest(i, 5 + 3 * i, 9)).ok());
    EXPECT_EQ(RunAll(engine), ref) << "depth " << depth;
    EXPECT_GE(engine.max_in_flight_seen(), 2) << "depth " << depth;
    EXPECT_TRUE(engine.blocks().AllFree());
  }
}

Request PrefixRequest(int64_t id, int suffix, int max_tokens) {
  Request r;
  r.seq_id = id;
  for (int i = 0; i < 21; ++i) r.prompt_ids.push_back(30 + i % 7);  // shared 21-token prefix
  for (int i = 0; i < suffix; ++i) r.prompt_ids.push_back(static_cast<int32_t>(id * 3 + i) % 50);
  r.max_tokens = max_tokens;
  return r;
}

TEST(Scheduler, PrefixCacheSharesBlocksAndKeepsOutputs) {
  auto run = [](bool cache, int64_t blocks, SchedulerStats* stats) {
    FakeExecutor fake(blocks, 4, 97);
    SchedulerConfig conf{16, 64, 0};
    conf.enable_prefix_cache = cache;
    conf.model_fingerprint = "test-model";
    Engine engine(&fake, conf);
    std::map<int64_t, std::vector<int32_t>> out;
    for (int i = 0; i < 6; ++i) {
      EXPECT_TRUE(engine.Add(PrefixRequest(i, 1 + i, 7)).ok());
      // Run the first request alone first so later ones find its blocks cached.
      if (i == 0) {
        auto first = RunAll(engine);
        out.insert(first.begin(), first.end());
      }
    }
    auto rest = RunAll(engine);
    out.insert(rest.begin(), rest.end());
    EXPECT_TRUE(engine.blocks().AllFree());
    *stats = engine.scheduler().stats();
    return out;
  };
  SchedulerStats no_cache, with_cache, tight;
  auto ref = run(false, 256, &no_cache);
  EXPECT_EQ(no_cache.prefix_hit_tokens, 0);
  EXPECT_EQ(run(true, 256, &with_cache), ref);
  EXPECT_GE(with_cache.prefix_hit_tokens, 5 * 20);  // 5 later requests reuse 5 full blocks each
  // A pool too small for everyone at once: preemption, eviction and re-admission hits.
  EXPECT_EQ(run(true, 30, &tight), ref);
  EXPECT_GT(tight.preemptions + tight.prefix_hit_tokens, 0);
}

TEST(Scheduler, CacheSaltSeparatesPrefixes) {
  FakeExecutor fake(256, 4, 97);
  SchedulerConfig conf{64, 64, 0};
  conf.model_fingerprint = "m";
  Engine engine(&fake, conf);
  Request a = PrefixRequest(0, 2, 3), b = PrefixRequest(1, 3, 3);
  b.cache_salt = "tenant-b";
  ASSERT_TRUE(engine.Add(a).ok());
  RunAll(engine);
  ASSERT_TRUE(engine.Add(b).ok());
  RunAll(engine);
  EXPECT_EQ(engine.scheduler().stats().prefix_hit_tokens, 0);
  Request c = PrefixRequest(2, 4, 3);  // same salt as a: hits
  ASSERT_TRUE(engine.Add(c).ok());
  RunAll(engine);
  EXPECT_EQ(engine.scheduler().stats().prefix_hit_tokens, 20);
  EXPECT_TRUE(engine.blocks().AllFree());
}

TEST(BlockManager, EvictsLeastRecentlyUsedCachedBlocks) {
  BlockManager bm(2, {3, 3});
  BlockTableDelta d[kNumKvGroups];
  ASSERT_TRUE(bm.Grow(1, 6, d).ok());
  BlockHash h[3] = {{1, 1}, {2, 2}, {3, 3}};
  for (int i = 0; i < 3; ++i) bm.Register(1, i, h[i]);
  bm.Free(1);
  EXPECT_EQ(bm.num_cached_free(0), 3);
  EXPECT_TRUE(bm.AllFree());
  BlockTableDelta d2[kNumKvGroups];
  EXPECT_EQ(bm.AcquireCached(2, std::span<const BlockHash>(h, 2), d2), 2);
  EXPECT_EQ(bm.ref_count(0, d2[0].append[0]), 1);
  BlockTableDelta d3[kNumKvGroups];
  ASSERT_TRUE(bm.Grow(3, 2, d3).ok());  // evicts the only unreferenced cached block (h[2])
  BlockTableDelta d4[kNumKvGroups];
  EXPECT_EQ(bm.AcquireCached(4, std::span<const BlockHash>(h + 2, 1), d4), 0);
  bm.Free(2);
  bm.Free(3);
  bm.Free(4);
  EXPECT_TRUE(bm.AllFree());
}

TEST(Scheduler, AbortFreesBlocks) {
  FakeExecutor fake(64, 4, 97);
  Engine engine(&fake, {8, 16, 0});
  ASSERT_TRUE(engine.Add(MakeRequest(0, 20, 50)).ok());
  ASSERT_TRUE(engine.Add(MakeRequest(1, 3, 50)).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(engine.Step().ok());
  engine.Abort(0);
  engine.Abort(1);
  EXPECT_FALSE(engine.HasWork());
  EXPECT_TRUE(engine.blocks().AllFree());
}

}  // namespace
}  // namespace olmo::engine

namespace olmo::engine {
namespace {

// Failover: a request resumed on another engine with the tokens it already produced continues
// exactly where it stopped (same later tokens, the resumed ones not reported again, max_tokens
// counting them), and resuming at max_tokens is rejected.
TEST(Scheduler, ResumedOutputContinuesTheSequence) {
  FakeExecutor full_fake(64, 4, 97);
  Engine full(&full_fake, {16, 16, 0});
  ASSERT_TRUE(full.Add(MakeRequest(3, 9, 12)).ok());
  const std::vector<int32_t> all = RunAll(full)[3];
  ASSERT_EQ(all.size(), 12u);

  FakeExecutor other_fake(64, 4, 97);
  Engine other(&other_fake, {16, 16, 0});
  Request resumed = MakeRequest(3, 9, 12);
  resumed.resumed_output_ids.assign(all.begin(), all.begin() + 5);
  ASSERT_TRUE(other.Add(resumed).ok());
  const std::vector<int32_t> rest = RunAll(other)[3];
  EXPECT_EQ(rest, std::vector<int32_t>(all.begin() + 5, all.end()));
  EXPECT_TRUE(other.blocks().AllFree());

  Request done = MakeRequest(4, 9, 3);
  done.resumed_output_ids = {1, 2, 3};
  EXPECT_EQ(other.Add(done).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace olmo::engine
