// olmo-bench-cuda: CUDA backend figures on the local GPU (prints; not a test).
//  - GEMM TFLOP/s at Olmo 7B shapes (bf16 weights via cuBLASLt, f32 activations rounded to bf16
//    in the timed call) for m = 1, 64, 512, 4096; at small m also the weight-read GB/s.
//  - Decode attention over the paged f32 KV cache, batch 64 x context 4096, 32 q heads of 128
//    (7B: MHA with 32 kv heads; also GQA 32/8 as in 32B), and batch 1 (the split-K path):
//    effective GB/s = KV bytes the step must read / time; f32 and bf16 KV (--kv-dtype bf16).
//  - Sampling (the Sample op) over [rows, 100278] logits: greedy, top-k 50, top-p 0.9 (the
//    full-row sort) at 1 and 64 rows; SampleSlice (vocab-parallel sampling) over a TP 8 slice
//    (12535 ids): greedy and top-k 50, with the report bytes per row against the logits row.
// Timed with cudaEvents on the ops' stream after a warm-up call.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch_geometry.h"

namespace {

using olmo::kernels::Ops;

// Mean ms per call of f() over `iters` calls after one warm-up call.
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
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / iters;
}

void BenchGemm(Ops& ops) {
  struct Shape {
    const char* name;
    int64_t n, k;
  };
  for (const Shape& s :
       {Shape{"qkv 12288x4096", 12288, 4096}, Shape{"o 4096x4096", 4096, 4096},
        Shape{"gate_up 22016x4096", 22016, 4096}, Shape{"down 4096x11008", 4096, 11008}}) {
    std::vector<uint16_t> w(static_cast<size_t>(s.n * s.k), 0x3c00);  // bf16 0.0078
    olmo::kernels::WeightView view{w.data(), olmo::DType::kBF16, s.n, s.k};
    auto packed = ops.PackWeight({&view, 1});
    if (!packed.ok()) {
      std::printf("PackWeight failed: %s\n", packed.status().ToString().c_str());
      return;
    }
    for (int64_t m : {1, 64, 512, 4096}) {
      float *x = nullptr, *y = nullptr;
      cudaMalloc(&x, m * s.k * 4);
      cudaMalloc(&y, m * s.n * 4);
      cudaMemset(x, 0, m * s.k * 4);
      const double ms = TimeMs([&] { ops.Matmul({x, m, packed->get(), y}); }, 20);
      std::printf("gemm %-20s m %5lld: %8.3f ms %7.1f TFLOP/s  weights %7.1f GB/s\n", s.name,
                  static_cast<long long>(m), ms, 2.0 * m * s.n * s.k / ms / 1e9,
                  s.n * s.k * 2.0 / ms / 1e6);
      cudaFree(x);
      cudaFree(y);
    }
  }
}

