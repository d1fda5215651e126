// End to end over loopback (label e2e): olmo-coordinator + an mpirun worker group (tp 2 x pp 2).
// 64 concurrent streaming requests with mixed parameters: greedy outputs equal olmo-generate
// offline (margin rule), seeded sampling is independent of batch composition; then a KV pool
// small enough to force preemption, shared prefixes and prompts longer than the token budget:
// GetStats proves preemption, prefix hits and chunked prefill happened, outputs are unchanged and
// every block ends free or cached-unreferenced.
#include <future>
#include <random>

#include "tests/e2e/cluster.h"

namespace olmo::testing {
namespace {

struct Spec {
  std::vector<int32_t> prompt;
  int max_tokens = 16;
  bool greedy = true;
  uint64_t seed = 0;
  float temperature = 1.0f, top_p = 1.0f, presence = 0.0f;
  int top_k = 0, logprobs = 0;
};

v1::GenerateRequest ToRequest(const Spec& s, const std::string& id) {
  v1::GenerateRequest r;
  r.set_request_id(id);
  for (int32_t t : s.prompt) r.mutable_token_ids()->add_ids(t);
  auto* p = r.mutable_sampling();
  p->set_max_tokens(s.max_tokens);
  p->set_temperature(s.greedy ? 0.0f : s.temperature);
  if (!s.greedy) {
    p->set_seed(s.seed);
    if (s.top_p < 1.0f) p->set_top_p(s.top_p);
    if (s.top_k > 0) p->set_top_k(s.top_k);
    if (s.presence != 0.0f) p->set_presence_penalty(s.presence);
  }
  p->set_logprobs(s.logprobs);
  return r;
}

nlohmann::json ToBatchLine(const Spec& s) {
  nlohmann::json j;
  j["prompt_ids"] = s.prompt;
  j["max_tokens"] = s.max_tokens;
  j["temperature"] = s.greedy ? 0.0 : s.temperature;
  return j;
}

std::vector<Spec> MixedSpecs(int n, int shared_prefix, int min_len, int max_len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> prefix(static_cast<size_t>(shared_prefix));
  for (auto& t : prefix) t = static_cast<int32_t>(rng() % 100000);
  std::vector<Spec> specs;
  for (int i = 0; i < n; ++i) {
    Spec s;
    int len = min_len + static_cast<int>(rng() % static_cast<uint32_t>(max_len - min_len + 1));
    if (shared_prefix > 0 && i % 2 == 0) s.prompt = prefix;
    while (static_cast<int>(s.prompt.size()) < len) {
      s.prompt.push_back(static_cast<int32_t>(rng() % 100000));
    }
    s.max_tokens = 8 + static_cast<int>(rng() % 17);
    switch (i % 4) {
      case 0: break;
      case 1: s.greedy = false; s.seed = 1000 + i; s.temperature = 0.8f; s.top_p = 0.9f; break;
      case 2: s.logprobs = 3; break;
      case 3: s.greedy = false; s.seed = 2000 + i; s.top_k = 20; s.presence = 0.5f; break;
    }
    specs.push_back(std::move(s));
  }
  return specs;
}

std::vector<Completion> RunConcurrently(Cluster& c, const std::vector<Spec>& specs,
                                        const std::string& tag) {
  std::vector<std::future<Completion>> futures;
  for (size_t i = 0; i < specs.size(); ++i) {
    futures.push_back(std::async(std::launch::async, [&c, &specs, i, tag] {
      return Generate(c.stub(), ToRequest(specs[i], tag + std::to_string(i)));
    }));
  }
  std::vector<Completion> out;
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

void CheckStreams(const std::vector<Completion>& got, const std::vector<Spec>& specs,
                  const std::string& logs) {
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << i << ": " << got[i].status.error_message() << "\n" << logs;
    EXPECT_EQ(got[i].finishes, 1) << i;
    EXPECT_EQ(got[i].completion_tokens, static_cast<int>(got[i].ids.size())) << i;
    EXPECT_EQ(got[i].prompt_tokens, static_cast<int>(specs[i].prompt.size())) << i;
    EXPECT_TRUE(got[i].finish == v1::FINISH_REASON_LENGTH || got[i].finish == v1::FINISH_REASON_STOP);
    if (got[i].finish == v1::FINISH_REASON_LENGTH) {
      EXPECT_EQ(static_cast<int>(got[i].ids.size()), specs[i].max_tokens) << i;
    }
  }
}

TEST(ServiceE2E, SixtyFourConcurrentStreamsMatchOfflineReference) {
  Cluster c;
  ASSERT_TRUE(c.ok()) << c.Logs();
  EXPECT_EQ(c.Health(), "NOT_SERVING");
  c.AddGroup(2, 2, "a");
  ASSERT_TRUE(c.WaitGroups(1)) << c.Logs();
  EXPECT_EQ(c.Health(), "SERVING");

  const std::vector<Spec> specs = MixedSpecs(64, 0, 4, 48, 7);
  const std::vector<Completion> got = RunConcurrently(c, specs, "mix-");
  CheckStreams(got, specs, c.Logs());

  std::vector<nlohmann::json> batch;
  std::vector<size_t> greedy;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].greedy) {
      batch.push_back(ToBatchLine(specs[i]));
      greedy.push_back(i);
    }
  }
  const auto ref = Reference(batch);
  ASSERT_EQ(ref.size(), greedy.size());
  for (size_t k = 0; k < greedy.size(); ++k) {
    ExpectGreedyMatch(ref[k], got[greedy[k]].ids, "request " + std::to_string(greedy[k]));
    // Logprobs are reported under the raw distribution: equal to the offline ones.
    for (size_t t = 0; t < std::min(got[greedy[k]].logprobs.size(), ref[k]["logprobs"].size());
         ++t) {
      EXPECT_NEAR(got[greedy[k]].logprobs[t], ref[k]["logprobs"][t].get<double>(), 1e-4);
    }
  }
  // Seeded sampling does not depend on the batch: each sampled request alone gives the same.
  for (size_t i = 1; i < specs.size(); i += 8) {
    ASSERT_FALSE(specs[i].greedy);
    Completion alone = Generate(c.stub(), ToRequest(specs[i], "alone-" + std::to_string(i)));
    ASSERT_TRUE(alone.status.ok());
    EXPECT_EQ(alone.ids, got[i].ids) << "request " << i;
  }
  v1::Stats s = c.Stats();
  ASSERT_EQ(s.groups_size(), 1);
  EXPECT_EQ(s.groups(0).full().used(), 0);
  EXPECT_EQ(s.groups(0).sliding().used(), 0);
  EXPECT_EQ(s.running(), 0);
}

