// UTF-8 validation and lossy decoding with the "maximal subpart" rule (Unicode §3.9, WHATWG, Rust
// String::from_utf8_lossy): each maximal invalid subsequence becomes one U+FFFD.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace olmo::tokenizer {

// Length of the valid UTF-8 sequence starting at s[0] (1..4), or 0 if s[0] does not start one;
// `*subpart` receives the length of the maximal subpart to replace when invalid (>= 1), or the
// number of bytes available when the sequence is a valid but truncated prefix (then returns 0
// and *truncated = true).
size_t DecodeOne(std::string_view s, size_t* subpart, bool* truncated);

// Appends the lossy decoding of `bytes` to `out`. When `final` is false, a trailing valid but
// incomplete sequence is not decoded; the number of bytes consumed is returned.
size_t AppendLossy(std::string_view bytes, bool final, std::string* out);

// Lossy decoding of a whole byte string.
std::string LossyUtf8(std::string_view bytes);

bool IsValidUtf8(std::string_view s);

}  // namespace olmo::tokenizer
