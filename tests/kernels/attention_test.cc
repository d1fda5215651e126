// Paged attention against contiguous attention computed directly from [T, heads, D] arrays in
// double: shuffled block tables, GQA/MQA/MHA, head_dim 16/32/128, sliding windows with block
// sizes that do not divide them, query chunks straddling the window edge, several sequences
// interleaved in one call, padded q rows; plus batch and thread-count invariance (bitwise).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels {
namespace {

struct Case {
  int64_t heads, kv_heads, head_dim, block_size, window;
};

// Contiguous reference for one query token: keys/values [len, kv, D], query [heads, D] at
// position p; returns [heads, D].
std::vector<double> Reference(const float* q, const std::vector<float>& k,
                              const std::vector<float>& v, int64_t p, const Case& c, float scale) {
  const int64_t D = c.head_dim;
  std::vector<double> out(c.heads * D, 0.0);
  const int64_t lo = c.window > 0 ? std::max<int64_t>(0, p - c.window + 1) : 0;
  for (int64_t h = 0; h < c.heads; ++h) {
    const int64_t g = h / (c.heads / c.kv_heads);
    std::vector<double> s;
    for (int64_t u = lo; u <= p; ++u) {
      double d = 0;
      for (int64_t j = 0; j < D; ++j) {
        d += static_cast<double>(q[h * D + j]) * k[(u * c.kv_heads + g) * D + j];
      }
      s.push_back(d * scale);
    }
    double mx = *std::max_element(s.begin(), s.end()), sum = 0;
    for (double& x : s) sum += (x = std::exp(x - mx));
    for (int64_t u = lo; u <= p; ++u) {
      for (int64_t j = 0; j < D; ++j) {
        out[h * D + j] += s[u - lo] / sum * v[(u * c.kv_heads + g) * D + j];
      }
    }
  }
  return out;
}

// Sequences written into a shuffled paged cache and a batch of query tokens over them.
struct Scenario {
  Case c;
  int64_t max_blocks = 0;
  std::vector<float> cache;
  std::vector<int32_t> tables;
  std::vector<std::vector<float>> ks, vs;  // per sequence [len, kv, D]
  std::vector<float> q;                    // [T, q_stride]
  int64_t q_stride = 0;
  std::vector<int32_t> positions, token_seq;
  float scale = 0;

