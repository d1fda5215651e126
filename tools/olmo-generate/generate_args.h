// Command line and --batch JSONL parsing of olmo-generate (contract in README.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/sampling_params.h"

namespace olmo::tools {

struct PromptSpec {
  std::vector<int32_t> prompt_ids;
  SamplingParams sampling;  // stop_token_ids left empty here; the tool adds the model's eos ids
  int32_t max_tokens = 32;
  bool ignore_eos = false;
};

struct GenerateArgs {
  std::string model_dir;
  std::vector<PromptSpec> prompts;
  int64_t max_batch_tokens = 512;
  int64_t block_size = 16;
  int64_t kv_cache_mib = 0;  // 0: enough for every prompt at once
  int threads = 0;           // 0: all cores
  bool blas_matmul = false;
  bool device_sampling = false;  // --sampling device
  DType kv_dtype = DType::kF32;   // --kv-dtype
  bool cuda_graphs = false;       // --cuda-graphs
  std::string device = "cpu";  // cpu | cuda
  std::string collectives = "auto";  // auto | nccl | host (tools/common/device_ops.h)
  int tp = 1;  // tensor-parallel ranks per stage (under mpirun)
  int pp = 1;  // pipeline stages (under mpirun)
  double watchdog_s = 300.0;  // a collective running longer aborts the group (0: off)
  bool report_ranks = false;  // each rank prints busy time and bytes sent per step
  // --prompt / --chat: text for prompts[0], tokenized by the model directory's tokenizer.json
  // (chat: rendered as one user turn with the checkpoint's chat template).
  std::string prompt_text;
  bool chat = false;
  bool help = false;
};

std::string GenerateUsage();
// Parses argv (and reads the --batch file). Errors name the flag, field or line.
absl::StatusOr<GenerateArgs> ParseGenerateArgs(int argc, char** argv);
// Parses "1,2,3".
absl::StatusOr<std::vector<int32_t>> ParseIdList(const std::string& text);

}  // namespace olmo::tools
