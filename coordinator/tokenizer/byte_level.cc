#include "coordinator/tokenizer/byte_level.h"

#include <unordered_map>

namespace olmo::tokenizer {
namespace {

struct Tables {
  std::array<char32_t, 256> to_unicode{};
  std::unordered_map<char32_t, unsigned char> to_byte;
  Tables() {
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_unicode[b] = keep ? static_cast<char32_t>(b) : next++;
      to_byte[to_unicode[b]] = static_cast<unsigned char>(b);
    }
  }
};

const Tables& T() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t ByteToUnicode(unsigned char b) { return T().to_unicode[b]; }

std::optional<std::string> ByteLevelDecode(std::string_view s) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    if (p[i] < 0x80) {
      cp = p[i];
      i += 1;
    } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < s.size()) {
      cp = ((p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
      i += 2;
    } else {
      return std::nullopt;  // the alphabet stays below U+0800
    }
    auto it = T().to_byte.find(cp);
    if (it == T().to_byte.end()) return std::nullopt;
    out.push_back(static_cast<char>(it->second));
  }
  return out;
}

}  // namespace olmo::tokenizer
