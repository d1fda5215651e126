// BlockManager: KV block bookkeeping for one worker group (DESIGN.md §2). Two KV groups (full and
// sliding layers), each with its own pool of block ids, per-sequence block tables and reference
// counts. Block ids are the same on every rank of the group. v1 keeps every sliding block of a
// sequence (both groups grow alike).
//
// Prefix cache: a full block is identified by a 128-bit hash chained over the token ids of every
// block up to it, seeded by the model fingerprint and an optional cache salt. Registered blocks
// are shared by later sequences with the same prefix (ref counts); when no sequence references
// them they stay cached and are evicted least-recently-used when a pool runs dry.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "common/plan.h"

namespace olmo::engine {

struct BlockHash {
  uint64_t hi = 0, lo = 0;
  bool operator==(const BlockHash& o) const { return hi == o.hi && lo == o.lo; }
};
struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const { return static_cast<size_t>(h.lo ^ (h.hi * 31)); }
};

// The chain seed: SHA-256 of the model fingerprint and the cache salt, truncated to 128 bits.
BlockHash PrefixSeed(std::string_view model_fingerprint, std::string_view cache_salt);
// Hash of one full block given its parent's hash: SHA-256(parent || token ids), truncated.
BlockHash ChainHash(const BlockHash& parent, std::span<const int32_t> block_tokens);

class BlockManager {
 public:
  BlockManager(int64_t block_size, std::array<int64_t, kNumKvGroups> num_blocks);

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks(int group) const { return static_cast<int64_t>(ref_counts_[group].size()); }
  // Blocks available to allocate: free plus cached ones no sequence references (evictable).
  int64_t num_free(int group) const {
    return static_cast<int64_t>(free_[group].size() + evictable_[group].size());
  }
  // Cached blocks no sequence references.
  int64_t num_cached_free(int group) const { return static_cast<int64_t>(evictable_[group].size()); }

  // Blocks per group needed to hold `num_tokens` tokens.
  int64_t BlocksFor(int64_t num_tokens) const { return (num_tokens + block_size_ - 1) / block_size_; }
  // Whether `seq_id`'s tables can grow to hold `num_tokens` tokens now.
  bool CanGrow(int64_t seq_id, int64_t num_tokens) const;
  // Grows `seq_id`'s tables (creating them if needed) to hold `num_tokens` tokens and appends the
  // new block ids to `deltas[group].append`. ResourceExhausted (and no change) when a pool is short.
  absl::Status Grow(int64_t seq_id, int64_t num_tokens, BlockTableDelta deltas[kNumKvGroups]);
  // Drops the sequence's references; unreferenced blocks return to the free list, or stay cached
  // (evictable) when registered in the prefix cache.
  void Free(int64_t seq_id);

  // Prefix cache. AcquireCached starts the (empty) tables of `seq_id` with the longest run of
  // cached blocks matching `hashes` (one per full block, in order), taking a reference on each,
  // appends their ids to `deltas` and returns how many blocks matched.
  int64_t AcquireCached(int64_t seq_id, std::span<const BlockHash> hashes,
                        BlockTableDelta deltas[kNumKvGroups]);
  // Records that block `index` of `seq_id`'s tables is full and holds the prefix `hash`.
  void Register(int64_t seq_id, int64_t index, const BlockHash& hash);

  bool Has(int64_t seq_id) const { return tables_.count(seq_id) != 0; }
  // The sequence's table in `group` (empty if unknown).
  const std::vector<int32_t>& table(int64_t seq_id, int group) const;
  int32_t ref_count(int group, int32_t block) const { return ref_counts_[group][block]; }
  // True when every block of both groups is free or cached-unreferenced with ref count 0.
  bool AllFree() const;

 private:
  using Tables = std::array<std::vector<int32_t>, kNumKvGroups>;
  using Entry = std::array<int32_t, kNumKvGroups>;  // a cached prefix's block id per group
  int32_t Allocate(int group);
  void Release(int group, int32_t block);

  int64_t block_size_;
  std::array<std::vector<int32_t>, kNumKvGroups> ref_counts_;
  std::array<std::vector<int32_t>, kNumKvGroups> free_;  // stack; lowest ids handed out first
  std::unordered_map<int64_t, Tables> tables_;
  // Prefix cache: hash -> blocks; block -> hash; unreferenced cached blocks in LRU order.
  std::unordered_map<BlockHash, Entry, BlockHashHasher> cached_;
  std::array<std::unordered_map<int32_t, BlockHash>, kNumKvGroups> block_hash_;
  std::array<std::list<int32_t>, kNumKvGroups> evictable_;  // front = least recently used
  std::array<std::unordered_map<int32_t, std::list<int32_t>::iterator>, kNumKvGroups> lru_pos_;
};

}  // namespace olmo::engine
