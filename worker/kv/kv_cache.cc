#include "worker/kv/kv_cache.h"

namespace olmo::kv {

KvCache::KvCache(const KvCacheShape& shape, const std::vector<LayerType>& layer_types,
                 int64_t layer_begin, int64_t layer_end, kernels::Ops* ops)
    : shape_(shape), layer_begin_(layer_begin), use_ops_(ops != nullptr) {
  std::array<int64_t, kNumKvGroups> count = {0, 0};
  for (int64_t l = layer_begin; l < layer_end; ++l) {
    int g = GroupOf(layer_types[l]);
    layer_group_.push_back(g);
    layer_index_.push_back(count[g]++);
  }
  for (int g = 0; g < kNumKvGroups; ++g) {
    bytes_[g] = count[g] * shape.num_blocks[g] * block_bytes();
    if (!use_ops_) {
      host_[g].assign(static_cast<size_t>((bytes_[g] + 3) / 4), 0.0f);
      continue;
    }
    backend_[g].set_ops(ops);
    if (backend_[g].resize(static_cast<size_t>(bytes_[g])))
      ops->Zero(backend_[g].data(), bytes_[g]);
  }
}

bool KvCache::ok() const {
  if (!use_ops_) return true;
  for (int g = 0; g < kNumKvGroups; ++g) {
    if (bytes_[g] > 0 && backend_[g].data() == nullptr) return false;
  }
  return true;
}

kernels::KvLayerView KvCache::Layer(int64_t layer) {
  int64_t local = layer - layer_begin_;
  int g = layer_group_[local];
  const int64_t per_layer = shape_.num_blocks[g] * block_bytes();
  kernels::KvLayerView v;
  uint8_t* base = use_ops_ ? backend_[g].data() : reinterpret_cast<uint8_t*>(host_[g].data());
  v.data = base + layer_index_[local] * per_layer;
  v.dtype = shape_.dtype;
  v.num_blocks = shape_.num_blocks[g];
  v.kv_heads = shape_.kv_heads;
  v.block_size = shape_.block_size;
  v.head_dim = shape_.head_dim;
  return v;
}

int64_t KvCache::block_bytes() const {
  return 2 * shape_.kv_heads * shape_.block_size * shape_.head_dim * shape_.element_bytes();
}

int64_t KvCache::total_bytes() const {
  int64_t n = 0;
  for (int64_t b : bytes_) n += b;
  return n;
}

std::array<int64_t, kNumKvGroups> KvCache::BlocksForBytes(int64_t bytes, const KvCacheShape& shape,
                                                          const std::vector<LayerType>& types,
                                                          int64_t layer_begin, int64_t layer_end) {
  // v1 keeps every sliding block, so both groups get the same number of blocks: each block id
  // costs one block in every local layer.
  int64_t layers = layer_end - layer_begin;
  int64_t per_block =
      2 * shape.kv_heads * shape.block_size * shape.head_dim * shape.element_bytes() * layers;
  int64_t n = per_block > 0 ? bytes / per_block : 0;
  (void)types;
  return {n, n};
}

}  // namespace olmo::kv
