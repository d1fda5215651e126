// olmo-bench-load: a gRPC load generator for olmo-coordinator. Fixed concurrency (--concurrency)
// or Poisson arrivals (--rate requests/s); prompt and output lengths drawn uniformly from ranges.
// Reports request and token throughput, time to first token and inter-token latency
// p50/p90/p99. Prints figures; not a test.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "olmo/v1/inference.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
  double ttft = 0;
  std::vector<double> itl;
  int tokens = 0;
  bool ok = false;
};

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  std::string server = "127.0.0.1:50051";
  int requests = 200, concurrency = 16, pmin = 32, pmax = 256, omin = 16, omax = 128;
  double rate = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string f = argv[i], v = argv[i + 1];
    if (f == "--server") server = v;
    else if (f == "--requests") requests = std::stoi(v);
    else if (f == "--concurrency") concurrency = std::stoi(v);
    else if (f == "--rate") rate = std::stod(v);
    else if (f == "--prompt-len") std::sscanf(v.c_str(), "%d-%d", &pmin, &pmax);
    else if (f == "--output-len") std::sscanf(v.c_str(), "%d-%d", &omin, &omax);
    else {
      std::fprintf(stderr,
                   "usage: olmo-bench-load [--server H:P] [--requests N] [--concurrency C | "
                   "--rate R] [--prompt-len MIN-MAX] [--output-len MIN-MAX]\n");
      return 2;
    }
  }
  auto channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  auto stub = olmo::v1::Inference::NewStub(channel);
  std::mutex mu;
  std::vector<Sample> samples;
  std::atomic<int> next{0};
  auto one = [&](int i) {
    std::mt19937 rng(static_cast<uint32_t>(i) * 7919u + 1);
    olmo::v1::GenerateRequest req;
    const int plen = pmin + static_cast<int>(rng() % static_cast<uint32_t>(pmax - pmin + 1));
    for (int t = 0; t < plen; ++t) req.mutable_token_ids()->add_ids(static_cast<int>(rng() % 100000));
    req.mutable_sampling()->set_max_tokens(
        omin + static_cast<int>(rng() % static_cast<uint32_t>(omax - omin + 1)));
    req.mutable_sampling()->set_ignore_eos(true);
    req.mutable_sampling()->set_temperature(0.8f);
    grpc::ClientContext ctx;
    Sample s;
    const auto start = Clock::now();
    auto last = start;
    auto reader = stub->Generate(&ctx, req);
    olmo::v1::GenerateResponse r;
    while (reader->Read(&r)) {
      const auto now = Clock::now();
      if (r.tokens_size() > 0) {
        if (s.tokens == 0) {
          s.ttft = std::chrono::duration<double>(now - start).count();
        } else {
          // A coalesced response carries several tokens: spread the gap over them.
          const double gap = std::chrono::duration<double>(now - last).count() / r.tokens_size();
          for (int k = 0; k < r.tokens_size(); ++k) s.itl.push_back(gap);
        }
        s.tokens += r.tokens_size();
        last = now;
      }
    }
    s.ok = reader->Finish().ok();
    std::lock_guard<std::mutex> lock(mu);
    samples.push_back(std::move(s));
  };
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  if (rate > 0) {  // Poisson arrivals: one thread per request, started at exponential gaps
    std::mt19937 rng(42);
    std::exponential_distribution<double> gap(rate);
    for (int i = 0; i < requests; ++i) {
      threads.emplace_back(one, i);
      std::this_thread::sleep_for(std::chrono::duration<double>(gap(rng)));
    }
  } else {
    for (int c = 0; c < concurrency; ++c) {
      threads.emplace_back([&] {
        for (int i = next++; i < requests; i = next++) one(i);
      });
    }
  }
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<double> ttft, itl;
  int64_t tokens = 0;
  int failed = 0;
  for (const auto& s : samples) {
    if (!s.ok) ++failed;
    ttft.push_back(s.ttft);
    itl.insert(itl.end(), s.itl.begin(), s.itl.end());
    tokens += s.tokens;
  }
  std::printf("%d requests (%d failed) in %.2f s: %.2f req/s, %.1f output tok/s\n",
              static_cast<int>(samples.size()), failed, wall, samples.size() / wall,
              tokens / wall);
  std::printf("time to first token ms: p50 %.2f p90 %.2f p99 %.2f\n", Pct(ttft, .5) * 1e3,
              Pct(ttft, .9) * 1e3, Pct(ttft, .99) * 1e3);
  std::printf("inter-token latency ms: p50 %.3f p90 %.3f p99 %.3f\n", Pct(itl, .5) * 1e3,
              Pct(itl, .9) * 1e3, Pct(itl, .99) * 1e3);
  return failed == 0 ? 0 : 1;
}
