// Launch geometry of the CUDA kernels as pure host arithmetic (no CUDA headers), so it is unit
// tested on machines without a GPU (tests/kernels_cuda_host) and the kernels share one source of
// truth for grid sizes, shared-memory sizes and the split-K choice of paged attention.
#pragma once

#include <cstdint>

namespace olmo::kernels::cuda {

// Blocks of `threads` threads covering n items (0 for n <= 0).
int64_t GridFor(int64_t n, int threads);

// Threads per block of a row-wise reduction kernel (RmsNorm, LogSoftmax...) over `n` columns:
// a multiple of 32 in [32, max_threads], about one thread per `per_thread` columns.
int RowThreads(int64_t n, int per_thread, int max_threads);

// Paged attention (attention.cu). One thread block handles one (tile of query tokens, kv head,
// head chunk, key split). Its rows are (token, query head) pairs: the `heads_per_block` query
// heads of the chunk for each of `tokens_per_block` consecutive tokens, and they all share every
// K/V tile the block loads (tokens of the same sequence; the kernel walks runs of tokens of one
// sequence). Keys are processed in tiles of kAttentionTile (one key per lane in the softmax).
inline constexpr int kAttentionTile = 32;
inline constexpr int kAttentionThreads = 128;
// Output accumulators per thread: rows * head_dim <= kAttentionThreads * this.
inline constexpr int kAttentionAccPerThread = 16;
inline constexpr int kAttentionMaxHeadsPerBlock = 8;
inline constexpr int kAttentionMaxRowsPerBlock = 16;
inline constexpr int kAttentionMaxHeadDim = 256;
// Query tokens are tiled (tokens_per_block > 1) only in steps with at least this many tokens:
// those are prefill chunks, whose consecutive tokens share their keys. Decode steps keep one
// token per block, so that each block walks one sequence.
inline constexpr int64_t kAttentionMinTokensForTiling = 256;
// Split-K: a split never covers fewer keys than this (the partial results and the reduce
// kernel cost about one extra tile per split).
inline constexpr int64_t kAttentionMinKeysPerSplit = 256;
inline constexpr int kAttentionMaxSplits = 64;
// Blocks per SM wanted before splitting the key range is considered worthwhile.
inline constexpr int kAttentionBlocksPerSmTarget = 4;

struct AttentionGeometry {
  bool supported = false;  // head_dim % 4 == 0, 0 < head_dim <= 256, heads % kv_heads == 0
  int threads = kAttentionThreads;
  int64_t heads_per_block = 0;   // query heads of one kv group handled together
  int64_t head_chunks = 0;       // ceil(group / heads_per_block)
  int64_t tokens_per_block = 1;  // consecutive query tokens of one block (no split-K when > 1)
  int64_t token_tiles = 0;       // ceil(num_tokens / tokens_per_block)
  int64_t num_splits = 1;        // key-range splits; 1 = no partials, no reduce kernel
  int64_t keys_per_split = 0;    // multiple of kAttentionTile (when num_splits > 1)
  int64_t grid_x = 0;            // token_tiles * kv_heads * head_chunks
  int64_t smem_bytes = 0;        // dynamic shared memory of the main kernel
  // Partial results when num_splits > 1: f32 [num_tokens, num_heads, num_splits, head_dim]
  // accumulators plus f32 [num_tokens, num_heads, num_splits, 2] (running max, sum).
  int64_t partial_floats = 0;
};

// max_context: an upper bound of the keys any token attends to, known on the host without
// reading device memory: max_blocks * block_size, capped by the window when window > 0.
// The split count is chosen from it and the SM count only, so the same call shape always gets
// the same geometry (graph capture, determinism of a replayed step).
AttentionGeometry PlanAttention(int64_t num_tokens, int64_t num_heads, int64_t kv_heads,
                                int64_t head_dim, int64_t max_context, int num_sms);

// The host-side bound on the keys one token attends to (see PlanAttention).
int64_t AttentionMaxContext(int64_t max_blocks, int64_t block_size, int64_t window);

}  // namespace olmo::kernels::cuda
