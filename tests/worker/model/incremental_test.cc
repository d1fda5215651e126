// Cached and chunked computation against full recompute, and batch invariance: a prompt inside a
// ragged batch gives bitwise what it gives alone.
#include "coordinator/engine/engine.h"
#include "model_test_util.h"

namespace olmo::testing {
namespace {

class IncrementalTest : public ::testing::TestWithParam<std::string> {};

// Prefill the first `prefill` tokens, then feed the rest in chunks of `chunk` tokens; compare the
// logits of every position with one full forward.
void CheckChunked(const std::string& name, int64_t block_size, int prefill, int chunk) {
  Golden g = LoadGolden(name);
  auto w = LoadWorker(ModelsDir() + "/" + name, block_size, 64);
  ASSERT_NE(w, nullptr);
  const int T = static_cast<int>(g.input_ids.size());
  const int pool = (T + static_cast<int>(block_size) - 1) / static_cast<int>(block_size) + 8;
  kv::KvCacheShape shape{w->config.num_key_value_heads, w->config.head_dim, block_size,
                         {pool, pool}};
  kv::KvCache full_cache(shape, w->config.layer_types, 0, w->config.num_hidden_layers);
  std::vector<int32_t> table = ShuffledTable(pool - 8, pool, 11);
  std::vector<float> full = RunForward(*w->model, full_cache, {{g.input_ids, 0, table}});

  kv::KvCache cache(shape, w->config.layer_types, 0, w->config.num_hidden_layers);
  std::vector<int32_t> table2 = ShuffledTable(pool - 8, pool, 23);
  std::vector<float> inc;
  int pos = 0;
  while (pos < T) {
    int n = pos == 0 ? prefill : std::min(chunk, T - pos);
    std::vector<int32_t> part(g.input_ids.begin() + pos, g.input_ids.begin() + pos + n);
    std::vector<float> l = RunForward(*w->model, cache, {{part, pos, table2}});
    inc.insert(inc.end(), l.begin(), l.end());
    pos += n;
  }
  float diff = MaxAbsDiff(inc, full);
  std::printf("[%s] block %lld prefill %d chunk %d: max diff vs full recompute %.3g\n",
              name.c_str(), static_cast<long long>(block_size), prefill, chunk, diff);
  EXPECT_LE(diff, 1e-5f);
}

TEST_P(IncrementalTest, DecodeOneTokenAtATime) { CheckChunked(GetParam(), 16, 20, 1); }
// Block size 5 does not divide the small test windows; chunks of 5 straddle the window edge.
TEST_P(IncrementalTest, PrefillInChunksOfFive) { CheckChunked(GetParam(), 5, 5, 5); }
TEST_P(IncrementalTest, OddChunksBlockSizeSeven) { CheckChunked(GetParam(), 7, 13, 9); }

// Eight prompts of different lengths in one ragged forward equal each prompt alone, bitwise.
TEST_P(IncrementalTest, RaggedBatchIsBitwiseInvariant) {
  const std::string name = GetParam();
  Golden g = LoadGolden(name);
  auto w = LoadWorker(ModelsDir() + "/" + name, 8, 64);
  ASSERT_NE(w, nullptr);
  kv::KvCacheShape shape{w->config.num_key_value_heads, w->config.head_dim, 8, {128, 128}};
  std::vector<SeqInput> seqs;
  std::vector<int32_t> pool = ShuffledTable(128, 128, 5);
  size_t next_block = 0;
  for (int i = 0; i < 8; ++i) {
    int len = 3 + 9 * i;  // 3 .. 66 tokens
    SeqInput s;
    s.tokens.assign(g.input_ids.begin() + i, g.input_ids.begin() + i + len);
    for (int b = 0; b < (len + 7) / 8; ++b) s.table.push_back(pool[next_block++]);
    seqs.push_back(s);
  }
  kv::KvCache batch_cache(shape, w->config.layer_types, 0, w->config.num_hidden_layers);
  std::vector<float> batched = RunForward(*w->model, batch_cache, seqs);
  size_t offset = 0;
  const size_t V = static_cast<size_t>(w->config.vocab_size);
  for (int i = 0; i < 8; ++i) {
    kv::KvCache alone_cache(shape, w->config.layer_types, 0, w->config.num_hidden_layers);
    std::vector<float> alone = RunForward(*w->model, alone_cache, {seqs[i]});
    ASSERT_EQ(0, std::memcmp(alone.data(), batched.data() + offset, alone.size() * 4))
        << name << " prompt " << i << " differs inside the batch";
    offset += seqs[i].tokens.size() * V;
  }
}

// Through the engine: greedy and seeded sampling give each prompt the same tokens and logprobs
// (bitwise) alone and inside a batch of 8 with a small step budget (mixed prefill and decode).
TEST_P(IncrementalTest, EngineBatchEqualsAlone) {
  const std::string name = GetParam();
  Golden g = LoadGolden(name);
  auto make = [&](int i) {
    engine::Request r;
    r.seq_id = i;
    r.prompt_ids.assign(g.input_ids.begin() + i, g.input_ids.begin() + i + 4 + 7 * i);
    r.max_tokens = 10;
    r.ignore_eos = true;
    r.sampling.temperature = i % 2 == 0 ? 0.0f : 0.9f;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = 1000 + i;
    r.sampling.logprobs = 2;
    return r;
  };
  auto run = [&](const std::vector<int>& ids) {
    auto w = LoadWorker(ModelsDir() + "/" + name, 8, 128);
    engine::Engine engine(w->runner.get(), {24, 64, 0});
    for (int i : ids) EXPECT_TRUE(engine.Add(make(i)).ok());
    std::map<int64_t, std::vector<std::pair<int32_t, float>>> out;
    while (engine.HasWork()) {
      auto u = engine.Step();
      EXPECT_TRUE(u.ok()) << u.status();
      if (!u.ok()) break;
      for (const auto& x : *u) out[x.seq_id].push_back({x.token_id, x.logprob});
    }
    if (ids.size() > 1) {
      EXPECT_GT(engine.scheduler().stats().chunked_prefills, 0);
    }
    return out;
  };
  auto batched = run({0, 1, 2, 3, 4, 5, 6, 7});
  for (int i = 0; i < 8; ++i) {
    auto alone = run({i});
    ASSERT_EQ(alone[i].size(), 10u);
    for (size_t t = 0; t < 10; ++t) {
      EXPECT_EQ(alone[i][t].first, batched[i][t].first) << "prompt " << i << " token " << t;
      EXPECT_EQ(std::memcmp(&alone[i][t].second, &batched[i][t].second, 4), 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, IncrementalTest, ::testing::ValuesIn(GoldenModels()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace olmo::testing
