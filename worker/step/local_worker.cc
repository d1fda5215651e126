#include "worker/step/local_worker.h"

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cuda/memory_plan.h"
#include "spdlog/spdlog.h"
#include "worker/checkpoint/fingerprint.h"

namespace olmo::step {

absl::StatusOr<std::unique_ptr<LocalWorker>> LoadLocalWorker(const std::string& model_dir,
                                                             const LocalWorkerOptions& options) {
  if (options.block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("block_size: must be >= 1, got %d", options.block_size));
  }
  auto w = std::make_unique<LocalWorker>();
  // The backend and the collectives first: make_collectives is collective over the TP group, so
  // every rank must reach it whatever else fails later.
  absl::Status ops_status;
  if (options.make_ops) {
    auto ops = options.make_ops();
    ops_status = ops.status();
    if (ops.ok()) w->ops = std::move(*ops);
  } else {
    w->ops = kernels::MakeCpuOps(options.ops);
  }
  model::ModelOptions model_options = options.model;
  if (options.make_collectives) {
    auto comm = options.make_collectives(w->ops.get());
    OLMO_RETURN_IF_ERROR(ops_status);
    OLMO_RETURN_IF_ERROR(comm.status());
    w->collectives = std::move(*comm);
    if (w->collectives != nullptr) {
      model_options.host_collectives = options.model.collectives;  // the host Comm it replaces
      model_options.collectives = w->collectives.get();
    }
  }
  OLMO_RETURN_IF_ERROR(ops_status);
  if (options.kv_dtype != DType::kF32 && options.kv_dtype != DType::kBF16) {
    return absl::InvalidArgumentError("kv cache dtype: f32 or bf16");
  }
  if (options.model.graphs && !w->ops->supports_graphs()) {
    spdlog::warn("graphs for decode steps need a backend with graphs (--device cuda): ignored");
  }
  if (options.device_sampling && !w->ops->on_device()) {
    return absl::InvalidArgumentError("device sampling needs a device backend (--device cuda)");
  }
  OLMO_ASSIGN_OR_RETURN(w->config, ModelConfig::Load(model_dir));
  OLMO_ASSIGN_OR_RETURN(std::unique_ptr<checkpoint::Checkpoint> ckpt,
                        checkpoint::Checkpoint::Open(model_dir));
  OLMO_ASSIGN_OR_RETURN(w->fingerprint, checkpoint::ModelFingerprint(model_dir, *ckpt));
  w->checkpoint = std::move(ckpt);
  OLMO_ASSIGN_OR_RETURN(
      w->model, model::Olmo3Model::Load(w->config, w->checkpoint, w->ops.get(), model_options));
  kv::KvCacheShape shape;
  shape.kv_heads = w->model->local_kv_heads();
  shape.head_dim = w->config.head_dim;
  shape.block_size = options.block_size;
  shape.dtype = options.kv_dtype;
  const int64_t free_bytes = w->ops->free_memory_bytes();
  if (options.num_blocks > 0) {
    shape.num_blocks = {options.num_blocks, options.num_blocks};
  } else if (w->ops->on_device() && options.kv_memory_fraction > 0 && free_bytes > 0) {
    const ModelConfig& c = w->config;
    const int64_t layers = w->model->layer_end() - w->model->layer_begin();
    // Largest step's f32 workspaces: hidden, qkv, attention, projection, gate_up and activation
    // rows per token, plus the logits of every token of the step (an upper bound).
    const int64_t per_token =
        4 * (3 * c.hidden_size +
             2 * (w->model->local_q_heads() + w->model->local_kv_heads()) * c.head_dim +
             3 * c.intermediate_size + c.vocab_size);
    kernels::cuda::MemoryPlanInput in;
    in.free_bytes = free_bytes;
    in.activation_bytes = per_token * options.max_tokens_per_step;
    in.reserve_bytes = 512ll << 20;  // GEMM workspace, attention partials, allocator slack
    // The sampling ops' workspaces (full rows: Sample also runs on gathered rows at tp > 1).
    const int64_t sampling_bytes =
        options.device_sampling ? kernels::cuda::SamplingWorkspaceBound(c.vocab_size) : 0;
    in.reserve_bytes += sampling_bytes;
    in.kv_bytes_per_block = kernels::cuda::KvBytesPerBlock(layers, shape.kv_heads, shape.block_size,
                                                           shape.head_dim, shape.element_bytes());
    in.memory_fraction = options.kv_memory_fraction;
    OLMO_ASSIGN_OR_RETURN(kernels::cuda::MemoryPlan plan, kernels::cuda::PlanKvMemory(in));
    shape.num_blocks = {plan.num_kv_blocks, plan.num_kv_blocks};
    spdlog::info(
        "memory plan: {:.1f} GiB free after weights x {:.2f}, {:.1f} GiB activations "
        "and reserve (sampling workspace {:.2f} GiB) -> {} KV blocks ({:.1f} GiB)",
        free_bytes / 1073741824.0, options.kv_memory_fraction,
        (in.activation_bytes + in.reserve_bytes) / 1073741824.0, sampling_bytes / 1073741824.0,
        plan.num_kv_blocks, plan.kv_bytes / 1073741824.0);
  } else {
    shape.num_blocks =
        kv::KvCache::BlocksForBytes(options.kv_cache_bytes, shape, w->config.layer_types,
                                    w->model->layer_begin(), w->model->layer_end());
  }
  if (shape.num_blocks[kKvGroupFull] < 1) {
    return absl::InvalidArgumentError("kv cache: the budget holds no KV block");
  }
  auto cache = std::make_unique<kv::KvCache>(shape, w->config.layer_types, w->model->layer_begin(),
                                             w->model->layer_end(),
                                             w->ops->on_device() ? w->ops.get() : nullptr);
  if (!cache->ok()) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("kv cache: cannot allocate %d blocks (%.1f MiB) on the device",
                        shape.num_blocks[0], cache->total_bytes() / 1048576.0));
  }
  spdlog::info("KV cache: {} blocks x {} tokens per group, {:.1f} MiB", shape.num_blocks[0],
               shape.block_size, cache->total_bytes() / 1048576.0);
  w->runner = std::make_unique<StepRunner>(w->model.get(), std::move(cache),
                                           options.device_sampling ? w->ops.get() : nullptr);
  return w;
}

}  // namespace olmo::step
