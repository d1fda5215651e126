// Philox4x32-10 counter-based RNG (Salmon et al., SC'11), the same on CPU and CUDA.
// Sampling uses key = 64-bit seed, counter = (absolute position of the drawn token, draw index).
// Plain C++; under nvcc the functions are also device functions (kernels/cuda/sample.cu; the
// std::array members they use are constexpr, callable with --expt-relaxed-constexpr), with the
// same integer arithmetic and therefore the same results.
#pragma once

#include <array>
#include <cstdint>

#ifndef OLMO_HOST_DEVICE
#if defined(__CUDACC__)
#define OLMO_HOST_DEVICE __host__ __device__
#else
#define OLMO_HOST_DEVICE
#endif
#endif

namespace olmo {

using PhiloxCounter = std::array<uint32_t, 4>;

// Ten rounds of Philox4x32 on `counter` under `key` (key[0] = low 32 bits of the seed).
OLMO_HOST_DEVICE inline PhiloxCounter Philox4x32_10(PhiloxCounter ctr, uint64_t seed) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kM0) * ctr[0];
    uint64_t p1 = static_cast<uint64_t>(kM1) * ctr[2];
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ k0, lo1, hi0 ^ ctr[3] ^ k1, lo0};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// One uniform float in [0, 1) with 24 random bits, for the token at `position`, draw `index`.
OLMO_HOST_DEVICE inline float PhiloxUniform(uint64_t seed, uint64_t position, uint32_t index = 0) {
  PhiloxCounter c = Philox4x32_10(
      {static_cast<uint32_t>(position), static_cast<uint32_t>(position >> 32), index, 0u}, seed);
  return static_cast<float>(c[0] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace olmo
