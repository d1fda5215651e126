#include "tools/olmo-generate/generate_args.h"

#include <charconv>
#include <fstream>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace olmo::tools {
namespace {

template <typename T>
absl::StatusOr<T> ParseNumber(const std::string& flag, const std::string& text) {
  T value{};
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: not a valid number: '%s'", flag, text));
  }
  return value;
}

// Checks sampling values; `where` prefixes the message ("--top-p" or "line 3: top_p").
absl::Status ValidateSpec(const PromptSpec& p, const std::string& where) {
  const SamplingParams& s = p.sampling;
  auto bad = [&](const std::string& field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(where, field, ": ", why));
  };
  if (!(s.temperature >= 0.0f)) return bad("temperature", "must be >= 0");
  if (s.top_k < 0) return bad("top_k", "must be >= 0 (0 disables)");
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) return bad("top_p", "must be in (0, 1]");
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) return bad("min_p", "must be in [0, 1]");
  if (!(s.repetition_penalty > 0.0f)) return bad("repetition_penalty", "must be > 0");
  if (!(s.presence_penalty >= -2.0f && s.presence_penalty <= 2.0f))
    return bad("presence_penalty", "must be in [-2, 2]");
  if (!(s.frequency_penalty >= -2.0f && s.frequency_penalty <= 2.0f))
    return bad("frequency_penalty", "must be in [-2, 2]");
  if (s.min_tokens < 0) return bad("min_tokens", "must be >= 0");
  if (s.logprobs < 0 || s.logprobs > 20) return bad("logprobs", "must be in [0, 20]");
  if (p.max_tokens < 1) return bad("max_tokens", "must be >= 1");
  if (p.prompt_ids.empty()) return bad("prompt_ids", "must not be empty");
  for (int32_t id : p.prompt_ids) {
    if (id < 0) return bad("prompt_ids", absl::StrFormat("negative token id %d", id));
  }
  return absl::OkStatus();
}

// Applies the per-prompt overrides of one --batch line to `spec`.
absl::Status ApplyJsonLine(const nlohmann::json& j, int line, PromptSpec* spec) {
  std::string where = absl::StrFormat("--batch line %d: ", line);
  if (!j.is_object()) return absl::InvalidArgumentError(where + "not a JSON object");
  if (!j.contains("prompt_ids") || !j["prompt_ids"].is_array()) {
    return absl::InvalidArgumentError(where + "prompt_ids: missing or not an array");
  }
  spec->prompt_ids.clear();
  for (const auto& v : j["prompt_ids"]) {
    if (!v.is_number_integer()) {
      return absl::InvalidArgumentError(where + "prompt_ids: every entry must be an integer");
    }
    spec->prompt_ids.push_back(v.get<int32_t>());
  }
  static const std::map<std::string, int> kFields = {
      {"temperature", 0}, {"top_k", 1}, {"top_p", 2}, {"min_p", 3},
      {"repetition_penalty", 4}, {"presence_penalty", 5}, {"frequency_penalty", 6},
      {"min_tokens", 7}, {"max_tokens", 8}, {"seed", 9}, {"logprobs", 10}, {"ignore_eos", 11},
      {"prompt_ids", -1}};
  for (const auto& [key, value] : j.items()) {
    auto it = kFields.find(key);
    if (it == kFields.end()) return absl::InvalidArgumentError(where + "unknown field '" + key + "'");
    if (it->second == -1) continue;
    bool is_bool_field = it->second == 11;
    if (is_bool_field ? !value.is_boolean() : !value.is_number()) {
      return absl::InvalidArgumentError(
          where + key + (is_bool_field ? ": must be true or false" : ": must be a number"));
    }
    bool int_field = it->second == 1 || it->second == 7 || it->second == 8 || it->second == 9 ||
                     it->second == 10;
    if (int_field && !value.is_number_integer()) {
      return absl::InvalidArgumentError(where + key + ": must be an integer");
    }
    SamplingParams& s = spec->sampling;
    switch (it->second) {
      case 0: s.temperature = value.get<float>(); break;
      case 1: s.top_k = value.get<int32_t>(); break;
      case 2: s.top_p = value.get<float>(); break;
      case 3: s.min_p = value.get<float>(); break;
      case 4: s.repetition_penalty = value.get<float>(); break;
      case 5: s.presence_penalty = value.get<float>(); break;
      case 6: s.frequency_penalty = value.get<float>(); break;
      case 7: s.min_tokens = value.get<int32_t>(); break;
      case 8: spec->max_tokens = value.get<int32_t>(); break;
      case 9: s.seed = value.get<uint64_t>(); break;
      case 10: s.logprobs = value.get<int32_t>(); break;
      case 11: spec->ignore_eos = value.get<bool>(); break;
    }
  }
  return ValidateSpec(*spec, where);
}

}  // namespace