  AttentionParams Params(float* out) {
    AttentionParams ap;
    ap.q = q.data();
    ap.q_stride = q_stride;
    ap.out = out;
    ap.num_tokens = static_cast<int64_t>(positions.size());
    ap.num_heads = c.heads;
    ap.positions = positions.data();
    ap.token_seq = token_seq.data();
    ap.block_tables = tables.data();
    ap.max_blocks = max_blocks;
    ap.window = c.window;
    ap.scale = scale;
    ap.cache = {cache.data(),
                static_cast<int64_t>(cache.size()) / (2 * c.kv_heads * c.block_size * c.head_dim),
                c.kv_heads, c.block_size, c.head_dim};
    return ap;
  }
};

// lens[s] keys per sequence; queries at positions [query_begin[s], lens[s]) of each sequence,
// interleaved across sequences in a shuffled order.
Scenario Build(const Case& c, const std::vector<int64_t>& lens,
               const std::vector<int64_t>& query_begin, uint32_t seed) {
  Scenario sc;
  sc.c = c;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  const int64_t num_seqs = static_cast<int64_t>(lens.size());
  const int64_t longest = *std::max_element(lens.begin(), lens.end());
  sc.max_blocks = (longest + c.block_size - 1) / c.block_size + 2;
  int64_t needed = 0;
  for (int64_t len : lens) needed += (len + c.block_size - 1) / c.block_size;
  const int64_t num_blocks = needed + 5;  // some blocks stay unused (zeros)
  sc.cache.assign(num_blocks * 2 * c.kv_heads * c.block_size * c.head_dim, 0.0f);
  std::vector<int32_t> pool(num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  // Unused table entries point at a block that is never read; -1 would crash if read.
  sc.tables.assign(num_seqs * sc.max_blocks, -1);
  size_t next = 0;
  const int64_t kv_width = c.kv_heads * c.head_dim;
  KvLayerView view{sc.cache.data(), num_blocks, c.kv_heads, c.block_size, c.head_dim};
  sc.ks.resize(num_seqs);
  sc.vs.resize(num_seqs);
  for (int64_t s = 0; s < num_seqs; ++s) {
    for (int64_t b = 0; b < (lens[s] + c.block_size - 1) / c.block_size; ++b) {
      sc.tables[s * sc.max_blocks + b] = pool[next++];
    }
    sc.ks[s].resize(lens[s] * kv_width);
    sc.vs[s].resize(lens[s] * kv_width);
    for (auto& x : sc.ks[s]) x = nd(rng);
    for (auto& x : sc.vs[s]) x = nd(rng);
    std::vector<int64_t> slots(lens[s]);
    for (int64_t u = 0; u < lens[s]; ++u) {
      slots[u] = sc.tables[s * sc.max_blocks + u / c.block_size] * c.block_size + u % c.block_size;
    }
    cpu::KvWrite(
        {sc.ks[s].data(), sc.vs[s].data(), kv_width, kv_width, lens[s], slots.data(), view}, 2);
    for (int64_t p = query_begin[s]; p < lens[s]; ++p) {
      sc.positions.push_back(static_cast<int32_t>(p));
      sc.token_seq.push_back(static_cast<int32_t>(s));
    }
  }
  std::vector<size_t> order(sc.positions.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int32_t> pos2, seq2;
  for (size_t i : order) {
    pos2.push_back(sc.positions[i]);
    seq2.push_back(sc.token_seq[i]);
  }
  sc.positions = pos2;
  sc.token_seq = seq2;
  sc.q_stride = c.heads * c.head_dim + 2 * kv_width;  // q inside a fused qkv row
  sc.q.resize(sc.positions.size() * sc.q_stride);
  for (auto& x : sc.q) x = nd(rng);
  sc.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  return sc;
}

// Max |paged - reference| over every query of the scenario, and bitwise checks that each token
// computed alone (1 thread) equals the batched result (2 threads).
double Check(Scenario& sc) {
  const Case& c = sc.c;
  const int64_t T = static_cast<int64_t>(sc.positions.size()), width = c.heads * c.head_dim;
  std::vector<float> out(T * width, NAN);
  const AttentionParams ap = sc.Params(out.data());
  cpu::Attention(ap, 2);
  double worst = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int s = sc.token_seq[t];
    auto ref = Reference(&sc.q[t * sc.q_stride], sc.ks[s], sc.vs[s], sc.positions[t], c, sc.scale);
    for (int64_t j = 0; j < width; ++j) {
      worst = std::max(worst, std::fabs(ref[j] - out[t * width + j]));
    }
    std::vector<float> one(width);
    AttentionParams ap1 = ap;
    ap1.q = &sc.q[t * sc.q_stride];
    ap1.out = one.data();
    ap1.num_tokens = 1;
    ap1.positions = &sc.positions[t];
    ap1.token_seq = &sc.token_seq[t];
    cpu::Attention(ap1, 1);
    EXPECT_EQ(0, std::memcmp(one.data(), &out[t * width], width * sizeof(float)))
        << "token " << t << " differs alone vs batched";
  }
  return worst;
}

TEST(Attention, PagedMatchesContiguous) {
  const Case cases[] = {
      {8, 2, 16, 5, 12},   // GQA, window 12 with blocks of 5
      {8, 2, 32, 7, 0},    // GQA, full causal
      {8, 2, 128, 3, 10},  // GQA, head_dim 128, blocks of 3 vs window 10
      {4, 1, 32, 7, 9},    // MQA
      {4, 1, 16, 4, 0},    // MQA, full
      {4, 4, 16, 16, 9},   // MHA, one block larger than the window
      {4, 4, 128, 6, 0},   // MHA, head_dim 128
      {6, 3, 16, 4, 1},    // window 1: only the current key
      {2, 1, 20, 5, 7},    // head_dim not a multiple of 8 (scalar tails)
  };
  uint32_t seed = 1;
  for (const Case& c : cases) {
    // Sequence 0: a full prefill (its chunk straddles the window edge), 1: a later chunk,
    // 2: a single decode token, 3: a short prompt.
    Scenario sc = Build(c, {23, 40, 9, 3}, {0, 25, 8, 0}, seed++);
    const double worst = Check(sc);
    EXPECT_LT(worst, 1e-5) << "heads " << c.heads << " kv " << c.kv_heads << " D " << c.head_dim
                           << " block " << c.block_size << " window " << c.window;
  }
}

TEST(Attention, LongSequenceWithWindow) {
  // 700 keys over 44 shuffled blocks of 16; window 100 (not a multiple of 16) and full.
  for (int64_t window : {100, 0}) {
    Scenario sc = Build({8, 2, 64, 16, window}, {700, 130}, {600, 95}, 77);
    EXPECT_LT(Check(sc), 1e-5) << "window " << window;
  }
}

TEST(Attention, ThreadCountDoesNotChangeBits) {
  Scenario sc = Build({8, 2, 32, 5, 11}, {50, 31}, {0, 0}, 5);
  const int64_t T = static_cast<int64_t>(sc.positions.size()), width = 8 * 32;
  std::vector<float> a(T * width), b(T * width);
  cpu::Attention(sc.Params(a.data()), 1);
  cpu::Attention(sc.Params(b.data()), 2);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

TEST(Attention, WindowExcludesOlderKeys) {
  // Keys outside the window get huge values: any leak shows in the output.
  Scenario sc = Build({2, 1, 16, 4, 5}, {20}, {19}, 9);
  const int64_t lo = 19 - 5 + 1;
  KvLayerView view = sc.Params(nullptr).cache;
  for (int64_t u = 0; u < lo; ++u) {
    const int64_t block = sc.tables[u / 4], off = u % 4;
    float* vrow = static_cast<float*>(view.data) + (((block * 2 + 1) * 1 + 0) * 4 + off) * 16;
    for (int64_t d = 0; d < 16; ++d) vrow[d] = 1e6f;
    for (int64_t d = 0; d < 16; ++d) sc.vs[0][u * 16 + d] = 1e6f;
  }
  std::vector<float> out(2 * 16);
  cpu::Attention(sc.Params(out.data()), 1);
  for (float x : out) EXPECT_LT(std::fabs(x), 10.0f);
  EXPECT_LT(Check(sc), 1e-5);
}

}  // namespace
}  // namespace olmo::kernels
