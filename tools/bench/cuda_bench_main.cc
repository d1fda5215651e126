// olmo-bench-cuda: CUDA backend figures on the local GPU (prints; not a test). GEMM TFLOP/s at
// Olmo 7B shapes (bf16 weights, cuBLASLt) for m = 1..4096 (at m = 1 also weight GB/s), and decode
// attention over the paged f32 KV cache: batch 64, context 4096, 32 q heads, 8 kv heads, 128:
// effective GB/s = unique KV bytes / time. (32 q / 8 kv heads of 128: the GQA ratio of 32B.)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cuda/cuda_ops.h"

namespace {

using olmo::kernels::Ops;

template <typename F>
double TimeMs(F f, int iters) {
  f();
  cudaDeviceSynchronize();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a);
  for (int i = 0; i < iters; ++i) f();
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  return ms / iters;
}

}  // namespace

int main() {
  if (!olmo::kernels::CudaDeviceAvailable()) {
    std::printf("olmo-bench-cuda: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  auto ops_or = olmo::kernels::MakeCudaOps({0, cudaStreamLegacy});
  if (!ops_or.ok()) return 1;
  Ops& ops = **ops_or;

  struct Shape {
    const char* name;
    int64_t n, k;
  };
  for (const Shape& s : {Shape{"qkv 6144x4096", 6144, 4096}, Shape{"gate_up 22016x4096", 22016, 4096},
                         Shape{"down 4096x11008", 4096, 11008}}) {
    std::vector<uint16_t> w(static_cast<size_t>(s.n * s.k), 0x3c00);  // bf16 ~ 0.0078
    olmo::kernels::WeightView view{w.data(), olmo::DType::kBF16, s.n, s.k};
    auto packed = ops.PackWeight({&view, 1});
    if (!packed.ok()) return 1;
    for (int64_t m : {1, 64, 512, 4096}) {
      float *x = nullptr, *y = nullptr;
      cudaMalloc(&x, m * s.k * 4);
      cudaMalloc(&y, m * s.n * 4);
      cudaMemset(x, 0, m * s.k * 4);
      const double ms = TimeMs([&] { ops.Matmul({x, m, packed->get(), y}); }, 20);
      std::printf("gemm %-20s m %5lld: %8.3f ms  %7.1f TFLOP/s  weights %7.1f GB/s\n", s.name,
                  static_cast<long long>(m), ms, 2.0 * m * s.n * s.k / ms / 1e9,
                  s.n * s.k * 2.0 / ms / 1e6);
      cudaFree(x);
      cudaFree(y);
    }
  }

  const int64_t batch = 64, ctx = 4096, heads = 32, kvh = 8, D = 128, bs = 16;
  const int64_t max_blocks = ctx / bs, blocks = batch * max_blocks;
  const size_t cache_bytes = static_cast<size_t>(blocks * 2 * kvh * bs * D) * 4;
  float *cache = nullptr, *q = nullptr, *out = nullptr;
  int32_t *pos = nullptr, *seq = nullptr, *tables = nullptr;
  cudaMalloc(&cache, cache_bytes);
  cudaMemset(cache, 0, cache_bytes);
  cudaMalloc(&q, batch * heads * D * 4);
  cudaMemset(q, 0, batch * heads * D * 4);
  cudaMalloc(&out, batch * heads * D * 4);
  std::vector<int32_t> hpos(batch, static_cast<int32_t>(ctx - 1)), hseq(batch), htab(blocks);
  std::iota(hseq.begin(), hseq.end(), 0);
  std::iota(htab.begin(), htab.end(), 0);
  std::shuffle(htab.begin(), htab.end(), std::mt19937(1));
  cudaMalloc(&pos, batch * 4);
  cudaMalloc(&seq, batch * 4);
  cudaMalloc(&tables, blocks * 4);
  cudaMemcpy(pos, hpos.data(), batch * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(seq, hseq.data(), batch * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(tables, htab.data(), blocks * 4, cudaMemcpyHostToDevice);
  olmo::kernels::AttentionParams p{q, heads * D, out, batch, heads, pos, seq, tables,
                                   max_blocks, 0, 0.088f, {cache, blocks, kvh, bs, D}};
  const double ms = TimeMs([&] { ops.Attention(p); }, 10);
  std::printf("decode attention batch %lld ctx %lld (f32 KV %.2f GB): %.3f ms, %.0f GB/s "
              "effective\n", static_cast<long long>(batch), static_cast<long long>(ctx),
              cache_bytes / 1e9, ms, cache_bytes / ms / 1e6);
  return 0;
}
