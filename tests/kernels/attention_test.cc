// Paged attention against contiguous attention computed directly from [T, heads, D] arrays:
// shuffled block tables, GQA/MQA/MHA, sliding windows with block sizes that do not divide them,
// query chunks straddling the window edge, several sequences per call; plus batch invariance.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels {
namespace {

struct Case {
  int64_t heads, kv_heads, head_dim, block_size, window;
};

// Contiguous reference for one sequence: keys/values [len, kv, D], query at position p.
std::vector<double> Reference(const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v, int64_t p, const Case& c, float scale) {
  std::vector<double> out(c.heads * c.head_dim, 0.0);
  int64_t lo = c.window > 0 ? std::max<int64_t>(0, p - c.window + 1) : 0;
  for (int64_t h = 0; h < c.heads; ++h) {
    int64_t g = h / (c.heads / c.kv_heads);
    std::vector<double> s;
    for (int64_t u = lo; u <= p; ++u) {
      double d = 0;
      for (int64_t j = 0; j < c.head_dim; ++j) {
        d += static_cast<double>(q[h * c.head_dim + j]) * k[(u * c.kv_heads + g) * c.head_dim + j];
      }
      s.push_back(d * scale);
    }
    double mx = *std::max_element(s.begin(), s.end()), sum = 0;
    for (double& x : s) sum += (x = std::exp(x - mx));
    for (int64_t u = lo; u <= p; ++u) {
      for (int64_t j = 0; j < c.head_dim; ++j) {
        out[h * c.head_dim + j] += s[u - lo] / sum * v[(u * c.kv_heads + g) * c.head_dim + j];
      }
    }
  }
  return out;
}

TEST(Attention, PagedMatchesContiguous) {
  const Case cases[] = {{8, 2, 16, 5, 12}, {4, 1, 32, 7, 0}, {4, 4, 16, 16, 9},
                        {2, 1, 128, 3, 10}, {6, 3, 16, 4, 1}};
  for (const Case& c : cases) {
    std::mt19937 rng(static_cast<uint32_t>(c.heads * 100 + c.block_size));
    std::normal_distribution<float> nd;
    const int64_t num_blocks = 64;
    std::vector<float> cache(num_blocks * 2 * c.kv_heads * c.block_size * c.head_dim, 0.0f);
    KvLayerView view{cache.data(), num_blocks, c.kv_heads, c.block_size, c.head_dim};
    std::vector<int32_t> pool(num_blocks);
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), rng);
    // Three sequences of different lengths; each writes all its keys, then a chunk of queries at
    // its last positions (the chunk straddles the window edge) is evaluated.
    const int64_t lens[] = {23, 40, 9};
    const int64_t chunk[] = {7, 15, 9};
    const int64_t max_blocks = 16;  // 40 tokens in blocks of 3 need 14
    std::vector<int32_t> tables(3 * max_blocks, 0);
    size_t next = 0;
    std::vector<std::vector<float>> ks(3), vs(3);
    std::vector<float> q;
    std::vector<int32_t> positions, token_seq;
    for (int s = 0; s < 3; ++s) {
      for (int64_t b = 0; b < (lens[s] + c.block_size - 1) / c.block_size; ++b) {
        tables[s * max_blocks + b] = pool[next++];
      }
      ks[s].resize(lens[s] * c.kv_heads * c.head_dim);
      vs[s].resize(ks[s].size());
      for (auto& x : ks[s]) x = nd(rng);
      for (auto& x : vs[s]) x = nd(rng);
      std::vector<int64_t> slots(lens[s]);
      for (int64_t u = 0; u < lens[s]; ++u) {
        slots[u] = tables[s * max_blocks + u / c.block_size] * c.block_size + u % c.block_size;
      }
      int64_t w = c.kv_heads * c.head_dim;
      cpu::KvWrite({ks[s].data(), vs[s].data(), w, w, lens[s], slots.data(), view}, 2);
      for (int64_t p = lens[s] - chunk[s]; p < lens[s]; ++p) {
        positions.push_back(static_cast<int32_t>(p));
        token_seq.push_back(s);
        for (int64_t j = 0; j < c.heads * c.head_dim; ++j) q.push_back(nd(rng));
      }
    }
    const int64_t T = static_cast<int64_t>(positions.size());
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    std::vector<float> out(T * c.heads * c.head_dim);
    AttentionParams ap;
    ap.q = q.data();
    ap.q_stride = c.heads * c.head_dim;
    ap.out = out.data();
    ap.num_tokens = T;
    ap.num_heads = c.heads;
    ap.positions = positions.data();
    ap.token_seq = token_seq.data();
    ap.block_tables = tables.data();
    ap.max_blocks = max_blocks;
    ap.window = c.window;
    ap.scale = scale;
    ap.cache = view;
    cpu::Attention(ap, 2);
    double worst = 0;
    for (int64_t t = 0; t < T; ++t) {
      int s = token_seq[t];
      std::vector<float> qt(q.begin() + t * c.heads * c.head_dim,
                            q.begin() + (t + 1) * c.heads * c.head_dim);
      auto ref = Reference(qt, ks[s], vs[s], positions[t], c, scale);
      for (size_t j = 0; j < ref.size(); ++j) {
        worst = std::max(worst, std::fabs(ref[j] - out[t * c.heads * c.head_dim + j]));
      }
      // Batch invariance: the token alone gives the same bits.
      std::vector<float> one(c.heads * c.head_dim);
      AttentionParams ap1 = ap;
      ap1.q = q.data() + t * c.heads * c.head_dim;
      ap1.out = one.data();
      ap1.num_tokens = 1;
      ap1.positions = &positions[t];
      ap1.token_seq = &token_seq[t];
      cpu::Attention(ap1, 1);
      ASSERT_EQ(0, std::memcmp(one.data(), out.data() + t * c.heads * c.head_dim, one.size() * 4));
    }
    EXPECT_LT(worst, 1e-5) << "heads " << c.heads << " kv " << c.kv_heads << " D " << c.head_dim
                           << " block " << c.block_size << " window " << c.window;
  }
}

}  // namespace
}  // namespace olmo::kernels
