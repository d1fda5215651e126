// GPT-2's byte <-> unicode alphabet used by HF ByteLevel vocabularies: bytes '!'..'~', 0xA1..0xAC
// and 0xAE..0xFF map to themselves; the other 68 bytes, in order, to U+0100..U+0143.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace olmo::tokenizer {

// The code point that stands for byte b.
char32_t ByteToUnicode(unsigned char b);
// Decodes a vocabulary string written in that alphabet back to raw bytes; nullopt if it holds a
// character outside the alphabet.
std::optional<std::string> ByteLevelDecode(std::string_view s);

}  // namespace olmo::tokenizer
