// How many paged-KV blocks fit on one device: pure host arithmetic, unit tested without a GPU.
//
//   budget   = floor(free_bytes * memory_fraction)
//   kv_bytes = budget - weight_bytes - activation_bytes - reserve_bytes
//   blocks   = floor(kv_bytes / kv_bytes_per_block)
//
// free_bytes is the device's free memory before this worker loads anything (cudaMemGetInfo);
// memory_fraction leaves the rest to other processes and to allocator fragmentation.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace olmo::kernels::cuda {

struct MemoryPlanInput {
  int64_t free_bytes = 0;          // device memory free before loading
  int64_t weight_bytes = 0;        // this rank's weight shard, as stored on the device
  int64_t activation_bytes = 0;    // workspace of the largest step (activations, GEMM, partials)
  int64_t reserve_bytes = 0;       // anything else kept free (cuBLAS workspace, graphs, NCCL)
  int64_t kv_bytes_per_block = 0;  // K and V of every layer of this rank for one block
  double memory_fraction = 0.9;    // share of free_bytes this worker may use, in (0, 1]
  int64_t min_blocks = 1;          // fewer than this is an error (e.g. one max-length sequence)
};

struct MemoryPlan {
  int64_t num_kv_blocks = 0;
  int64_t kv_bytes = 0;      // num_kv_blocks * kv_bytes_per_block
  int64_t budget_bytes = 0;  // floor(free_bytes * memory_fraction)
  int64_t spare_bytes = 0;   // budget left after weights, activations, reserve and KV
};

// InvalidArgument for a bad input (negative sizes, fraction outside (0, 1], block size <= 0);
// ResourceExhausted naming every term when fewer than min_blocks blocks fit.
absl::StatusOr<MemoryPlan> PlanKvMemory(const MemoryPlanInput& in);

// Bytes of one KV block over `layers` layers: 2 (k, v) * kv_heads * block_size * head_dim *
// dtype_bytes per layer (the KvLayerView layout of kernels/ops.h).
int64_t KvBytesPerBlock(int64_t layers, int64_t kv_heads, int64_t block_size, int64_t head_dim,
                        int64_t dtype_bytes);

// Rows per pass of the sampling ops (sample.cu, sample_slice.cu): their device workspaces hold
// at most this many rows of the vocabulary, whatever the batch.
inline constexpr int64_t kSampleRowsPerPass = 64;

// An upper bound of the Sample and SampleSlice workspaces together (bytes) for rows of `vocab`
// logits: Sample keeps z, a key and two ids per logit of a pass (16 bytes) and cub's sort
// storage, bounded here by 16 more; SampleSlice keeps z (4). The gpu tests check the real sizes
// against it. 0 for vocab <= 0.
int64_t SamplingWorkspaceBound(int64_t vocab);

}  // namespace olmo::kernels::cuda
