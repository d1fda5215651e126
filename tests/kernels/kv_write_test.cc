// KvWrite: each k/v row lands at the documented position of the paged layout
// [num_blocks][2][kv_heads][block_size][head_dim]; other slots are left alone.
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels {
namespace {

TEST(KvWrite, WritesSlotsInThePagedLayout) {
  const int64_t blocks = 6, kv = 3, bs = 5, dim = 4;
  const int64_t tokens = 4, k_stride = kv * dim + 7, v_stride = kv * dim + 2;  // strided rows
  std::vector<float> cache(blocks * 2 * kv * bs * dim, -1.0f);
  KvLayerView view{cache.data(), blocks, kv, bs, dim};
  std::vector<float> k(tokens * k_stride), v(tokens * v_stride);
  for (size_t i = 0; i < k.size(); ++i) k[i] = 1000.0f + static_cast<float>(i);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 5000.0f + static_cast<float>(i);
  const std::vector<int64_t> slots = {29, 0, 14, 12};  // blocks 5, 0, 2, 2
  cpu::KvWrite({k.data(), v.data(), k_stride, v_stride, tokens, slots.data(), view}, 2);

  std::vector<bool> written(cache.size(), false);
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t block = slots[t] / bs, off = slots[t] % bs;
    for (int64_t h = 0; h < kv; ++h) {
      for (int64_t d = 0; d < dim; ++d) {
        const int64_t ki = (((block * 2 + 0) * kv + h) * bs + off) * dim + d;
        const int64_t vi = (((block * 2 + 1) * kv + h) * bs + off) * dim + d;
        EXPECT_EQ(cache[ki], k[t * k_stride + h * dim + d]) << t << "," << h << "," << d;
        EXPECT_EQ(cache[vi], v[t * v_stride + h * dim + d]) << t << "," << h << "," << d;
        written[ki] = written[vi] = true;
      }
    }
  }
  for (size_t i = 0; i < cache.size(); ++i) {
    if (!written[i]) {
      ASSERT_EQ(cache[i], -1.0f) << "index " << i;
    }
  }
}

TEST(KvWrite, ManyTokensAcrossThreads) {
  const int64_t blocks = 64, kv = 2, bs = 16, dim = 128, tokens = 1000;  // parallel path
  std::vector<float> cache(blocks * 2 * kv * bs * dim, 0.0f);
  KvLayerView view{cache.data(), blocks, kv, bs, dim};
  std::vector<float> k(tokens * kv * dim), v(tokens * kv * dim);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<float>(i);
    v[i] = -static_cast<float>(i);
  }
  std::vector<int64_t> slots(tokens);
  for (int64_t t = 0; t < tokens; ++t) slots[t] = (t * 37) % (blocks * bs);  // a permutation
  cpu::KvWrite({k.data(), v.data(), kv * dim, kv * dim, tokens, slots.data(), view}, 2);
  for (int64_t t = 0; t < tokens; t += 7) {
    const int64_t block = slots[t] / bs, off = slots[t] % bs;
    for (int64_t h = 0; h < kv; ++h) {
      const int64_t ki = (((block * 2) * kv + h) * bs + off) * dim;
      const int64_t vi = (((block * 2 + 1) * kv + h) * bs + off) * dim;
      EXPECT_EQ(cache[ki + 5], k[(t * kv + h) * dim + 5]);
      EXPECT_EQ(cache[vi + 127], v[(t * kv + h) * dim + 127]);
    }
  }
}

}  // namespace
}  // namespace olmo::kernels

namespace olmo::kernels {
namespace {

// A bf16 cache gets the same layout with each value rounded to nearest even (F32ToBf16), and
// attention over it equals, bit for bit, attention over an f32 cache of the rounded values.
TEST(KvWrite, Bf16CacheRoundsAndAttentionWidensExactly) {
  const int64_t blocks = 5, kv = 2, bs = 4, dim = 8, heads = 4, tokens = 11;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> k(tokens * kv * dim), v(tokens * kv * dim), q(tokens * heads * dim);
  for (auto* x : {&k, &v, &q}) {
    for (float& f : *x) f = nd(rng) * 3.0f;
  }
  std::vector<int64_t> slots(tokens);
  const std::vector<int32_t> table = {3, 0, 4};  // token u -> block table[u / bs]
  for (int64_t t = 0; t < tokens; ++t) slots[t] = table[t / bs] * bs + t % bs;
  std::vector<uint16_t> cache16(blocks * 2 * kv * bs * dim, 0);
  std::vector<float> cache32(cache16.size(), 0.0f);
  KvLayerView v16{cache16.data(), blocks, kv, bs, dim, DType::kBF16};
  KvLayerView v32{cache32.data(), blocks, kv, bs, dim};
  cpu::KvWrite({k.data(), v.data(), kv * dim, kv * dim, tokens, slots.data(), v16}, 2);
  std::vector<float> k_rounded(k.size()), v_rounded(v.size());
  for (size_t i = 0; i < k.size(); ++i) {
    k_rounded[i] = Bf16ToF32(F32ToBf16(k[i]));
    v_rounded[i] = Bf16ToF32(F32ToBf16(v[i]));
  }
  cpu::KvWrite({k_rounded.data(), v_rounded.data(), kv * dim, kv * dim, tokens, slots.data(), v32},
               2);
  int64_t changed = 0;
  for (size_t i = 0; i < cache16.size(); ++i) {
    ASSERT_EQ(Bf16ToF32(cache16[i]), cache32[i]) << "element " << i;
  }
  for (size_t i = 0; i < k.size(); ++i) changed += k_rounded[i] != k[i];
  EXPECT_GT(changed, static_cast<int64_t>(k.size() / 2));  // the rounding is real

  std::vector<int32_t> positions(tokens), token_seq(tokens, 0);
  for (int64_t t = 0; t < tokens; ++t) positions[t] = static_cast<int32_t>(t);
  for (int64_t window : {0, 5}) {
    std::vector<float> out16(tokens * heads * dim), out32(out16.size());
    AttentionParams p{q.data(), heads * dim, out16.data(), tokens, heads, positions.data(),
                      token_seq.data(), table.data(), 3, window, 0.35f, v16};
    cpu::Attention(p, 2);
    p.out = out32.data();
    p.cache = v32;
    cpu::Attention(p, 1);
    for (size_t i = 0; i < out16.size(); ++i) ASSERT_EQ(out16[i], out32[i]) << "window " << window;
  }
}

}  // namespace
}  // namespace olmo::kernels