std::string GenerateUsage() {
  return R"(olmo-generate: offline Olmo 3 generation on the CPU (the reference driver).

Usage:
  olmo-generate --model DIR (--prompt-ids 1,2,3 | --prompt TEXT | --chat TEXT | --batch FILE.jsonl)
                [options]

Input:
  --model DIR              HF checkpoint directory (config.json, safetensors; optional
                           generation_config.json, whose eos_token_id are the stop ids)
  --prompt-ids IDS         one prompt as comma-separated token ids
  --prompt TEXT            one prompt as text (needs tokenizer.json in the model directory;
                           added-token text such as <|im_start|> becomes control tokens)
  --chat TEXT              one user message rendered with the checkpoint's chat template
                           (chat_template.jinja or tokenizer_config.json)
  --batch FILE             JSONL, one {"prompt_ids":[...]} per line, with optional per-prompt
                           overrides: temperature top_k top_p min_p repetition_penalty
                           presence_penalty frequency_penalty min_tokens max_tokens seed
                           logprobs ignore_eos. All lines run together as one batch.
Sampling (defaults for every prompt):
  --max-tokens N           output tokens at most (default 32)
  --temperature T          0 = greedy (default 1.0)
  --top-k K                keep the K most likely tokens (default 0 = off)
  --top-p P                nucleus mass in (0, 1] (default 1 = off)
  --min-p P                drop tokens below P x max probability (default 0 = off)
  --seed S                 Philox seed; same prompt + seed gives the same output (default 0)
  --logprobs K             also report the K most likely tokens per step, K <= 20 (default 0)
  --repetition-penalty R   HF semantics over prompt + output (default 1 = off)
  --presence-penalty P     OpenAI semantics over output (default 0)
  --frequency-penalty F    OpenAI semantics over output (default 0)
  --min-tokens N           stop ids are banned until N tokens are generated (default 0)
  --ignore-eos             do not stop at stop ids
Engine:
  --max-batch-tokens N     token budget of one step; longer prompts are prefilled in chunks
                           (default 512)
  --block-size N           tokens per KV-cache block (default 16)
  --kv-cache-mib N         KV cache size; default: enough for every prompt at once
  --kv-dtype f32|bf16      KV cache element type (bf16: half the bytes; default f32)
  --threads N              compute threads (default: all cores)
  --device cpu|cuda        compute backend (cuda: the GPU of the rank's local rank; default cpu)
  --matmul blas            use f32 panels + OpenBLAS sgemm instead of the packed BF16 kernel
                           (faster prefill, not batch-invariant)
Parallel (launch tp x pp ranks with mpirun; rank 0 prints, see deploy/local/mpirun.sh):
  --tp N                   tensor-parallel ranks per pipeline stage (default 1)
  --cuda-graphs            run decode steps as CUDA graphs (--device cuda; tp 1 or NCCL)
  --sampling host|device   where tokens are drawn: host (logits copied back; default) or device
                           (the Sample op on the GPU, --device cuda only)
  --collectives MODE       TP collectives: auto (NCCL when every TP rank has its own GPU, else
                           MPI), nccl, or host (MPI; device buffers staged through host memory)
  --pp N                   pipeline stages (default 1)
  --watchdog-seconds S     a rank stuck in a collective this long aborts the whole group
                           (default 300; 0 disables)
  --report-ranks           each rank prints its busy time and bytes sent per step, and the
                           last stage how many rows were sampled from vocab-slice reports
                           (stderr)
  --help                   this text

Output: one JSON object per prompt on stdout, in input order:
  {"prompt_ids":[...],"token_ids":[...],"logprobs":[...],"top_logprobs":[[{"id":..,"logprob":..}]],
   "finish_reason":"stop"|"length"}  (plus "text", the decoded output, when the model directory
  has a tokenizer.json)
logprobs[i] is the log-probability of token_ids[i] under the unmodified model distribution. A stop
token ends generation and is included in token_ids. Logs go to stderr.
)";
}

