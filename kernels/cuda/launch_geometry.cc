// Launch geometry (see launch_geometry.h): pure integer arithmetic.
#include "kernels/cuda/launch_geometry.h"

#include <algorithm>

namespace olmo::kernels::cuda {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

int64_t GridFor(int64_t n, int threads) { return n <= 0 ? 0 : CeilDiv(n, threads); }

int RowThreads(int64_t n, int per_thread, int max_threads) {
  const int64_t want = CeilDiv(std::max<int64_t>(n, 1), std::max(per_thread, 1));
  const int64_t rounded = CeilDiv(want, 32) * 32;
  return static_cast<int>(std::clamp<int64_t>(rounded, 32, std::max(max_threads, 32)));
}

int64_t AttentionMaxContext(int64_t max_blocks, int64_t block_size, int64_t window) {
  const int64_t table_keys = max_blocks * block_size;
  return window > 0 ? std::min(window, table_keys) : table_keys;
}

AttentionGeometry PlanAttention(int64_t num_tokens, int64_t num_heads, int64_t kv_heads,
                                int64_t head_dim, int64_t max_context, int num_sms) {
  AttentionGeometry g;
  if (head_dim <= 0 || head_dim % 4 != 0 || head_dim > kAttentionMaxHeadDim || kv_heads <= 0 ||
      num_heads % kv_heads != 0 || num_tokens < 0) {
    return g;
  }
  g.supported = true;
  const int64_t group = num_heads / kv_heads;
  // Registers bound the rows per block: each thread keeps kAttentionAccPerThread accumulators.
  const int64_t acc_rows = std::min<int64_t>(
      int64_t{kAttentionThreads} * kAttentionAccPerThread / head_dim, kAttentionMaxRowsPerBlock);
  g.heads_per_block = std::min({group, acc_rows, int64_t{kAttentionMaxHeadsPerBlock}});
  g.head_chunks = CeilDiv(group, g.heads_per_block);
  g.tokens_per_block =
      num_tokens >= kAttentionMinTokensForTiling ? acc_rows / g.heads_per_block : 1;
  g.token_tiles = CeilDiv(num_tokens, g.tokens_per_block);
  g.grid_x = g.token_tiles * kv_heads * g.head_chunks;

  // Split the key range only when the blocks alone do not fill the GPU and the context is long
  // enough that every split still gets kAttentionMinKeysPerSplit keys.
  const int64_t target = int64_t{kAttentionBlocksPerSmTarget} * std::max(num_sms, 1);
  const int64_t max_splits_by_keys = std::max<int64_t>(max_context / kAttentionMinKeysPerSplit, 1);
  int64_t splits = 1;
  if (g.tokens_per_block == 1 && g.grid_x > 0 && g.grid_x < target) {
    splits =
        std::min({CeilDiv(target, g.grid_x), max_splits_by_keys, int64_t{kAttentionMaxSplits}});
  }
  if (splits > 1) {
    g.keys_per_split = CeilDiv(CeilDiv(max_context, splits), kAttentionTile) * kAttentionTile;
    splits = CeilDiv(max_context, g.keys_per_split);
  }
  g.num_splits = splits;
  if (splits == 1) g.keys_per_split = 0;
  g.partial_floats = splits > 1 ? num_tokens * num_heads * splits * (head_dim + 2) : 0;

  // Shared memory (floats): two buffers (double buffering) of K [tile][D + 4] and V [tile][D],
  // q [rows][D], scores [max(rows * tile, threads)] (partial dot products when several threads
  // share one key), per-row running max, sum, correction and key range [6][rows] (rounded up
  // to 4). The K rows are padded by 4 floats so that lanes reading different keys hit
  // different banks.
  const int64_t rows = g.heads_per_block * g.tokens_per_block, d = head_dim, t = kAttentionTile;
  const int64_t floats = 2 * t * (d + 4) + 2 * t * d + rows * d +
                         std::max<int64_t>(rows * t, kAttentionThreads) + CeilDiv(6 * rows, 4) * 4;
  g.smem_bytes = floats * 4;
  return g;
}

}  // namespace olmo::kernels::cuda
