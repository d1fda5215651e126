// KvWrite: each k/v row lands at the documented position of the paged layout
// [num_blocks][2][kv_heads][block_size][head_dim]; other slots are left alone.
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
