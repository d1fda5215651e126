// Element types of checkpoint tensors and fixtures, and scalar conversions.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <optional>

namespace olmo {

enum class DType : uint8_t { kF32, kBF16, kF16, kI32, kI64 };

// Bytes per element.
constexpr int64_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  return 0;
}

// safetensors spelling: "F32", "BF16", "F16", "I32", "I64".
std::string_view DTypeName(DType t);
// Parses a safetensors dtype string; nullopt for any dtype this project does not load.
std::optional<DType> ParseDType(std::string_view s);

// BF16 -> F32 is exact: the bf16 bits are the high half of the f32.
inline float Bf16ToF32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// F32 -> BF16 with round-to-nearest-even; NaN stays NaN (quiet).
inline uint16_t F32ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// IEEE half -> F32 (exact, handles subnormals, inf, NaN).
float F16ToF32(uint16_t h);
// F32 -> IEEE half, round-to-nearest-even.
uint16_t F32ToF16(float f);

// Converts `n` elements of a floating dtype (F32, BF16, F16) to f32. `src` may be unaligned.
void ConvertToF32(const void* src, DType dtype, int64_t n, float* dst);

}  // namespace olmo
