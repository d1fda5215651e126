// olmo-bench-tokenizer FILE...: single-thread encode throughput (MB/s) of the Olmo 3 tokenizer on
// each file, best of 3. tools/bench/tokenizer_bench.py runs it beside PyPI tiktoken.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "coordinator/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: olmo-bench-tokenizer TOKENIZER_JSON FILE...\n");
    return 2;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto tok = olmo::tokenizer::Tokenizer::FromTokenizerJson(argv[1]);
  double load = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!tok.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(tok.status().message()).c_str());
    return 1;
  }
  std::printf("load %.3f s\n", load);
  for (int i = 2; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    double best = 1e30;
    size_t n = 0;
    for (int r = 0; r < 3; ++r) {
      auto a = std::chrono::steady_clock::now();
      auto ids = (*tok)->Encode(text, olmo::tokenizer::AddedTokens::kPlain);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
      n = ids.ok() ? ids->size() : 0;
    }
    std::printf("%s %.2f MB %zu ids %.2f MB/s\n", argv[i], text.size() / 1e6, n, text.size() / 1e6 / best);
  }
  return 0;
}