TEST(ServiceE2E, PreemptionPrefixHitsAndChunkedPrefillKeepOutputs) {
  // ~40 blocks of 16 tokens per KV group, a 32-token step budget.
  Cluster c({"--kv-cache-mib", "0.25", "--max-tokens-per-step", "32"});
  ASSERT_TRUE(c.ok()) << c.Logs();
  c.AddGroup(2, 2, "small");
  ASSERT_TRUE(c.WaitGroups(1)) << c.Logs();

  std::vector<Spec> specs = MixedSpecs(24, 40, 44, 70, 11);
  for (auto& s : specs) s.greedy = true, s.logprobs = 0;
  const std::vector<Completion> got = RunConcurrently(c, specs, "pre-");
  CheckStreams(got, specs, c.Logs());
  std::vector<nlohmann::json> batch;
  for (const auto& s : specs) batch.push_back(ToBatchLine(s));
  const auto ref = Reference(batch);
  ASSERT_EQ(ref.size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    ExpectGreedyMatch(ref[i], got[i].ids, "request " + std::to_string(i));
  }
  v1::Stats s = c.Stats();
  EXPECT_GT(s.preemptions(), 0);
  EXPECT_GT(s.prefix_hit_tokens(), 0);
  EXPECT_GT(s.chunked_prefills(), 0);
  ASSERT_EQ(s.groups_size(), 1);
  // Every block is free or cached-unreferenced (a referenced block counts as used).
  EXPECT_EQ(s.groups(0).full().used(), 0);
  EXPECT_EQ(s.groups(0).sliding().used(), 0);
  EXPECT_GT(s.groups(0).full().cached(), 0);
  std::printf("preemptions %lld, prefix-hit tokens %lld, chunked prefills %lld\n",
              static_cast<long long>(s.preemptions()),
              static_cast<long long>(s.prefix_hit_tokens()),
              static_cast<long long>(s.chunked_prefills()));
}

}  // namespace
}  // namespace olmo::testing
