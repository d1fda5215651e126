// Launch geometry of the CUDA kernels (pure host arithmetic, no GPU needed).
#include "kernels/cuda/launch_geometry.h"

#include "gtest/gtest.h"

namespace olmo::kernels::cuda {
namespace {

TEST(LaunchGeometryTest, GridForAndRowThreads) {
  EXPECT_EQ(GridFor(0, 256), 0);
  EXPECT_EQ(GridFor(-5, 256), 0);
  EXPECT_EQ(GridFor(1, 256), 1);
  EXPECT_EQ(GridFor(256, 256), 1);
  EXPECT_EQ(GridFor(257, 256), 2);
  EXPECT_EQ(GridFor(int64_t{1} << 40, 1024), int64_t{1} << 30);
  EXPECT_EQ(RowThreads(1, 4, 1024), 32);
  EXPECT_EQ(RowThreads(4096, 4, 1024), 1024);
  EXPECT_EQ(RowThreads(4096, 16, 1024), 256);
  EXPECT_EQ(RowThreads(100278, 4, 1024), 1024);
  EXPECT_EQ(RowThreads(130, 4, 1024), 64);  // ceil(130 / 4) = 33 -> 64
}

TEST(LaunchGeometryTest, MaxContextIsTableWidthCappedByWindow) {
  EXPECT_EQ(AttentionMaxContext(256, 16, 0), 4096);
  EXPECT_EQ(AttentionMaxContext(256, 16, 100), 100);
  EXPECT_EQ(AttentionMaxContext(2, 16, 100), 32);
}

TEST(LaunchGeometryTest, UnsupportedShapes) {
  EXPECT_FALSE(PlanAttention(1, 32, 8, 130, 100, 132).supported);  // head_dim % 4
  EXPECT_FALSE(PlanAttention(1, 32, 8, 512, 100, 132).supported);  // head_dim > 256
  EXPECT_FALSE(PlanAttention(1, 30, 8, 128, 100, 132).supported);  // heads % kv_heads
  EXPECT_FALSE(PlanAttention(1, 32, 0, 128, 100, 132).supported);
  EXPECT_TRUE(PlanAttention(1, 32, 8, 128, 100, 132).supported);
}

TEST(LaunchGeometryTest, HeadsPerBlockBoundedByRegistersAndGroup) {
  // MHA: one head per block.
  AttentionGeometry mha = PlanAttention(64, 32, 32, 128, 4096, 132);
  EXPECT_EQ(mha.heads_per_block, 1);
  EXPECT_EQ(mha.head_chunks, 1);
  EXPECT_EQ(mha.grid_x, 64 * 32);
  // GQA 32/8: the whole group of 4 shares each K/V tile.
  AttentionGeometry gqa = PlanAttention(64, 32, 8, 128, 4096, 132);
  EXPECT_EQ(gqa.heads_per_block, 4);
  EXPECT_EQ(gqa.head_chunks, 1);
  EXPECT_EQ(gqa.grid_x, 64 * 8);
  // MQA 32/1 at 128: 8 heads per block (the cap), 4 chunks.
  AttentionGeometry mqa = PlanAttention(3, 32, 1, 128, 200, 132);
  EXPECT_EQ(mqa.heads_per_block, 8);
  EXPECT_EQ(mqa.head_chunks, 4);
  EXPECT_EQ(mqa.grid_x, 3 * 4);
  // head_dim 256: 128 threads x 16 accumulators / 256 = 8 heads.
  EXPECT_EQ(PlanAttention(1, 16, 1, 256, 64, 132).heads_per_block, 8);
  // A group of 5 with a cap of 8: one chunk of 5; a group of 12: two chunks (8 + 4).
  EXPECT_EQ(PlanAttention(1, 5, 1, 64, 64, 132).head_chunks, 1);
  EXPECT_EQ(PlanAttention(1, 12, 1, 64, 64, 132).head_chunks, 2);
  for (const AttentionGeometry& g : {mha, gqa, mqa}) {
    EXPECT_LE(g.heads_per_block * 128, kAttentionThreads * kAttentionAccPerThread);
    EXPECT_LE(g.smem_bytes, 227 * 1024);  // H100 / A100 opt-in limit per block
  }
}

TEST(LaunchGeometryTest, SharedMemoryCoversBuffers) {
  const AttentionGeometry g = PlanAttention(1, 32, 32, 128, 64, 132);
  // K [2][32][132] + V [2][32][128] + q [1][128] + scores [128] + row state [6 -> 8].
  EXPECT_EQ(g.smem_bytes, (2 * 32 * 132 + 2 * 32 * 128 + 128 + 128 + 8) * 4);
}

TEST(LaunchGeometryTest, PrefillStepsTileQueryTokens) {
  // MHA 128: 16 rows of accumulators -> 16 tokens per block.
  const AttentionGeometry mha = PlanAttention(4096, 32, 32, 128, 4096, 132);
  EXPECT_EQ(mha.tokens_per_block, 16);
  EXPECT_EQ(mha.token_tiles, 256);
  EXPECT_EQ(mha.grid_x, 256 * 32);
  EXPECT_EQ(mha.num_splits, 1);
  // GQA 32/8: 4 heads x 4 tokens; MQA 32/1: 8 heads x 2 tokens; a ragged last tile.
  const AttentionGeometry gqa = PlanAttention(300, 32, 8, 128, 4096, 132);
  EXPECT_EQ(gqa.tokens_per_block, 4);
  EXPECT_EQ(gqa.token_tiles, 75);
  EXPECT_EQ(PlanAttention(301, 32, 1, 128, 4096, 132).tokens_per_block, 2);
  EXPECT_EQ(PlanAttention(301, 32, 1, 128, 4096, 132).token_tiles, 151);
  // head_dim 256: 8 rows.
  EXPECT_EQ(PlanAttention(512, 8, 8, 256, 4096, 132).tokens_per_block, 8);
  // Decode-sized steps keep one token per block.
  EXPECT_EQ(
      PlanAttention(kAttentionMinTokensForTiling - 1, 32, 32, 128, 4096, 132).tokens_per_block, 1);
  for (const AttentionGeometry& g : {mha, gqa}) {
    EXPECT_LE(g.heads_per_block * g.tokens_per_block * 128,
              kAttentionThreads * kAttentionAccPerThread);
    EXPECT_LE(g.smem_bytes, 227 * 1024);
  }
  // K + V buffers, q [16][128], scores [16 * 32], row state [96].
  EXPECT_EQ(mha.smem_bytes, (2 * 32 * 132 + 2 * 32 * 128 + 16 * 128 + 16 * 32 + 96) * 4);
}

TEST(LaunchGeometryTest, NoSplitWhenBlocksFillTheGpu) {
  // Batch 64 x 32 kv heads = 2048 blocks >= 4 x 132.
  const AttentionGeometry g = PlanAttention(64, 32, 32, 128, 4096, 132);
  EXPECT_EQ(g.num_splits, 1);
  EXPECT_EQ(g.partial_floats, 0);
  // Prefill: many tokens, never split.
  EXPECT_EQ(PlanAttention(4096, 32, 8, 128, 4096, 132).num_splits, 1);
}

TEST(LaunchGeometryTest, SplitKForFewBlocksAndLongContexts) {
  // One decode token, 8 kv heads, 8000 keys: 8 blocks << 528 wanted.
  const AttentionGeometry g = PlanAttention(1, 32, 8, 128, 8000, 132);
  EXPECT_GT(g.num_splits, 1);
  EXPECT_LE(g.num_splits, kAttentionMaxSplits);
  EXPECT_EQ(g.keys_per_split % kAttentionTile, 0);
  EXPECT_GE(g.keys_per_split, kAttentionMinKeysPerSplit);
  EXPECT_GE(g.num_splits * g.keys_per_split, 8000);        // every key covered
  EXPECT_LT((g.num_splits - 1) * g.keys_per_split, 8000);  // no split always empty
  EXPECT_EQ(g.partial_floats, 1 * 32 * g.num_splits * (128 + 2));
  // Short contexts are never split, whatever the batch.
  EXPECT_EQ(PlanAttention(1, 32, 8, 128, 300, 132).num_splits, 1);
  // A window caps the split count through max_context.
  const AttentionGeometry w = PlanAttention(1, 32, 32, 128, 1000, 132);
  EXPECT_EQ(w.num_splits, 3);  // 1000 / 256 = 3 splits at most
  EXPECT_EQ(w.keys_per_split, 352);
  // The split count never exceeds the cap, even for huge contexts.
  EXPECT_EQ(PlanAttention(1, 8, 1, 128, 1 << 20, 132).num_splits, kAttentionMaxSplits);
}

TEST(LaunchGeometryTest, MoreSmsMoreSplits) {
  const int64_t few = PlanAttention(2, 32, 8, 128, 16384, 20).num_splits;
  const int64_t many = PlanAttention(2, 32, 8, 128, 16384, 132).num_splits;
  EXPECT_LT(few, many);
}

}  // namespace
}  // namespace olmo::kernels::cuda
