#include "worker/step/local_worker.h"

#include "absl/strings/str_format.h"
#include "worker/checkpoint/fingerprint.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace olmo::step {

absl::StatusOr<std::unique_ptr<LocalWorker>> LoadLocalWorker(const std::string& model_dir,
                                                             const LocalWorkerOptions& options) {
  if (options.block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("block_size: must be >= 1, got %d", options.block_size));
  }
  auto w = std::make_unique<LocalWorker>();
  OLMO_ASSIGN_OR_RETURN(w->config, ModelConfig::Load(model_dir));
  OLMO_ASSIGN_OR_RETURN(std::unique_ptr<checkpoint::Checkpoint> ckpt,
                        checkpoint::Checkpoint::Open(model_dir));
  OLMO_ASSIGN_OR_RETURN(w->fingerprint, checkpoint::ModelFingerprint(model_dir, *ckpt));
  w->checkpoint = std::move(ckpt);
  if (options.make_ops) {
    OLMO_ASSIGN_OR_RETURN(w->ops, options.make_ops());
  } else {
    w->ops = kernels::MakeCpuOps(options.ops);
  }
  OLMO_ASSIGN_OR_RETURN(w->model,
                        model::Olmo3Model::Load(w->config, w->checkpoint, w->ops.get(),
                                                options.model));
  kv::KvCacheShape shape;
  shape.kv_heads = w->model->local_kv_heads();
  shape.head_dim = w->config.head_dim;
  shape.block_size = options.block_size;
  if (options.num_blocks > 0) {
    shape.num_blocks = {options.num_blocks, options.num_blocks};
  } else {
    shape.num_blocks = kv::KvCache::BlocksForBytes(options.kv_cache_bytes, shape,
                                                   w->config.layer_types, w->model->layer_begin(),
                                                   w->model->layer_end());
  }
  if (shape.num_blocks[kKvGroupFull] < 1) {
    return absl::InvalidArgumentError("kv cache: the budget holds no KV block");
  }
  auto cache = std::make_unique<kv::KvCache>(
      shape, w->config.layer_types, w->model->layer_begin(), w->model->layer_end(),
      w->ops->on_device() ? w->ops.get() : nullptr);
  if (!cache->ok()) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "kv cache: cannot allocate %d blocks (%.1f MiB) on the device", shape.num_blocks[0],
        cache->total_bytes() / 1048576.0));
  }
  spdlog::info("KV cache: {} blocks x {} tokens per group, {:.1f} MiB", shape.num_blocks[0],
               shape.block_size, cache->total_bytes() / 1048576.0);
  w->runner = std::make_unique<StepRunner>(w->model.get(), std::move(cache));
  return w;
}

}  // namespace olmo::step
