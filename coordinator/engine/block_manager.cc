#include "coordinator/engine/block_manager.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace olmo::engine {

BlockManager::BlockManager(int64_t block_size, std::array<int64_t, kNumKvGroups> num_blocks)
    : block_size_(block_size) {
  for (int g = 0; g < kNumKvGroups; ++g) {
    ref_counts_[g].assign(static_cast<size_t>(num_blocks[g]), 0);
    free_[g].reserve(static_cast<size_t>(num_blocks[g]));
    for (int64_t b = num_blocks[g] - 1; b >= 0; --b) free_[g].push_back(static_cast<int32_t>(b));
  }
}

bool BlockManager::CanGrow(int64_t seq_id, int64_t num_tokens) const {
  int64_t need = BlocksFor(num_tokens);
  auto it = tables_.find(seq_id);
  for (int g = 0; g < kNumKvGroups; ++g) {
    int64_t have = it == tables_.end() ? 0 : static_cast<int64_t>(it->second[g].size());
    if (need - have > num_free(g)) return false;
  }
  return true;
}

absl::Status BlockManager::Grow(int64_t seq_id, int64_t num_tokens,
                                BlockTableDelta deltas[kNumKvGroups]) {
  if (!CanGrow(seq_id, num_tokens)) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("out of KV blocks: sequence %d needs %d blocks (free: full %d, sliding %d)",
                        seq_id, BlocksFor(num_tokens), num_free(kKvGroupFull),
                        num_free(kKvGroupSliding)));
  }
  Tables& t = tables_[seq_id];
  int64_t need = BlocksFor(num_tokens);
  for (int g = 0; g < kNumKvGroups; ++g) {
    while (static_cast<int64_t>(t[g].size()) < need) {
      int32_t b = free_[g].back();
      free_[g].pop_back();
      ++ref_counts_[g][b];
      t[g].push_back(b);
      deltas[g].append.push_back(b);
    }
  }
  return absl::OkStatus();
}

void BlockManager::Free(int64_t seq_id) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return;
  for (int g = 0; g < kNumKvGroups; ++g) {
    // Return in reverse so the lowest ids come back out first.
    for (auto b = it->second[g].rbegin(); b != it->second[g].rend(); ++b) {
      if (--ref_counts_[g][*b] == 0) free_[g].push_back(*b);
    }
  }
  tables_.erase(it);
}

const std::vector<int32_t>& BlockManager::table(int64_t seq_id, int group) const {
  static const std::vector<int32_t> kEmpty;
  auto it = tables_.find(seq_id);
  return it == tables_.end() ? kEmpty : it->second[group];
}

bool BlockManager::AllFree() const {
  for (int g = 0; g < kNumKvGroups; ++g) {
    if (num_free(g) != num_blocks(g)) return false;
    if (std::any_of(ref_counts_[g].begin(), ref_counts_[g].end(), [](int32_t c) { return c != 0; }))
      return false;
  }
  return true;
}

}  // namespace olmo::engine
