// olmo-bench-scheduler: the scheduler thread's CPU time per engine step with N running sequences
// (default 256) over a NullExecutor (no model, no gRPC), output processing excluded; then output
// processing throughput (OutputProcessor::Apply: detokenize + stop strings) with the real Olmo 3
// tokenizer. Prints figures; not a test.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include "coordinator/engine/engine.h"
#include "coordinator/requests/output_processor.h"
#include "worker/step/null_executor.h"

namespace {

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  int seqs = 256, prompt = 512, steps = 2000;
  std::string tokenizer_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string f = argv[i];
    if (f == "--seqs") seqs = std::stoi(argv[i + 1]);
    else if (f == "--prompt") prompt = std::stoi(argv[i + 1]);
    else if (f == "--steps") steps = std::stoi(argv[i + 1]);
    else if (f == "--tokenizer") tokenizer_path = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: olmo-bench-scheduler [--seqs N] [--prompt N] [--steps N] "
                           "[--tokenizer tokenizer.json]\n");
      return 2;
    }
  }
  olmo::ExecutorInfo info;
  info.block_size = 16;
  info.num_blocks[0] = info.num_blocks[1] =
      static_cast<int64_t>(seqs) * ((prompt + steps) / 16 + 2);
  info.vocab_size = 100278;
  olmo::step::NullExecutor executor(info);
  olmo::engine::SchedulerConfig config;
  config.max_tokens_per_step = 8192;
  config.max_seqs = seqs;
  config.max_model_len = prompt + steps + 16;
  config.model_fingerprint = "bench";
  olmo::engine::Engine engine(&executor, config);
  std::mt19937 rng(1);
  for (int s = 0; s < seqs; ++s) {
    olmo::engine::Request r;
    r.seq_id = s;
    r.prompt_ids.resize(static_cast<size_t>(prompt));
    for (auto& t : r.prompt_ids) t = static_cast<int32_t>(rng() % 100000);
    r.max_tokens = steps + 8;
    r.ignore_eos = true;
    if (!engine.Add(r).ok()) return 1;
  }
  // Prefill everything first; then time decode steps with every sequence running.
  while (engine.scheduler().num_waiting() > 0) {
    if (!engine.Step().ok()) return 1;
  }
  for (int i = 0; i < 16; ++i) (void)engine.Step();
  const int timed = std::min(steps - 32, 1000);
  const double cpu0 = ThreadCpuSeconds();
  const auto wall0 = std::chrono::steady_clock::now();
  int64_t tokens = 0;
  for (int i = 0; i < timed; ++i) {
    auto u = engine.Step();
    if (!u.ok()) return 1;
    tokens += static_cast<int64_t>(u->size());
  }
  const double cpu = ThreadCpuSeconds() - cpu0;
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  std::printf("scheduler: %d running sequences, %d decode steps: %.1f us CPU per step "
              "(%.1f us wall; %.2f tokens per step); target < 200 us\n",
              seqs, timed, cpu / timed * 1e6, wall / timed * 1e6,
              static_cast<double>(tokens) / timed);

  if (!tokenizer_path.empty()) {
    auto tok = olmo::tokenizer::Tokenizer::FromTokenizerJson(tokenizer_path);
    if (!tok.ok()) {
      std::fprintf(stderr, "%s\n", std::string(tok.status().message()).c_str());
      return 1;
    }
    auto stops = olmo::requests::StopMatcher::Create({"</answer>", "\n\nUser:"});
    olmo::requests::OutputProcessor proc(tok->get(), std::move(*stops), 10);
    const int n = 200000;
    const double c0 = ThreadCpuSeconds();
    for (int i = 0; i < n; ++i) {
      olmo::engine::SeqUpdate u;
      u.has_token = true;
      u.token_id = static_cast<int32_t>(rng() % 100000);
      (void)proc.Apply(u);
    }
    const double c = ThreadCpuSeconds() - c0;
    std::printf("output processing: %.2f M tokens/s per thread (%.0f ns per token: "
                "detokenize + 2 stop strings)\n", n / c / 1e6, c / n * 1e9);
  }
  return 0;
}
