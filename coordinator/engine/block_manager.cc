#include "coordinator/engine/block_manager.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/str_format.h"

namespace olmo::engine {
namespace {

BlockHash Truncate(const unsigned char* digest) {
  BlockHash h;
  std::memcpy(&h.hi, digest, 8);
  std::memcpy(&h.lo, digest + 8, 8);
  return h;
}

}  // namespace

BlockHash PrefixSeed(std::string_view model_fingerprint, std::string_view cache_salt) {
  std::string buf;
  uint64_t n = model_fingerprint.size();
  buf.append(reinterpret_cast<const char*>(&n), sizeof(n));
  buf.append(model_fingerprint);
  buf.append(cache_salt);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(buf.data()), buf.size(), digest);
  return Truncate(digest);
}

BlockHash ChainHash(const BlockHash& parent, std::span<const int32_t> block_tokens) {
  std::string buf;
  buf.reserve(16 + block_tokens.size() * sizeof(int32_t));
  buf.append(reinterpret_cast<const char*>(&parent.hi), sizeof(parent.hi));
  buf.append(reinterpret_cast<const char*>(&parent.lo), sizeof(parent.lo));
  buf.append(reinterpret_cast<const char*>(block_tokens.data()),
             block_tokens.size() * sizeof(int32_t));
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(buf.data()), buf.size(), digest);
  return Truncate(digest);
}

BlockManager::BlockManager(int64_t block_size, std::array<int64_t, kNumKvGroups> num_blocks)
    : block_size_(block_size) {
  for (int g = 0; g < kNumKvGroups; ++g) {
    ref_counts_[g].assign(static_cast<size_t>(num_blocks[g]), 0);
    free_[g].reserve(static_cast<size_t>(num_blocks[g]));
    for (int64_t b = num_blocks[g] - 1; b >= 0; --b) free_[g].push_back(static_cast<int32_t>(b));
  }
}

int32_t BlockManager::Allocate(int group) {
  if (!free_[group].empty()) {
    int32_t b = free_[group].back();
    free_[group].pop_back();
    return b;
  }
  // Evict the least recently used unreferenced cached block; its prefix entry goes entirely.
  int32_t b = evictable_[group].front();
  evictable_[group].pop_front();
  lru_pos_[group].erase(b);
  BlockHash h = block_hash_[group].at(b);
  Entry entry = cached_.at(h);
  cached_.erase(h);
  for (int g = 0; g < kNumKvGroups; ++g) {
    int32_t other = entry[g];
    if (other < 0) continue;
    block_hash_[g].erase(other);
    if (g != group && ref_counts_[g][other] == 0) {  // unreferenced and no longer cached: free
      evictable_[g].erase(lru_pos_[g].at(other));
      lru_pos_[g].erase(other);
      free_[g].push_back(other);
    }
  }
  return b;
}

void BlockManager::Release(int group, int32_t block) {
  if (--ref_counts_[group][block] > 0) return;
  if (block_hash_[group].count(block)) {
    evictable_[group].push_back(block);
    lru_pos_[group][block] = std::prev(evictable_[group].end());
  } else {
    free_[group].push_back(block);
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
      int32_t b = Allocate(g);
      ++ref_counts_[g][b];
      t[g].push_back(b);
      deltas[g].append.push_back(b);
    }
  }
  return absl::OkStatus();
}

int64_t BlockManager::AcquireCached(int64_t seq_id, std::span<const BlockHash> hashes,
                                    BlockTableDelta deltas[kNumKvGroups]) {
  Tables& t = tables_[seq_id];
  int64_t matched = 0;
  for (const BlockHash& h : hashes) {
    auto it = cached_.find(h);
    if (it == cached_.end() || it->second[0] < 0 || it->second[1] < 0) break;
    for (int g = 0; g < kNumKvGroups; ++g) {
      int32_t b = it->second[g];
      if (ref_counts_[g][b] == 0) {  // leaves the evictable list
        evictable_[g].erase(lru_pos_[g].at(b));
        lru_pos_[g].erase(b);
      }
      ++ref_counts_[g][b];
      t[g].push_back(b);
      deltas[g].append.push_back(b);
    }
    ++matched;
  }
  return matched;
}

void BlockManager::Register(int64_t seq_id, int64_t index, const BlockHash& hash) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end() || cached_.count(hash)) return;  // unknown, or already cached
  Entry entry;
  for (int g = 0; g < kNumKvGroups; ++g) {
    if (index >= static_cast<int64_t>(it->second[g].size())) return;
    entry[g] = it->second[g][index];
    if (block_hash_[g].count(entry[g])) return;  // this block already holds another prefix
  }
  cached_[hash] = entry;
  for (int g = 0; g < kNumKvGroups; ++g) block_hash_[g][entry[g]] = hash;
}

void BlockManager::Free(int64_t seq_id) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return;
  for (int g = 0; g < kNumKvGroups; ++g) {
    // Release in reverse so the lowest ids come back out first.
    for (auto b = it->second[g].rbegin(); b != it->second[g].rend(); ++b) Release(g, *b);
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
