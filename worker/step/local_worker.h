// LocalWorker: everything one rank needs to run the whole model in-process: config, mapped
// checkpoint, CPU ops, the model, its KV cache and the StepRunner (the in-process StepExecutor).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "kernels/ops.h"
#include "worker/checkpoint/checkpoint.h"
#include "worker/model/olmo3_model.h"
#include "worker/step/step_runner.h"

namespace olmo::step {

struct LocalWorkerOptions {
  int64_t block_size = 16;  // tokens per KV block
  int64_t num_blocks = 0;   // KV blocks per group; 0 -> from kv_cache_bytes
  int64_t kv_cache_bytes = 256ll << 20;
  // KV cache element type: f32, or bf16 (half the bytes per token; attention widens exactly).
  DType kv_dtype = DType::kF32;
  // Device backends: when > 0, the KV cache takes this fraction of the device memory left free
  // after the weights are loaded, less the activation workspace of a max_tokens_per_step step
  // and a fixed reserve (kernels/cuda/memory_plan.h), instead of kv_cache_bytes.
  double kv_memory_fraction = 0.0;
  int64_t max_tokens_per_step = 512;
  kernels::CpuOpsOptions ops;
  // Another backend (e.g. CUDA): when set, its Ops run the model and hold the KV cache.
  std::function<absl::StatusOr<std::unique_ptr<kernels::Ops>>()> make_ops;
  model::ModelOptions model;
  // Device backends: sample with the backend's Sample op where the logits are (GPU sampling)
  // instead of copying [rows, vocab] logits to the host sampler.
  bool device_sampling = false;
  // Device collectives for the TP group, built once the backend exists (e.g. NCCL on its
  // stream). Called on every rank, with null when this rank's backend failed, so that a
  // collective set-up can agree on failure instead of hanging. Returns the Comm the model uses
  // instead of model.collectives, or null to keep model.collectives.
  std::function<absl::StatusOr<std::unique_ptr<comm::Comm>>(kernels::Ops* ops)> make_collectives;
};

struct LocalWorker {
  ModelConfig config;
  std::shared_ptr<const checkpoint::Checkpoint> checkpoint;
  std::unique_ptr<kernels::Ops> ops;
  std::unique_ptr<comm::Comm> collectives;  // from make_collectives (outlives the model)
  std::unique_ptr<model::Olmo3Model> model;
  std::unique_ptr<StepRunner> runner;
  std::string fingerprint;  // checkpoint::ModelFingerprint
};

// Loads `model_dir` (config.json, optional generation_config.json, safetensors).
absl::StatusOr<std::unique_ptr<LocalWorker>> LoadLocalWorker(const std::string& model_dir,
                                                             const LocalWorkerOptions& options);

}  // namespace olmo::step
