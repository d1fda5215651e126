// olmo-bench-kernels: the CPU matmul on Olmo 3 7B shapes beside plain OpenBLAS sgemm, and the
// machine's read bandwidth. Prints GFLOP/s, weight GB/s and, at m = 1, the fraction of the
// bandwidth roofline. A benchmark, not a test.
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "tools/bench/bandwidth.h"
#include "kernels/cpu/cpu_kernels.h"

namespace {

using Clock = std::chrono::steady_clock;


template <typename F>
double TimeIt(F&& f, double min_seconds = 0.3) {
  f();  // warm-up
  int reps = 0;
  auto t0 = Clock::now();
  double s = 0;
  do {
    f();
    ++reps;
    s = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (s < min_seconds);
  return s / reps;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  int threads = omp_get_num_procs();
  double bw = olmo::bench::ReadBandwidthGBs(int64_t{1} << 30, threads);
  std::printf("read bandwidth, %d threads over 1 GiB: %.1f GB/s\n\n", threads, bw);
  struct Shape {
    const char* name;
    int64_t n, k;
  };
  std::vector<Shape> shapes = {{"qkv", 3 * 4096, 4096}, {"o_proj", 4096, 4096},
                               {"gate_up", 2 * 11008, 4096}, {"down", 4096, 11008}};
  if (!quick) shapes.push_back({"lm_head", 100278, 4096});
  std::vector<int64_t> ms = quick ? std::vector<int64_t>{1, 8, 128}
                                  : std::vector<int64_t>{1, 8, 32, 128, 512};
  std::printf("%-8s %5s | %10s %9s %8s | %10s | %10s %8s\n", "shape", "m", "packed GF/s",
              "GB/s", "roofline", "blas-path", "sgemm GF/s", "packed/sgemm");
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (const Shape& s : shapes) {
    std::vector<uint16_t> w_bf16(static_cast<size_t>(s.n * s.k));
    std::vector<float> w_f32(w_bf16.size());
    for (size_t i = 0; i < w_bf16.size(); ++i) {
      w_bf16[i] = olmo::F32ToBf16(nd(rng) * 0.02f);
      w_f32[i] = olmo::Bf16ToF32(w_bf16[i]);
    }
    olmo::kernels::WeightView view{w_bf16.data(), olmo::DType::kBF16, s.n, s.k};
    auto packed = olmo::kernels::cpu::PackWeight(std::span(&view, 1),
                                                 olmo::kernels::MatmulPath::kPacked);
    auto blas = olmo::kernels::cpu::PackWeight(std::span(&view, 1),
                                               olmo::kernels::MatmulPath::kBlas);
    for (int64_t m : ms) {
      std::vector<float> x(static_cast<size_t>(m * s.k)), y(static_cast<size_t>(m * s.n));
      for (auto& v : x) v = nd(rng);
      double flops = 2.0 * m * s.n * s.k;
      double tp = TimeIt([&] { olmo::kernels::cpu::Matmul({x.data(), m, packed->get(), y.data()}, threads); });
      double tb = TimeIt([&] { olmo::kernels::cpu::Matmul({x.data(), m, blas->get(), y.data()}, threads); });
      openblas_set_num_threads(threads);
      double ts = TimeIt([&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, s.n, s.k, 1.0f, x.data(), s.k,
                    w_f32.data(), s.k, 0.0f, y.data(), s.n);
      });
      double gbs = s.n * s.k * 2.0 / tp / 1e9;
      std::printf("%-8s %5lld | %10.1f %9.1f %7.0f%% | %10.1f | %10.1f %7.0f%%\n", s.name,
                  static_cast<long long>(m), flops / tp / 1e9, gbs, 100 * gbs / bw,
                  flops / tb / 1e9, flops / ts / 1e9, 100 * ts / tp);
    }
  }
  return 0;
}
