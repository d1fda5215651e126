// olmo-bench-model: end-to-end CPU model throughput on a checkpoint (e.g. the 7B-shaped 2-layer
// one from `make-tiny --preset 7b-2layer`): prefill tokens/s, decode tokens/s at several batch
// sizes, weight bytes read per step, the machine's read bandwidth, and decode's fraction of the
// bandwidth roofline (weight bytes per step / step time / bandwidth). A benchmark, not a test.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "coordinator/engine/engine.h"
#include "tools/bench/bandwidth.h"
#include "spdlog/spdlog.h"
#include "worker/step/local_worker.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}


struct Args {
  std::string model;
  int threads = 0;
  bool blas = false;
  int prefill_tokens = 512;
  int decode_steps = 8;
  std::vector<int> batches = {1, 8, 32};
  int64_t bandwidth_mib = 1024;
};

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
  return 1;
}

void Usage() {
  std::puts(
      "olmo-bench-model --model DIR [--threads N] [--matmul packed|blas] [--prefill-tokens N]\n"
      "                 [--decode-steps N] [--batches 1,8,32] [--bandwidth-mib N]");
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s: missing value\n", f.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (f == "--model") a.model = next();
    else if (f == "--threads") a.threads = std::stoi(next());
    else if (f == "--matmul") a.blas = next() == "blas";
    else if (f == "--prefill-tokens") a.prefill_tokens = std::stoi(next());
    else if (f == "--decode-steps") a.decode_steps = std::stoi(next());
    else if (f == "--bandwidth-mib") a.bandwidth_mib = std::stoll(next());
    else if (f == "--batches") {
      a.batches.clear();
      std::string s = next();
      size_t p = 0;
      while (p < s.size()) {
        size_t c = s.find(',', p);
        if (c == std::string::npos) c = s.size();
        a.batches.push_back(std::stoi(s.substr(p, c - p)));
        p = c + 1;
      }
    } else if (f == "--help") {
      Usage();
      return 0;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", f.c_str());
      Usage();
      return 2;
    }
  }
  if (a.model.empty()) {
    Usage();
    return 2;
  }
  int threads = a.threads > 0 ? a.threads : omp_get_num_procs();
  double bw = olmo::bench::ReadBandwidthGBs(a.bandwidth_mib << 20, threads);
  std::printf("read bandwidth (%d threads, %lld MiB): %.1f GB/s\n", threads,
              static_cast<long long>(a.bandwidth_mib), bw);

  int max_batch = 1;
  for (int b : a.batches) max_batch = std::max(max_batch, b);
  olmo::step::LocalWorkerOptions o;
  o.block_size = 16;
  o.num_blocks = (a.prefill_tokens + 64) / 16 * 2 + max_batch * (64 + a.decode_steps) / 16 + 64;
  o.ops.num_threads = threads;
  o.ops.matmul_path = a.blas ? olmo::kernels::MatmulPath::kBlas : olmo::kernels::MatmulPath::kPacked;
  auto w = olmo::step::LoadLocalWorker(a.model, o);
  if (!w.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(w.status().message()).c_str());
    return 1;
  }
  const olmo::ModelConfig& c = (*w)->config;
  const int64_t weight_bytes = (*w)->model->weight_bytes();
  std::printf("model: hidden %lld, layers %lld, vocab %lld, matmul path %s, weight bytes/step %.1f MiB\n",
              static_cast<long long>(c.hidden_size), static_cast<long long>(c.num_hidden_layers),
              static_cast<long long>(c.vocab_size), a.blas ? "blas" : "packed",
              weight_bytes / 1048576.0);

  int64_t seq = 0;
  auto make = [&](int len, int max_tokens) {
    olmo::engine::Request r;
    r.seq_id = seq++;
    for (int i = 0; i < len; ++i) r.prompt_ids.push_back(static_cast<int32_t>((seq * 131 + i * 7) % c.vocab_size));
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    return r;
  };

  // Prefill: one prompt in a single step (budget = its length).
  {
    (*w)->runner->Reset();
    olmo::engine::Engine engine((*w)->runner.get(), {a.prefill_tokens, 256, 0});
    if (absl::Status st = engine.Add(make(a.prefill_tokens, 1)); !st.ok()) return Fail(st);
    auto t0 = Clock::now();
    while (engine.HasWork()) {
      if (auto st = engine.Step(); !st.ok()) return Fail(st.status());
    }
    double s = Seconds(t0, Clock::now());
    std::printf("prefill %d tokens: %.3f s, %.1f tokens/s\n", a.prefill_tokens, s,
                a.prefill_tokens / s);
  }
  std::printf("%8s %12s %12s %14s %10s\n", "batch", "step ms", "tokens/s", "weight GB/s", "roofline");
  for (int b : a.batches) {
    (*w)->runner->Reset();
    olmo::engine::Engine engine((*w)->runner.get(), {4096, 4096, 0});
    for (int i = 0; i < b; ++i) {
      if (absl::Status st = engine.Add(make(16, a.decode_steps + 2)); !st.ok()) return Fail(st);
    }
    // Prefill + the first decode step are warm-up.
    for (int s = 0; s < 2; ++s) {
      if (auto st = engine.Step(); !st.ok()) return Fail(st.status());
    }
    auto t0 = Clock::now();
    int steps = 0;
    while (engine.HasWork() && steps < a.decode_steps) {
      if (auto st = engine.Step(); !st.ok()) return Fail(st.status());
      ++steps;
    }
    double step_s = Seconds(t0, Clock::now()) / steps;
    double gbs = weight_bytes / step_s / 1e9;
    std::printf("%8d %12.2f %12.1f %14.1f %9.0f%%\n", b, step_s * 1e3, b / step_s, gbs,
                100.0 * gbs / bw);
    while (engine.HasWork()) {
      if (auto st = engine.Step(); !st.ok()) return Fail(st.status());
    }
  }
  return 0;
}
