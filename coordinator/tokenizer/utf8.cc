#include "coordinator/tokenizer/utf8.h"

namespace olmo::tokenizer {

size_t DecodeOne(std::string_view s, size_t* subpart, bool* truncated) {
  *truncated = false;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  unsigned char b0 = p[0];
  if (b0 < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *subpart = 1;
    return 0;
  }
  for (size_t i = 1; i < len; ++i) {
    if (i >= n) {  // valid so far, but cut off
      *subpart = i;
      *truncated = true;
      return 0;
    }
    unsigned char b = p[i];
    unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *subpart = i;
      return 0;
    }
  }
  return len;
}

size_t AppendLossy(std::string_view bytes, bool final, std::string* out) {
  size_t i = 0;
  while (i < bytes.size()) {
    size_t subpart = 0;
    bool truncated = false;
    size_t len = DecodeOne(bytes.substr(i), &subpart, &truncated);
    if (len > 0) {
      out->append(bytes.substr(i, len));
      i += len;
    } else if (truncated && !final) {
      return i;  // wait for more bytes
    } else {
      out->append("\xEF\xBF\xBD");
      i += subpart;
    }
  }
  return i;
}

std::string LossyUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  AppendLossy(bytes, true, &out);
  return out;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t subpart;
    bool truncated;
    size_t len = DecodeOne(s.substr(i), &subpart, &truncated);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

}  // namespace olmo::tokenizer