void BenchAttention(Ops& ops, int64_t batch, int64_t ctx, int64_t heads, int64_t kvh, int sms,
                    olmo::DType kv_dtype = olmo::DType::kF32) {
  const int64_t D = 128, bs = 16;
  const int64_t max_blocks = ctx / bs, blocks = batch * max_blocks;
  const size_t cache_bytes =
      static_cast<size_t>(blocks * 2 * kvh * bs * D) * olmo::DTypeSize(kv_dtype);
  void* cache = nullptr;
  float *q = nullptr, *out = nullptr;
  int32_t *pos = nullptr, *seq = nullptr, *tables = nullptr;
  if (cudaMalloc(&cache, cache_bytes) != cudaSuccess) {
    std::printf("attention: no memory for %.2f GB of KV\n", cache_bytes / 1e9);
    return;
  }
  cudaMemset(cache, 0, cache_bytes);
  cudaMalloc(&q, batch * heads * D * 4);
  cudaMemset(q, 0, batch * heads * D * 4);
  cudaMalloc(&out, batch * heads * D * 4);
  std::vector<int32_t> hpos(batch, static_cast<int32_t>(ctx - 1)), hseq(batch), htab(blocks);
  std::iota(hseq.begin(), hseq.end(), 0);
  std::iota(htab.begin(), htab.end(), 0);
  std::shuffle(htab.begin(), htab.end(), std::mt19937(1));  // paged: blocks scattered
  cudaMalloc(&pos, batch * 4);
  cudaMalloc(&seq, batch * 4);
  cudaMalloc(&tables, blocks * 4);
  cudaMemcpy(pos, hpos.data(), batch * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(seq, hseq.data(), batch * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(tables, htab.data(), blocks * 4, cudaMemcpyHostToDevice);
  olmo::kernels::AttentionParams p{q,          heads * D, out,    batch,
                                   heads,      pos,       seq,    tables,
                                   max_blocks, 0,         0.088f, {cache, blocks, kvh, bs, D, kv_dtype}};
  const auto geo = olmo::kernels::cuda::PlanAttention(batch, heads, kvh, D, ctx, sms);
  const double ms = TimeMs([&] { ops.Attention(p); }, 20);
  std::printf(
      "decode attention batch %3lld ctx %5lld heads %2lld/%2lld (%s KV %.2f GB, "
      "%lld splits): %.3f ms, %.0f GB/s effective\n",
      static_cast<long long>(batch), static_cast<long long>(ctx), static_cast<long long>(heads),
      static_cast<long long>(kvh), kv_dtype == olmo::DType::kBF16 ? "bf16" : "f32",
      cache_bytes / 1e9, static_cast<long long>(geo.num_splits), ms,
      cache_bytes / ms / 1e6);
  cudaFree(cache);
  cudaFree(q);
  cudaFree(out);
  cudaFree(pos);
  cudaFree(seq);
  cudaFree(tables);
}

void BenchSample(Ops& ops) {
  const int64_t V = 100278;
  for (int64_t rows : {1, 64}) {
    std::vector<float> logits(static_cast<size_t>(rows * V));
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (float& x : logits) x = nd(rng);
    float *dlogits = nullptr, *dlp = nullptr;
    int32_t* dids = nullptr;
    olmo::kernels::SampleRowParams* drows = nullptr;
    cudaMalloc(&dlogits, logits.size() * 4);
    cudaMemcpy(dlogits, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice);
    cudaMalloc(&dlp, rows * 4);
    cudaMalloc(&dids, rows * 4);
    cudaMalloc(&drows, rows * sizeof(olmo::kernels::SampleRowParams));
    struct Mode {
      const char* name;
      float temperature;
      int32_t top_k;
      float top_p;
    };
    for (const Mode& m : {Mode{"greedy", 0.0f, 0, 1.0f}, Mode{"top-k 50", 0.8f, 50, 1.0f},
                          Mode{"top-p 0.9", 0.8f, 0, 0.9f}}) {
      std::vector<olmo::kernels::SampleRowParams> rp(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) {
        rp[r].temperature = m.temperature;
        rp[r].top_k = m.top_k;
        rp[r].top_p = m.top_p;
        rp[r].seed = 7;
        rp[r].position = r;
      }
      cudaMemcpy(drows, rp.data(), rp.size() * sizeof(rp[0]), cudaMemcpyHostToDevice);
      olmo::kernels::SampleParams p;
      p.logits = dlogits;
      p.rows = rows;
      p.vocab = V;
      p.row_params = drows;
      p.token_ids = dids;
      p.logprobs = dlp;
      const double ms = TimeMs([&] { ops.Sample(p); }, 10);
      std::printf("sample %-10s rows %3lld x vocab %lld: %.3f ms\n", m.name,
                  static_cast<long long>(rows), static_cast<long long>(V), ms);
    }
    cudaFree(dlogits);
    cudaFree(dlp);
    cudaFree(dids);
    cudaFree(drows);
  }
}

void BenchSampleSlice(Ops& ops) {
  const int64_t V = 12535, N = 5;  // a TP-8 slice of the Olmo vocab; 5 top logprobs
  for (int64_t rows : {1, 64}) {
    std::vector<float> logits(static_cast<size_t>(rows * V));
    std::mt19937 rng(4);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (float& x : logits) x = nd(rng);
    float* dlogits = nullptr;
    char* out = nullptr;  // every output, 8-byte aligned per array
    olmo::kernels::SampleRowParams* drows = nullptr;
    cudaMalloc(&dlogits, logits.size() * 4);
    cudaMemcpy(dlogits, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice);
    cudaMalloc(&drows, rows * sizeof(olmo::kernels::SampleRowParams));
    cudaMalloc(&out, rows * (4 + 4 + 8 + N * 8 + 51 * 12) + 64);
    for (int32_t top_k : {0, 50}) {
      const int64_t C = top_k + 1;
      std::vector<olmo::kernels::SampleRowParams> rp(static_cast<size_t>(rows));
      for (auto& r : rp) {
        r.temperature = top_k == 0 ? 0.0f : 0.8f;
        r.top_k = top_k;
        r.num_logprobs = N;
      }
      cudaMemcpy(drows, rp.data(), rp.size() * sizeof(rp[0]), cudaMemcpyHostToDevice);
      olmo::kernels::SampleSliceParams p;
      p.logits = dlogits;
      p.rows = rows;
      p.vocab = V;
      p.vocab_begin = 3 * V;
      p.row_params = drows;
      p.max_logprobs = N;
      p.max_candidates = C;
      char* at = out;
      auto take = [&](int64_t bytes) {
        char* x = at;
        at += (bytes + 7) / 8 * 8;
        return x;
      };
      p.max = reinterpret_cast<float*>(take(rows * 4));
      p.argmax = reinterpret_cast<int32_t*>(take(rows * 4));
      p.sum_exp = reinterpret_cast<double*>(take(rows * 8));
      p.top_ids = reinterpret_cast<int32_t*>(take(rows * N * 4));
      p.top_raw = reinterpret_cast<float*>(take(rows * N * 4));
      p.cand_ids = reinterpret_cast<int32_t*>(take(rows * C * 4));
      p.cand_z = reinterpret_cast<float*>(take(rows * C * 4));
      p.cand_raw = reinterpret_cast<float*>(take(rows * C * 4));
      const double ms = TimeMs([&] { ops.SampleSlice(p); }, 10);
      std::printf("sample slice %-8s rows %3lld x slice %lld: %.3f ms, report %lld B/row "
                  "(logits row %lld B)\n",
                  top_k == 0 ? "greedy" : "top-k 50", static_cast<long long>(rows),
                  static_cast<long long>(V), ms, static_cast<long long>((at - out) / rows),
                  static_cast<long long>(V * 4));
    }
    cudaFree(dlogits);
    cudaFree(drows);
    cudaFree(out);
  }
}

}  // namespace

int main() {
  if (!olmo::kernels::CudaDeviceAvailable()) {
    std::printf("olmo-bench-cuda: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device: %s, %d SMs, %.0f GB\n", prop.name, prop.multiProcessorCount,
              prop.totalGlobalMem / 1e9);
  // The legacy default stream: the cudaEvents above are recorded on it too.
  // Both attention kernels: kWarp (the default, verified on a GPU) and kTiled (split-K).
  for (auto kernel : {olmo::kernels::CudaAttention::kWarp, olmo::kernels::CudaAttention::kTiled}) {
    auto ops_or = olmo::kernels::MakeCudaOps({0, cudaStreamLegacy, kernel});
    if (!ops_or.ok()) {
      std::printf("MakeCudaOps: %s\n", ops_or.status().ToString().c_str());
      return 1;
    }
    Ops& ops = **ops_or;
    std::printf("attention kernel: %s\n",
                kernel == olmo::kernels::CudaAttention::kWarp ? "warp (default)" : "tiled");
    BenchAttention(ops, 64, 4096, 32, 32, prop.multiProcessorCount);  // 7B MHA
    BenchAttention(ops, 64, 4096, 32, 8, prop.multiProcessorCount);   // GQA 4:1
    BenchAttention(ops, 1, 32768, 32, 8, prop.multiProcessorCount);   // split-K
    BenchAttention(ops, 8, 16384, 32, 32, prop.multiProcessorCount);
    if (kernel == olmo::kernels::CudaAttention::kWarp) {
      BenchAttention(ops, 64, 4096, 32, 8, prop.multiProcessorCount, olmo::DType::kBF16);
      BenchSample(ops);
      BenchSampleSlice(ops);
    }
    if (kernel == olmo::kernels::CudaAttention::kTiled) BenchGemm(ops);
  }
  const cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    std::printf("CUDA error: %s\n", cudaGetErrorString(err));
    return 1;
  }
  return 0;
}
