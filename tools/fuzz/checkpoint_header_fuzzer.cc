// libFuzzer entry: the input is a whole safetensors file image (8-byte length + header + data).
#include <cstdint>
#include <string_view>

#include "worker/checkpoint/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > size - 8) return 0;
  std::string_view header(reinterpret_cast<const char*>(data + 8), n);
  auto r = olmo::checkpoint::ParseSafetensorsHeader(header, static_cast<int64_t>(size - 8 - n),
                                                     "fuzz");
  if (r.ok()) {
    for (const auto& t : *r) {
      if (t.offset < 0 || t.offset + t.nbytes > static_cast<int64_t>(size - 8 - n)) __builtin_trap();
    }
  }
  return 0;
}
