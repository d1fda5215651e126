// olmo-generate: offline generation over the engine, on one process or on a tp x pp worker group
// under mpirun (rank 0 prints). See --help.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/parallel_config.h"
#include "coordinator/engine/engine.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "tools/common/device_ops.h"
#include "tools/olmo-generate/generate_args.h"
#include "worker/comm/mpi_comm.h"
#include "worker/group/group_runner.h"
#include "worker/step/local_worker.h"

namespace {

struct Output {
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;
  std::vector<std::vector<olmo::TokenLogprob>> top_logprobs;
  std::string finish_reason;
};

// Under mpirun every rank parses the same arguments; only rank 0 reports errors found before
// MPI starts, so a bad argument is printed once.
bool QuietRank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"}) {
    const char* v = std::getenv(var);
    if (v != nullptr) return std::string(v) != "0";
  }
  return false;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "olmo-generate: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

// Prompt checks against the config, before any weight is loaded.
absl::Status CheckPrompts(const olmo::tools::GenerateArgs& args, const olmo::ModelConfig& config) {
  for (size_t i = 0; i < args.prompts.size(); ++i) {
    const auto& p = args.prompts[i];
    for (int32_t id : p.prompt_ids) {
      if (id >= config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "prompt %d: token id %d is outside the vocabulary [0, %d)", i, id, config.vocab_size));
      }
    }
    if (static_cast<int64_t>(p.prompt_ids.size()) + p.max_tokens > config.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "prompt %d: max_tokens: prompt (%d tokens) + max_tokens (%d) exceeds max_model_len %d", i,
          p.prompt_ids.size(), p.max_tokens, config.max_position_embeddings));
    }
  }
  return absl::OkStatus();
}

olmo::step::LocalWorkerOptions WorkerOptions(const olmo::tools::GenerateArgs& args, int ranks) {
  olmo::step::LocalWorkerOptions o;
  o.block_size = args.block_size;
  // One compute thread per core per local rank.
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.ops.num_threads = args.threads > 0 ? args.threads : std::max(1, cores / ranks);
  o.ops.matmul_path =
      args.blas_matmul ? olmo::kernels::MatmulPath::kBlas : olmo::kernels::MatmulPath::kPacked;
  o.device_sampling = args.device_sampling;
  o.kv_dtype = args.kv_dtype;
  o.model.graphs = args.cuda_graphs;
  auto factory = olmo::tools::MakeOpsFactory(args.device, olmo::tools::LocalRank());
  if (factory.ok()) {
    o.make_ops = *factory;
  } else {  // reported where the worker loads
    o.make_ops = [st = factory.status()]() -> absl::StatusOr<std::unique_ptr<olmo::kernels::Ops>> {
      return st;
    };
  }
  if (args.kv_cache_mib > 0) {
    o.kv_cache_bytes = args.kv_cache_mib << 20;
  } else {
    int64_t blocks = 0;
    for (const auto& p : args.prompts) {
      blocks += (static_cast<int64_t>(p.prompt_ids.size()) + p.max_tokens + args.block_size - 1) /
                args.block_size;
    }
    o.num_blocks = blocks;
  }
  return o;
}

// The model directory's tokenizer, when it has a tokenizer.json (null otherwise).
std::unique_ptr<olmo::tokenizer::Tokenizer> MaybeTokenizer(const std::string& dir) {
  if (!std::filesystem::exists(dir + "/tokenizer.json")) return nullptr;
  auto t = olmo::tokenizer::Tokenizer::FromTokenizerJson(dir);
  if (!t.ok()) {
    spdlog::warn("tokenizer.json not usable, output has no text: {}",
                 std::string(t.status().message()));
    return nullptr;
  }
  return std::move(*t);
}

// Fills prompts[0] from --prompt / --chat text.
absl::Status TokenizePrompt(olmo::tools::GenerateArgs* args,
                            const olmo::tokenizer::Tokenizer* tok) {
  if (tok == nullptr) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: --prompt/--chat need a tokenizer.json in the model directory", args->model_dir));
  }
  std::vector<int32_t> ids;
  if (args->chat) {
    auto text = olmo::tokenizer::ReadChatTemplate(args->model_dir);
    if (!text.ok()) return text.status();
    auto kind = olmo::tokenizer::SelectChatTemplate(*text);
    if (!kind.ok()) return kind.status();
    auto segments = olmo::tokenizer::RenderChat(*tok, *kind, {{"user", args->prompt_text, {}, {}}},
                                                /*add_generation_prompt=*/true);
    if (!segments.ok()) return segments.status();
    auto encoded = olmo::tokenizer::EncodeChat(*tok, *segments);
    if (!encoded.ok()) return encoded.status();
    ids = std::move(*encoded);
  } else {
    auto encoded = tok->Encode(args->prompt_text);
    if (!encoded.ok()) return encoded.status();
    ids = std::move(*encoded);
  }
  if (ids.empty()) return absl::InvalidArgumentError("--prompt: the text encodes to no tokens");
  args->prompts[0].prompt_ids = std::move(ids);
  return absl::OkStatus();
}

