// Helpers for model tests: fixture discovery, golden tensors, and running the model over one or
// more sequences with chosen block tables.
#pragma once

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/checkpoint/checkpoint.h"
#include "worker/step/local_worker.h"

namespace olmo::testing {

inline std::string ModelsDir() { return std::string(OLMO_TEST_DATA_DIR) + "/models"; }

// Every tests/data/models/<name> that has a golden.safetensors, sorted.
inline std::vector<std::string> GoldenModels() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(ModelsDir())) {
    if (e.is_directory() && std::filesystem::exists(e.path() / "golden.safetensors")) {
      out.push_back(e.path().filename().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct Golden {
  std::vector<int32_t> input_ids;
  std::vector<float> logits;  // [T, V]
  std::vector<int32_t> greedy_ids;
  std::vector<float> greedy_margins;
  std::vector<std::pair<std::string, std::vector<float>>> mutants;  // name -> [T, V]
};

inline Golden LoadGolden(const std::string& name) {
  Golden g;
  auto ckpt = checkpoint::Checkpoint::Open(ModelsDir() + "/" + name + "/golden.safetensors");
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  if (!ckpt.ok()) return g;
  auto read_i32 = [&](const std::string& n) {
    auto t = (*ckpt)->Get(n);
    EXPECT_TRUE(t.ok()) << t.status();
    std::vector<int32_t> v(t->numel());
    std::memcpy(v.data(), t->data, v.size() * 4);
    return v;
  };
  auto read_f32 = [&](const std::string& n) {
    auto t = (*ckpt)->Get(n);
    EXPECT_TRUE(t.ok()) << t.status();
    std::vector<float> v(t->numel());
    std::memcpy(v.data(), t->data, v.size() * 4);
    return v;
  };
  g.input_ids = read_i32("input_ids");
  g.logits = read_f32("logits");
  g.greedy_ids = read_i32("greedy_ids");
  g.greedy_margins = read_f32("greedy_margins");
  for (const auto& t : (*ckpt)->tensors()) {
    const std::string prefix = "logits_mutant_";
    if (t.name.rfind(prefix, 0) == 0) {
      g.mutants.emplace_back(t.name.substr(prefix.size()), read_f32(t.name));
    }
  }
  return g;
}

inline std::unique_ptr<step::LocalWorker> LoadWorker(const std::string& dir,
                                                     int64_t block_size = 16,
                                                     int64_t num_blocks = 64,
                                                     bool yarn_on_all_layers = false) {
  step::LocalWorkerOptions o;
  o.block_size = block_size;
  o.num_blocks = num_blocks;
  o.ops.num_threads = 2;
  o.model.yarn_on_all_layers = yarn_on_all_layers;
  auto w = step::LoadLocalWorker(dir, o);
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? std::move(*w) : nullptr;
}

// A sequence to run: its tokens for this call start at `start_pos`; `table` is its block table
// (same ids in both KV groups).
struct SeqInput {
  std::vector<int32_t> tokens;
  int32_t start_pos = 0;
  std::vector<int32_t> table;
};

// Runs one forward over the given sequences (KV of earlier positions must already be in the
// cache) and returns logits of every token, f32 [sum tokens, V].
inline std::vector<float> RunForward(model::Olmo3Model& m, kv::KvCache& cache,
                                     const std::vector<SeqInput>& seqs) {
  model::ForwardBatch b;
  int64_t bs = cache.shape().block_size;
  int64_t max_blocks = 1;
  for (const auto& s : seqs) max_blocks = std::max<int64_t>(max_blocks, s.table.size());
  for (int g = 0; g < kNumKvGroups; ++g) {
    b.max_blocks[g] = max_blocks;
    b.block_tables[g].assign(seqs.size() * max_blocks, 0);
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (int g = 0; g < kNumKvGroups; ++g) {
      std::copy(seqs[i].table.begin(), seqs[i].table.end(),
                b.block_tables[g].begin() + i * max_blocks);
    }
    for (size_t j = 0; j < seqs[i].tokens.size(); ++j) {
      int32_t pos = seqs[i].start_pos + static_cast<int32_t>(j);
      b.token_ids.push_back(seqs[i].tokens[j]);
      b.positions.push_back(pos);
      b.token_seq.push_back(static_cast<int32_t>(i));
      b.logit_rows.push_back(static_cast<int32_t>(b.token_ids.size() - 1));
      for (int g = 0; g < kNumKvGroups; ++g) {
        b.slots[g].push_back(static_cast<int64_t>(seqs[i].table[pos / bs]) * bs + pos % bs);
      }
    }
  }
  std::vector<float> logits;
  absl::Status st = m.Forward(b, &cache, &logits);
  EXPECT_TRUE(st.ok()) << st;
  return logits;
}

inline float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0.0f;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// A shuffled table of `n` distinct block ids drawn from [0, pool).
inline std::vector<int32_t> ShuffledTable(int n, int pool, uint32_t seed) {
  std::vector<int32_t> ids(pool);
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  ids.resize(n);
  return ids;
}

}  // namespace olmo::testing