absl::StatusOr<std::vector<int32_t>> ParseIdList(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::string p(part);
    OLMO_ASSIGN_OR_RETURN(int32_t id, ParseNumber<int32_t>("--prompt-ids", p));
    ids.push_back(id);
  }
  return ids;
}

absl::StatusOr<GenerateArgs> ParseGenerateArgs(int argc, char** argv) {
  GenerateArgs args;
  PromptSpec defaults;
  std::optional<std::string> prompt_ids, batch_file, prompt_text;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      args.help = true;
      return args;
    }
    if (flag == "--ignore-eos") {
      defaults.ignore_eos = true;
      continue;
    }
    if (flag == "--cuda-graphs") {
      args.cuda_graphs = true;
      continue;
    }
    if (flag == "--report-ranks") {
      args.report_ranks = true;
      continue;
    }
    if (i + 1 >= argc) return absl::InvalidArgumentError(flag + ": missing value");
    std::string v = argv[++i];
    SamplingParams& s = defaults.sampling;
    if (flag == "--model") args.model_dir = v;
    else if (flag == "--prompt-ids") prompt_ids = v;
    else if (flag == "--batch") batch_file = v;
    else if (flag == "--prompt") prompt_text = v;
    else if (flag == "--chat") { prompt_text = v; args.chat = true; }
    else if (flag == "--max-tokens") { OLMO_ASSIGN_OR_RETURN(defaults.max_tokens, ParseNumber<int32_t>(flag, v)); }
    else if (flag == "--temperature") { OLMO_ASSIGN_OR_RETURN(s.temperature, ParseNumber<float>(flag, v)); }
    else if (flag == "--top-k") { OLMO_ASSIGN_OR_RETURN(s.top_k, ParseNumber<int32_t>(flag, v)); }
    else if (flag == "--top-p") { OLMO_ASSIGN_OR_RETURN(s.top_p, ParseNumber<float>(flag, v)); }
    else if (flag == "--min-p") { OLMO_ASSIGN_OR_RETURN(s.min_p, ParseNumber<float>(flag, v)); }
    else if (flag == "--seed") { OLMO_ASSIGN_OR_RETURN(s.seed, ParseNumber<uint64_t>(flag, v)); }
    else if (flag == "--logprobs") { OLMO_ASSIGN_OR_RETURN(s.logprobs, ParseNumber<int32_t>(flag, v)); }
    else if (flag == "--repetition-penalty") { OLMO_ASSIGN_OR_RETURN(s.repetition_penalty, ParseNumber<float>(flag, v)); }
    else if (flag == "--presence-penalty") { OLMO_ASSIGN_OR_RETURN(s.presence_penalty, ParseNumber<float>(flag, v)); }
    else if (flag == "--frequency-penalty") { OLMO_ASSIGN_OR_RETURN(s.frequency_penalty, ParseNumber<float>(flag, v)); }
    else if (flag == "--min-tokens") { OLMO_ASSIGN_OR_RETURN(s.min_tokens, ParseNumber<int32_t>(flag, v)); }
    else if (flag == "--max-batch-tokens") { OLMO_ASSIGN_OR_RETURN(args.max_batch_tokens, ParseNumber<int64_t>(flag, v)); }
    else if (flag == "--block-size") { OLMO_ASSIGN_OR_RETURN(args.block_size, ParseNumber<int64_t>(flag, v)); }
    else if (flag == "--kv-cache-mib") { OLMO_ASSIGN_OR_RETURN(args.kv_cache_mib, ParseNumber<int64_t>(flag, v)); }
    else if (flag == "--device") { args.device = v; }
    else if (flag == "--collectives") {
      if (v != "auto" && v != "nccl" && v != "host") return absl::InvalidArgumentError("--collectives: expected auto, nccl or host");
      args.collectives = v;
    }
    else if (flag == "--threads") { OLMO_ASSIGN_OR_RETURN(args.threads, ParseNumber<int>(flag, v)); }
    else if (flag == "--tp") { OLMO_ASSIGN_OR_RETURN(args.tp, ParseNumber<int>(flag, v)); }
    else if (flag == "--pp") { OLMO_ASSIGN_OR_RETURN(args.pp, ParseNumber<int>(flag, v)); }
    else if (flag == "--watchdog-seconds") { OLMO_ASSIGN_OR_RETURN(args.watchdog_s, ParseNumber<double>(flag, v)); }
    else if (flag == "--kv-dtype") {
      if (v != "f32" && v != "bf16") return absl::InvalidArgumentError("--kv-dtype: expected f32 or bf16");
      args.kv_dtype = v == "bf16" ? DType::kBF16 : DType::kF32;
    }
    else if (flag == "--sampling") {
      if (v != "host" && v != "device") return absl::InvalidArgumentError("--sampling: expected host or device");
      args.device_sampling = v == "device";
    }
    else if (flag == "--matmul") {
      if (v != "blas" && v != "packed") return absl::InvalidArgumentError("--matmul: expected packed or blas");
      args.blas_matmul = v == "blas";
    } else {
      return absl::InvalidArgumentError("unknown flag " + flag + " (see --help)");
    }
  }
  if (args.model_dir.empty()) return absl::InvalidArgumentError("--model: required");
  if (prompt_ids.has_value() + batch_file.has_value() + prompt_text.has_value() != 1) {
    return absl::InvalidArgumentError(
        "give exactly one of --prompt-ids, --prompt, --chat and --batch");
  }
  if (args.max_batch_tokens < 1) return absl::InvalidArgumentError("--max-batch-tokens: must be >= 1");
  if (args.block_size < 1) return absl::InvalidArgumentError("--block-size: must be >= 1");
  if (args.kv_cache_mib < 0) return absl::InvalidArgumentError("--kv-cache-mib: must be >= 0");
  if (args.threads < 0) return absl::InvalidArgumentError("--threads: must be >= 0");
  if (args.tp < 1 || args.pp < 1) return absl::InvalidArgumentError("--tp and --pp: must be >= 1");
  if (prompt_text.has_value()) {  // tokenized once the model directory is known
    PromptSpec p = defaults;
    p.prompt_ids = {0};
    OLMO_RETURN_IF_ERROR(ValidateSpec(p, "--"));
    p.prompt_ids.clear();
    args.prompt_text = *prompt_text;
    args.prompts.push_back(std::move(p));
    return args;
  }
  if (prompt_ids.has_value()) {
    PromptSpec p = defaults;
    OLMO_ASSIGN_OR_RETURN(p.prompt_ids, ParseIdList(*prompt_ids));
    OLMO_RETURN_IF_ERROR(ValidateSpec(p, "--"));
    args.prompts.push_back(std::move(p));
    return args;
  }
  OLMO_RETURN_IF_ERROR(ValidateSpec([&] { PromptSpec p = defaults; p.prompt_ids = {0}; return p; }(), "--"));
  std::ifstream in(*batch_file);
  if (!in) return absl::NotFoundError("--batch: cannot open " + *batch_file);
  std::string text;
  int line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      return absl::InvalidArgumentError(absl::StrFormat("--batch line %d: invalid JSON", line));
    }
    PromptSpec p = defaults;
    OLMO_RETURN_IF_ERROR(ApplyJsonLine(j, line, &p));
    args.prompts.push_back(std::move(p));
  }
  if (args.prompts.empty()) return absl::InvalidArgumentError("--batch: no prompts in " + *batch_file);
  return args;
}

}  // namespace olmo::tools