// Runs every prompt to completion on `executor` and prints one JSON line per prompt.
int Generate(const olmo::tools::GenerateArgs& args, const olmo::ModelConfig& config,
             const std::string& fingerprint, olmo::StepExecutor* executor) {
  std::unique_ptr<olmo::tokenizer::Tokenizer> tok = MaybeTokenizer(args.model_dir);
  olmo::engine::SchedulerConfig sconf;
  sconf.model_fingerprint = fingerprint;
  sconf.max_tokens_per_step = args.max_batch_tokens;
  sconf.max_seqs = 1 << 20;
  sconf.max_model_len = config.max_position_embeddings;
  olmo::engine::Engine engine(executor, sconf);
  std::vector<Output> outputs(args.prompts.size());
  for (size_t i = 0; i < args.prompts.size(); ++i) {
    const auto& p = args.prompts[i];
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
  const auto start = std::chrono::steady_clock::now();
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
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info(
      "done: {} steps in {:.3f} s, {} chunked prefills, {} preemptions, steps in flight: {}",
      stats.steps, seconds, stats.chunked_prefills, stats.preemptions, engine.max_in_flight_seen());
  for (size_t i = 0; i < outputs.size(); ++i) {
    nlohmann::ordered_json j;
    j["prompt_ids"] = args.prompts[i].prompt_ids;
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
    if (tok != nullptr) {
      auto text = tok->Decode(outputs[i].token_ids, /*skip_special=*/true);
      if (text.ok()) j["text"] = *text;
    }
    std::cout << j.dump() << "\n";
  }
  return 0;
}

// A worker group under mpirun: every rank loads its slice; rank 0 leads, the others serve.
int RunGroup(int* argc, char*** argv, const olmo::tools::GenerateArgs& args,
             const olmo::ModelConfig& config) {
  auto env = olmo::comm::MpiEnvironment::Create(argc, argv);
  if (!env.ok()) return Fail(env.status());
  const int rank = (*env)->world_rank();
  auto fail_once = [&](const absl::Status& st) { return rank == 0 ? Fail(st) : 1; };
  auto pc = olmo::ParallelConfig::Make(args.tp, args.pp, rank, (*env)->world_size(), config);
  if (!pc.ok()) return fail_once(pc.status());
  olmo::comm::MpiCommOptions copts;
  copts.watchdog_timeout_s = args.watchdog_s;
  auto comms = olmo::comm::MakeGroupComms(*pc, copts);
  if (!comms.ok()) return Fail(comms.status());
  const auto stages = olmo::ParallelConfig::SplitStages(config, args.pp);
  olmo::step::LocalWorkerOptions o = WorkerOptions(args, pc->world_size());
  o.model.tp = pc->tp;
  o.model.tp_rank = pc->tp_rank();
  o.model.collectives = comms->tp.get();
  auto collectives =
      olmo::tools::MakeCollectivesFactory(args.collectives, args.device, comms->tp.get());
  if (!collectives.ok()) return fail_once(collectives.status());
  o.make_collectives = *collectives;
  o.model.layer_begin = stages[pc->pp_rank()].layer_begin;
  o.model.layer_end = stages[pc->pp_rank()].layer_end;
  // Every rank logs its own loading (progress and bytes), tagged with its place in the group.
  spdlog::set_pattern(absl::StrFormat("[%%H:%%M:%%S.%%e] [rank %d pp %d tp %d] [%%l] %%v", rank,
                                      pc->pp_rank(), pc->tp_rank()));
  auto worker = olmo::step::LoadLocalWorker(args.model_dir, o);
  if (worker.ok()) {
    spdlog::info("loaded layers {}-{}, vocab slice and heads of tp rank {}: {:.1f} MiB",
                 o.model.layer_begin, o.model.layer_end - 1, pc->tp_rank(),
                 (*worker)->model->weight_bytes() / 1048576.0);
  }
  if (rank != 0) spdlog::set_level(spdlog::level::warn);
  // Every rank learns whether every rank loaded; the lowest failing rank prints its error once.
  std::vector<int32_t> ok(static_cast<size_t>(pc->world_size()));
  int32_t mine = worker.ok() ? 1 : 0;
  absl::Status gathered = comms->world->AllGather(&mine, sizeof(mine), ok.data());
  if (!gathered.ok()) return Fail(gathered);
  for (int r = 0; r < pc->world_size(); ++r) {
    if (ok[r] == 0) return r == rank ? Fail(worker.status()) : 1;
  }
  olmo::step::GroupRunner group((*worker)->runner.get(), *pc, comms->world.get(), comms->tp.get(),
                                comms->pp.get(), config.hidden_size, args.watchdog_s);
  // Per-rank figures for benchmarks: busy time and bytes sent per step by each communicator.
  auto report = [&]() {
    const auto& r = *(*worker)->runner;
    int64_t steps = std::max<int64_t>(1, r.steps_executed());
    std::fprintf(
        stderr,
        "rank %d (stage %d, tp %d, layers %lld-%lld): %lld steps, %lld tokens, busy %.3f s; "
        "bytes sent per step: tp %lld, pipeline %lld, world %lld\n",
        rank, pc->pp_rank(), pc->tp_rank(), static_cast<long long>(o.model.layer_begin),
        static_cast<long long>(o.model.layer_end - 1), static_cast<long long>(r.steps_executed()),
        static_cast<long long>(r.tokens_executed()), r.busy_seconds(),
        static_cast<long long>(comms->tp->stats().total_bytes_sent() / steps),
        static_cast<long long>(comms->pp->stats().total_bytes_sent() / steps),
        static_cast<long long>(comms->world->stats().total_bytes_sent() / steps));
    if (pc->is_last_stage() && pc->tp > 1) {
      std::fprintf(stderr,
                   "rank %d: sampled rows finished from vocab-slice reports %lld, gathered in "
                   "full %lld\n",
                   rank, static_cast<long long>(r.slice_sampled_rows()),
                   static_cast<long long>(r.gathered_rows()));
    }
  };
  if (rank != 0) {
    absl::Status st = group.Serve();
    if (args.report_ranks) report();
    if (!st.ok() && group.step_failed()) olmo::comm::AbortWorld(st.ToString());
    return st.ok() ? 0 : Fail(st);
  }
  spdlog::info("worker group: tp {} x pp {} ({} ranks)", pc->tp, pc->pp, pc->world_size());
  olmo::step::GroupExecutor executor(&group, (*worker)->runner->info(), pc->pp);
  int rc = Generate(args, config, (*worker)->fingerprint, &executor);
  if (group.step_failed() && pc->world_size() > 1) {
    olmo::comm::AbortWorld("a step failed on the leader; the other ranks may be inside it");
  }
  absl::Status st = group.Shutdown();
  if (args.report_ranks) report();
  if (!st.ok() && rc == 0) return Fail(st);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("olmo"));
  absl::StatusOr<olmo::tools::GenerateArgs> args = olmo::tools::ParseGenerateArgs(argc, argv);
  if (!args.ok()) return QuietRank() ? 1 : Fail(args.status());
  if (args->help) {
    std::fputs(olmo::tools::GenerateUsage().c_str(), stdout);
    return 0;
  }
  // Config first: bad prompts fail before the weights load, and the KV cache is sized from it.
  absl::StatusOr<olmo::ModelConfig> config = olmo::ModelConfig::Load(args->model_dir);
  const bool quiet = args->tp * args->pp > 1 && QuietRank();
  if (!config.ok()) return quiet ? 1 : Fail(config.status());
  if (!args->prompt_text.empty() || args->chat) {
    auto tok = MaybeTokenizer(args->model_dir);
    if (absl::Status st = TokenizePrompt(&*args, tok.get()); !st.ok()) return quiet ? 1 : Fail(st);
  }
  if (absl::Status st = CheckPrompts(*args, *config); !st.ok()) return quiet ? 1 : Fail(st);
  if (args->tp * args->pp > 1) return RunGroup(&argc, &argv, *args, *config);

  auto worker = olmo::step::LoadLocalWorker(args->model_dir, WorkerOptions(*args, 1));
  if (!worker.ok()) return Fail(worker.status());
  return Generate(*args, *config, (*worker)->fingerprint, (*worker)->runner.get());
}
