// Memory read bandwidth: `threads` threads each summing its share of a buffer of `bytes` bytes
// with AVX2 (4 independent accumulators), best of `reps`, in GB/s (1e9 bytes/s).
#pragma once

#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace olmo::bench {

inline double ReadBandwidthGBs(int64_t bytes, int threads, int reps = 5) {
  // 2 MiB aligned and on transparent huge pages, as the packed weights are (matmul.cc).
  const int64_t n = bytes / (int64_t{2} << 20) * (int64_t{2} << 20) / 4;
  float* buf = static_cast<float*>(std::aligned_alloc(size_t{2} << 20, static_cast<size_t>(n) * 4));
  madvise(buf, static_cast<size_t>(n) * 4, MADV_HUGEPAGE);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 7);
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      int64_t chunk = n / nt / 32 * 32;
      int64_t begin = t * chunk, end = t == nt - 1 ? n : begin + chunk;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t i = begin; i < end; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(buf + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(buf + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(buf + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(buf + i + 24));
      }
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
      for (float v : lanes) total += v;
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink + total;
    best = std::max(best, static_cast<double>(n) * 4 / s / 1e9);
  }
  std::free(buf);
  return best;
}

}  // namespace olmo::bench
