// Embedding: row gather with dtype conversion, and vocab-parallel masking (ids outside the
// rank's slice give zeros).
#include <cstring>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels {
namespace {

// Entry (id, j) of the full table: exactly representable in bf16 and f16.
float TableValue(int64_t id, int64_t j) { return static_cast<float>(id * 8 + j) * 0.25f - 3.0f; }

TEST(Embedding, Bf16SliceGathersRowsAndMasksOtherIds) {
  const int64_t vocab = 10, hidden = 6, begin = 4;
  std::vector<uint16_t> table(vocab * hidden);
  for (int64_t i = 0; i < vocab; ++i) {
    for (int64_t j = 0; j < hidden; ++j) table[i * hidden + j] = F32ToBf16(TableValue(i, j));
  }
  // This rank holds vocab rows [4, 10).
  WeightView slice{table.data() + begin * hidden, DType::kBF16, vocab - begin, hidden};
  const std::vector<int32_t> ids = {4, 9, 3, 7, 0, 10, -1, 4};
  std::vector<float> out(ids.size() * hidden, -7.0f);
  cpu::Embedding({ids.data(), static_cast<int64_t>(ids.size()), slice, begin, out.data()}, 2);
  for (size_t t = 0; t < ids.size(); ++t) {
    const bool mine = ids[t] >= begin && ids[t] < vocab;
    for (int64_t j = 0; j < hidden; ++j) {
      EXPECT_EQ(out[t * hidden + j], mine ? TableValue(ids[t], j) : 0.0f)
          << "token " << t << " id " << ids[t] << " j " << j;
    }
  }
}

TEST(Embedding, F32AndF16TablesMatchAndSlicesSumToTheFullRow) {
  const int64_t vocab = 9, hidden = 5;
  std::vector<float> f32(vocab * hidden);
  std::vector<uint16_t> f16(vocab * hidden);
  for (int64_t i = 0; i < vocab * hidden; ++i) {
    f32[i] = TableValue(i / hidden, i % hidden);
    f16[i] = F32ToF16(f32[i]);
  }
  const std::vector<int32_t> ids = {8, 0, 5, 5, 2};
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<float> full(n * hidden), half(n * hidden);
  cpu::Embedding({ids.data(), n, {f32.data(), DType::kF32, vocab, hidden}, 0, full.data()}, 1);
  cpu::Embedding({ids.data(), n, {f16.data(), DType::kF16, vocab, hidden}, 0, half.data()}, 1);
  EXPECT_EQ(full, half);
  // Vocab split over 2 ranks as [0, 5) and [5, 9): the sum over ranks (what the all-reduce
  // computes) is the full row.
  std::vector<float> r0(n * hidden), r1(n * hidden);
  cpu::Embedding({ids.data(), n, {f32.data(), DType::kF32, 5, hidden}, 0, r0.data()}, 1);
  cpu::Embedding({ids.data(), n, {f32.data() + 5 * hidden, DType::kF32, 4, hidden}, 5, r1.data()},
                 1);
  for (int64_t i = 0; i < n * hidden; ++i) {
    EXPECT_EQ(r0[i] + r1[i], full[i]);
    EXPECT_TRUE(r0[i] == 0.0f || r1[i] == 0.0f);
    EXPECT_EQ(full[i], TableValue(ids[i / hidden], i % hidden));
  }
}

TEST(Embedding, LargeBatchUsesThreadsAndMatchesSingleTokens) {
  const int64_t vocab = 50, hidden = 256, n = 300;  // above the parallel threshold
  std::vector<uint16_t> table(vocab * hidden);
  for (int64_t i = 0; i < vocab * hidden; ++i) table[i] = F32ToBf16(static_cast<float>(i % 97));
  std::vector<int32_t> ids(n);
  for (int64_t t = 0; t < n; ++t) ids[t] = static_cast<int32_t>((t * 7) % 60);  // some >= vocab
  WeightView w{table.data(), DType::kBF16, vocab, hidden};
  std::vector<float> out(n * hidden), one(hidden);
  cpu::Embedding({ids.data(), n, w, 0, out.data()}, 2);
  for (int64_t t = 0; t < n; ++t) {
    cpu::Embedding({&ids[t], 1, w, 0, one.data()}, 1);
    ASSERT_EQ(0, std::memcmp(one.data(), &out[t * hidden], hidden * sizeof(float))) << t;
    const float want0 = ids[t] < vocab ? static_cast<float>((ids[t] * hidden) % 97) : 0.0f;
    EXPECT_EQ(out[t * hidden], want0) << t;
  }
}

}  // namespace
}  // namespace olmo::kernels
