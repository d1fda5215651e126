// KvCache: this rank's KV bytes (DESIGN.md §2). One pool per KV group (full-attention layers and
// sliding layers); within a group, [group_layers_local][num_blocks][2][kv_heads_local][block_size]
// [head_dim] elements of shape.dtype (f32, or bf16 at half the bytes). Block ids are the same on
// every rank.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "common/model_config.h"
#include "common/plan.h"
#include "kernels/ops.h"

namespace olmo::kv {

struct KvCacheShape {
  int64_t kv_heads = 0;   // local kv heads
  int64_t head_dim = 0;
  int64_t block_size = 0; // tokens per block
  std::array<int64_t, kNumKvGroups> num_blocks = {0, 0};
  DType dtype = DType::kF32;  // element type: kF32 or kBF16
  int64_t element_bytes() const { return DTypeSize(dtype); }
};

class KvCache {
 public:
  // `layer_types[i]` for the global layers [layer_begin, layer_end) this rank holds. The bytes
  // live in `ops`'s memory (device memory on CUDA); null ops: host memory.
  KvCache(const KvCacheShape& shape, const std::vector<LayerType>& layer_types,
          int64_t layer_begin, int64_t layer_end, kernels::Ops* ops = nullptr);
  // False when the backend could not allocate the blocks.
  bool ok() const;

  const KvCacheShape& shape() const { return shape_; }
  static int GroupOf(LayerType t) { return t == LayerType::kFull ? kKvGroupFull : kKvGroupSliding; }
  // View of the cache of global layer `layer` (must be held by this rank).
  kernels::KvLayerView Layer(int64_t layer);
  // Bytes of one block of one layer (k and v).
  int64_t block_bytes() const;
  int64_t total_bytes() const;
  // Blocks per group that fit `bytes` for the given layers (at least 0).
  static std::array<int64_t, kNumKvGroups> BlocksForBytes(int64_t bytes, const KvCacheShape& shape,
                                                          const std::vector<LayerType>& types,
                                                          int64_t layer_begin, int64_t layer_end);

 private:
  KvCacheShape shape_;
  int64_t layer_begin_;
  std::vector<int> layer_group_;          // per local layer
  std::vector<int64_t> layer_index_;      // index of the local layer inside its group
  std::array<std::vector<float>, kNumKvGroups> host_;  // without ops (float: aligned storage)
  std::array<kernels::OpsBuffer<uint8_t>, kNumKvGroups> backend_;  // with ops
  std::array<int64_t, kNumKvGroups> bytes_ = {0, 0};
  bool use_ops_ = false;
};

}  // namespace olmo::kv
