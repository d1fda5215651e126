// olmo-generate: offline generation over the engine and the in-process worker (see --help).
#include <cstdio>
#include <iostream>
#include <map>

#include "absl/strings/str_format.h"
#include "coordinator/engine/engine.h"
#include "nlohmann/json.hpp"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "tools/olmo-generate/generate_args.h"
#include "worker/step/local_worker.h"

namespace {

struct Output {
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;
  std::vector<std::vector<olmo::TokenLogprob>> top_logprobs;
  std::string finish_reason;
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "olmo-generate: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("olmo"));
  absl::StatusOr<olmo::tools::GenerateArgs> args = olmo::tools::ParseGenerateArgs(argc, argv);
  if (!args.ok()) return Fail(args.status());
  if (args->help) {
    std::fputs(olmo::tools::GenerateUsage().c_str(), stdout);
    return 0;
  }

  // Config first: bad prompts fail before the weights load, and the KV cache is sized from it.
  absl::StatusOr<olmo::ModelConfig> config_or = olmo::ModelConfig::Load(args->model_dir);
  if (!config_or.ok()) return Fail(config_or.status());
  const int64_t max_len = config_or->max_position_embeddings;
  for (size_t i = 0; i < args->prompts.size(); ++i) {
    const auto& p = args->prompts[i];
    for (int32_t id : p.prompt_ids) {
      if (id >= config_or->vocab_size) {
        return Fail(absl::InvalidArgumentError(absl::StrFormat(
            "prompt %d: token id %d is outside the vocabulary [0, %d)", i, id,
            config_or->vocab_size)));
      }
    }
    if (static_cast<int64_t>(p.prompt_ids.size()) + p.max_tokens > max_len) {
      return Fail(absl::InvalidArgumentError(absl::StrFormat(
          "prompt %d: max_tokens: prompt (%d tokens) + max_tokens (%d) exceeds max_model_len %d",
          i, p.prompt_ids.size(), p.max_tokens, max_len)));
    }
  }

  olmo::step::LocalWorkerOptions wopts;
  wopts.block_size = args->block_size;
  wopts.ops.num_threads = args->threads;
  wopts.ops.matmul_path =
      args->blas_matmul ? olmo::kernels::MatmulPath::kBlas : olmo::kernels::MatmulPath::kPacked;
  if (args->kv_cache_mib > 0) {
    wopts.kv_cache_bytes = args->kv_cache_mib << 20;
  } else {
    int64_t blocks = 0;
    for (const auto& p : args->prompts) {
      blocks += (static_cast<int64_t>(p.prompt_ids.size()) + p.max_tokens + args->block_size - 1) /
                args->block_size;
    }
    wopts.num_blocks = blocks;
  }
  auto worker = olmo::step::LoadLocalWorker(args->model_dir, wopts);
  if (!worker.ok()) return Fail(worker.status());
  const olmo::ModelConfig& config = (*worker)->config;

  olmo::engine::SchedulerConfig sconf;
  sconf.max_tokens_per_step = args->max_batch_tokens;
  sconf.max_seqs = 1 << 20;
  sconf.max_model_len = config.max_position_embeddings;
  olmo::engine::Engine engine((*worker)->runner.get(), sconf);

  std::vector<Output> outputs(args->prompts.size());
  for (size_t i = 0; i < args->prompts.size(); ++i) {
    const auto& p = args->prompts[i];
    olmo::engine::Request r;
    r.seq_id = static_cast<int64_t>(i);
    r.prompt_ids = p.prompt_ids;
    r.sampling = p.sampling;
    r.sampling.stop_token_ids = config.eos_token_ids;
    r.max_tokens = p.max_tokens;
    r.ignore_eos = p.ignore_eos;
    absl::Status st = engine.Add(r);
    if (!st.ok()) {
      return Fail(absl::Status(st.code(), absl::StrFormat("prompt %d: %s", i, st.message())));
    }
  }
  while (engine.HasWork()) {
    auto updates = engine.Step();
    if (!updates.ok()) return Fail(updates.status());
    for (const auto& u : *updates) {
      Output& o = outputs[u.seq_id];
      if (u.has_token) {
        o.token_ids.push_back(u.token_id);
        o.logprobs.push_back(u.logprob);
        o.top_logprobs.push_back(u.top_logprobs);
      }
      if (u.finish == olmo::engine::FinishReason::kStop) o.finish_reason = "stop";
      if (u.finish == olmo::engine::FinishReason::kLength) o.finish_reason = "length";
    }
  }
  const auto& stats = engine.scheduler().stats();
  spdlog::info("done: {} steps, {} chunked prefills, {} preemptions", stats.steps,
               stats.chunked_prefills, stats.preemptions);
  for (size_t i = 0; i < outputs.size(); ++i) {
    nlohmann::ordered_json j;
    j["prompt_ids"] = args->prompts[i].prompt_ids;
    j["token_ids"] = outputs[i].token_ids;
    j["logprobs"] = outputs[i].logprobs;
    nlohmann::ordered_json tops = nlohmann::ordered_json::array();
    for (const auto& step : outputs[i].top_logprobs) {
      nlohmann::ordered_json entries = nlohmann::ordered_json::array();
      for (const auto& t : step) entries.push_back({{"id", t.id}, {"logprob", t.logprob}});
      tops.push_back(entries);
    }
    j["top_logprobs"] = tops;
    j["finish_reason"] = outputs[i].finish_reason;
    std::cout << j.dump() << "\n";
  }
  return 0;
}
