// BlockManager: KV block bookkeeping for one worker group (DESIGN.md §2). Two KV groups (full and
// sliding layers), each with its own pool of block ids, per-sequence block tables and reference
// counts. Block ids are the same on every rank of the group. v1 keeps every sliding block of a
// sequence (both groups grow alike); the prefix cache builds on the ref counts later.
#pragma once

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "common/plan.h"

namespace olmo::engine {

class BlockManager {
 public:
  BlockManager(int64_t block_size, std::array<int64_t, kNumKvGroups> num_blocks);

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks(int group) const { return static_cast<int64_t>(ref_counts_[group].size()); }
  int64_t num_free(int group) const { return static_cast<int64_t>(free_[group].size()); }

  // Blocks per group needed to hold `num_tokens` tokens.
  int64_t BlocksFor(int64_t num_tokens) const { return (num_tokens + block_size_ - 1) / block_size_; }
  // Whether `seq_id`'s tables can grow to hold `num_tokens` tokens now.
  bool CanGrow(int64_t seq_id, int64_t num_tokens) const;
  // Grows `seq_id`'s tables (creating them if needed) to hold `num_tokens` tokens and appends the
  // new block ids to `deltas[group].append`. ResourceExhausted (and no change) when a pool is short.
  absl::Status Grow(int64_t seq_id, int64_t num_tokens, BlockTableDelta deltas[kNumKvGroups]);
  // Drops the sequence's references; blocks whose count reaches 0 return to the free list.
  void Free(int64_t seq_id);

  bool Has(int64_t seq_id) const { return tables_.count(seq_id) != 0; }
  // The sequence's table in `group` (empty if unknown).
  const std::vector<int32_t>& table(int64_t seq_id, int group) const;
  int32_t ref_count(int group, int32_t block) const { return ref_counts_[group][block]; }
  // True when every block of both groups is free with ref count 0.
  bool AllFree() const;

 private:
  using Tables = std::array<std::vector<int32_t>, kNumKvGroups>;
  int64_t block_size_;
  std::array<std::vector<int32_t>, kNumKvGroups> ref_counts_;
  std::array<std::vector<int32_t>, kNumKvGroups> free_;  // stack; lowest ids handed out first
  std::unordered_map<int64_t, Tables> tables_;
};

}  // namespace olmo::engine
