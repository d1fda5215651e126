// Byte-pair encoding of one pre-tokenized piece. Two priority rules, both leftmost on ties:
// rank (tiktoken: merge the adjacent pair whose concatenated bytes have the lowest rank) and
// merges (HF tokenizer.json: the pair listed earliest in `merges`). O(n log n) per piece with a
// heap and lazy invalidation, so long pieces stay fast.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace olmo::tokenizer {

class Bpe {
 public:
  // token_bytes[id] = the token's raw bytes ("" for ids that are not BPE tokens).
  explicit Bpe(std::vector<std::string> token_bytes);

  // Declares merge `rank` (0 = first) of tokens a and b; switches to the merges rule.
  void AddMerge(int32_t a, int32_t b, int32_t rank);
  bool uses_merges() const { return !merges_.empty(); }

  // Token id of exactly these bytes, or -1.
  int32_t Find(std::string_view bytes) const;
  const std::string& bytes(int32_t id) const { return token_bytes_[id]; }
  int32_t size() const { return static_cast<int32_t>(token_bytes_.size()); }

  // Appends the ids of `piece` (non-empty). Every byte must have a single-byte token.
  void Encode(std::string_view piece, std::vector<int32_t>* out) const;

 private:
  // Priority of merging adjacent symbols (lower first) and the resulting id; false if none.
  bool Pair(std::string_view piece, size_t a_start, size_t a_len, int32_t a_id, size_t b_len,
            int32_t b_id, int64_t* priority, int32_t* merged) const;

  std::vector<std::string> token_bytes_;
  std::array<int32_t, 256> byte_ids_;  // id of each single byte (-1: none)
  absl::flat_hash_map<std::string, int32_t> by_bytes_;
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, id)
};

}  // namespace olmo::tokenizer
