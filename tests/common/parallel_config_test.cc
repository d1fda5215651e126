#include "common/parallel_config.h"

#include "gtest/gtest.h"

namespace olmo {
namespace {

ModelConfig Model(int64_t layers, int64_t heads, int64_t kv, int64_t vocab = 1000) {
  ModelConfig m;
  m.vocab_size = vocab;
  m.hidden_size = 64;
  m.intermediate_size = 128;
  m.num_hidden_layers = layers;
  m.num_attention_heads = heads;
  m.num_key_value_heads = kv;
  m.head_dim = 16;
  for (int64_t i = 0; i < layers; ++i) {
    m.layer_types.push_back((i + 1) % 4 == 0 ? LayerType::kFull : LayerType::kSliding);
  }
  return m;
}

TEST(ParallelConfig, RanksAndValidation) {
  auto p = ParallelConfig::Make(2, 2, 3, 4, Model(5, 4, 2));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->tp_rank(), 1);
  EXPECT_EQ(p->pp_rank(), 1);
  EXPECT_TRUE(p->is_last_stage());
  auto msg = [](const absl::StatusOr<ParallelConfig>& s) { return std::string(s.status().message()); };
  EXPECT_NE(msg(ParallelConfig::Make(2, 2, 0, 3, Model(5, 4, 2))).find("world size"), std::string::npos);
  EXPECT_NE(msg(ParallelConfig::Make(3, 1, 0, 3, Model(5, 4, 2))).find("num_attention_heads"),
            std::string::npos);
  EXPECT_NE(msg(ParallelConfig::Make(4, 1, 0, 4, Model(5, 8, 3))).find("num_key_value_heads"),
            std::string::npos);
  EXPECT_NE(msg(ParallelConfig::Make(1, 6, 0, 6, Model(5, 4, 2))).find("num_hidden_layers"),
            std::string::npos);
}

TEST(ParallelConfig, HeadShardsReplicateKvWhenTpExceedsKv) {
  ModelConfig m = Model(4, 8, 2);
  for (int r = 0; r < 4; ++r) {
    auto p = ParallelConfig::Make(4, 1, r, 4, m);
    ASSERT_TRUE(p.ok());
    HeadShard h = p->heads(m);
    EXPECT_EQ(h.num_q_heads, 2);
    EXPECT_EQ(h.q_head_begin, 2 * r);
    EXPECT_EQ(h.num_kv_heads, 1);
    EXPECT_EQ(h.kv_replication, 2);
    EXPECT_EQ(h.kv_head_begin, r / 2);
    // Every q head of the rank maps to the rank's kv head under h / (H / KV).
    EXPECT_EQ(h.q_head_begin / (8 / 2), h.kv_head_begin);
  }
}

TEST(ParallelConfig, SplitEvenlyCoversVocab) {
  int64_t total = 0, prev_end = 0;
  for (int i = 0; i < 4; ++i) {
    Slice s = SplitEvenly(1001, 4, i);
    EXPECT_EQ(s.begin, prev_end);
    prev_end = s.end;
    total += s.size();
  }
  EXPECT_EQ(total, 1001);
  EXPECT_EQ(SplitEvenly(1001, 4, 0).size(), 251);
}

TEST(ParallelConfig, StagesCoverLayersAndBalanceCompute) {
  for (int pp = 1; pp <= 5; ++pp) {
    auto st = ParallelConfig::SplitStages(Model(5, 4, 2), pp);
    ASSERT_EQ(static_cast<int>(st.size()), pp);
    EXPECT_EQ(st.front().layer_begin, 0);
    EXPECT_EQ(st.back().layer_end, 5);
    EXPECT_TRUE(st.front().has_embedding);
    EXPECT_TRUE(st.back().has_lm_head);
    for (int s = 1; s < pp; ++s) EXPECT_EQ(st[s].layer_begin, st[s - 1].layer_end);
    for (const auto& r : st) EXPECT_GT(r.layer_end, r.layer_begin);
  }
  // 7B shapes, pp 2: lm_head costs about two layers, so the last stage gets fewer layers.
  ModelConfig m = Model(32, 32, 32, 100278);
  m.hidden_size = 4096;
  m.intermediate_size = 11008;
  m.head_dim = 128;
  auto st = ParallelConfig::SplitStages(m, 2);
  EXPECT_GT(st[0].layer_end - st[0].layer_begin, st[1].layer_end - st[1].layer_begin);
}

}  // namespace
}  // namespace olmo
