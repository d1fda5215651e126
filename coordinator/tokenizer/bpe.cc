#include "coordinator/tokenizer/bpe.h"

#include <queue>

namespace olmo::tokenizer {

Bpe::Bpe(std::vector<std::string> token_bytes) : token_bytes_(std::move(token_bytes)) {
  byte_ids_.fill(-1);
  by_bytes_.reserve(token_bytes_.size());
  for (size_t i = 0; i < token_bytes_.size(); ++i) {
    if (token_bytes_[i].empty()) continue;
    auto [it, inserted] = by_bytes_.emplace(token_bytes_[i], static_cast<int32_t>(i));
    if (inserted && token_bytes_[i].size() == 1) {
      byte_ids_[static_cast<unsigned char>(token_bytes_[i][0])] = static_cast<int32_t>(i);
    }
  }
}

void Bpe::AddMerge(int32_t a, int32_t b, int32_t rank) {
  auto it = by_bytes_.find(token_bytes_[a] + token_bytes_[b]);
  if (it == by_bytes_.end()) return;
  uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  merges_.try_emplace(key, rank, it->second);
}

int32_t Bpe::Find(std::string_view bytes) const {
  if (bytes.size() == 1) return byte_ids_[static_cast<unsigned char>(bytes[0])];
  auto it = by_bytes_.find(absl::string_view(bytes.data(), bytes.size()));
  return it == by_bytes_.end() ? -1 : it->second;
}

bool Bpe::Pair(std::string_view piece, size_t a_start, size_t a_len, int32_t a_id, size_t b_len,
               int32_t b_id, int64_t* priority, int32_t* merged) const {
  if (!merges_.empty()) {
    uint64_t key =
        (static_cast<uint64_t>(static_cast<uint32_t>(a_id)) << 32) | static_cast<uint32_t>(b_id);
    auto it = merges_.find(key);
    if (it == merges_.end()) return false;
    *priority = it->second.first;
    *merged = it->second.second;
    return true;
  }
  std::string_view cat = piece.substr(a_start, a_len + b_len);
  auto it = by_bytes_.find(absl::string_view(cat.data(), cat.size()));
  if (it == by_bytes_.end()) return false;
  *priority = it->second;  // tiktoken: rank == id
  *merged = it->second;
  return true;
}

void Bpe::Encode(std::string_view piece, std::vector<int32_t>* out) const {
  if (merges_.empty()) {
    int32_t whole = Find(piece);
    if (whole >= 0) {  // every token BPE-encodes to itself under the rank rule
      out->push_back(whole);
      return;
    }
  }
  const size_t n = piece.size();
  struct Sym {
    size_t start, len;
    int32_t id;
    int prev, next;
    uint32_t version;
  };
  thread_local std::vector<Sym> s;  // scratch reused across pieces (no per-piece allocation)
  s.resize(n);
  for (size_t i = 0; i < n; ++i) {
    s[i] = {i, 1, Find(piece.substr(i, 1)), static_cast<int>(i) - 1,
            i + 1 < n ? static_cast<int>(i + 1) : -1, 0};
  }
  // Heap entries: (priority, left position, left version, right version).
  struct Cand {
    int64_t priority;
    int left;
    uint32_t lv, rv;
    int32_t merged;
    bool operator>(const Cand& o) const {
      return priority != o.priority ? priority > o.priority : left > o.left;
    }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int left) {
    if (left < 0) return;
    int right = s[left].next;
    if (right < 0) return;
    int64_t pr;
    int32_t merged;
    if (Pair(piece, s[left].start, s[left].len, s[left].id, s[right].len, s[right].id, &pr,
             &merged)) {
      heap.push({pr, left, s[left].version, s[right].version, merged});
    }
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int>(i));
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& a = s[c.left];
    if (a.version != c.lv || a.next < 0) continue;
    Sym& b = s[a.next];
    if (b.version != c.rv) continue;
    // Merge b into a.
    a.len += b.len;
    a.id = c.merged;
    ++a.version;
    ++b.version;
    a.next = b.next;
    if (b.next >= 0) s[b.next].prev = c.left;
    b.len = 0;
    push(a.prev);
    push(c.left);
  }
  for (int i = 0; i >= 0 && n > 0; i = s[i].next) out->push_back(s[i].id);
}

}  // namespace olmo::tokenizer
