// Olmo3Model: the Olmo 3 forward pass (docs/olmo3.md §3) for one pipeline stage of one rank, over
// a ragged batch (several sequences per step; prefill chunks and decode tokens mixed), calling
// only Ops. Post-norm blocks; full-width QK-norm before RoPE; YaRN on full-attention layers only.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/plan.h"
#include "kernels/ops.h"
#include "worker/checkpoint/checkpoint.h"
#include "worker/comm/comm.h"
#include "worker/kv/kv_cache.h"

namespace olmo::model {

// The block-table width of a graphed decode step: max_blocks rounded up to one of four widths
// per power of two (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, ...; at most 25% more), so that
// a context growing by one block does not make a new step shape (a plain step and a capture)
// every block_size tokens. Attention reads a table only up to each sequence's position.
int64_t GraphTableWidth(int64_t max_blocks);

struct ModelOptions {
  int64_t layer_begin = 0;
  int64_t layer_end = -1;  // -1: every layer
  // The documented wrong placement (YaRN on sliding layers too, as transformers 5.0-5.12 do).
  // Off by default; exists so the choice is explicit and testable.
  bool yarn_on_all_layers = false;
  // Tensor parallelism (Megatron layout, DESIGN.md §3): this rank holds q/k/v heads, the
  // intermediate slice and the vocabulary slice of tp_rank; `collectives` joins the TP group.
  int tp = 1;
  int tp_rank = 0;
  // This stage's TP group; required when tp > 1. A host Comm (MPI) takes host buffers: a device
  // backend stages its collectives through host memory (works anywhere, e.g. two ranks on one
  // GPU). A device Comm (NCCL on the backend's stream) takes the device buffers directly.
  comm::Comm* collectives = nullptr;
  // The same TP group over host memory (MPI), when `collectives` is a device Comm: the ranks
  // agree over it, each graphed step, on whether that step is captured, launched or run plainly
  // (NCCL requires the same choice on every rank). Graphs at tp > 1 need it.
  comm::Comm* host_collectives = nullptr;
  // Device backends with graphs (CUDA): decode steps run as captured graphs (one per step
  // shape), saving the launch overhead of ~15 kernels per layer. Needs stream-ordered
  // collectives (tp 1 or a device Comm); ignored elsewhere.
  bool graphs = false;
};

// One step's tokens, flattened. Row s of block_tables[g] is sequence s's table in KV group g.
struct ForwardBatch {
  std::vector<int32_t> token_ids;  // [num_tokens]
  std::vector<int32_t> positions;  // [num_tokens] absolute positions
  std::vector<int32_t> token_seq;  // [num_tokens] sequence row of each token
  std::array<std::vector<int32_t>, kNumKvGroups> block_tables;  // [num_seqs, max_blocks[g]]
  std::array<int64_t, kNumKvGroups> max_blocks = {0, 0};
  std::array<std::vector<int64_t>, kNumKvGroups> slots;  // [num_tokens] cache slot per group
  std::vector<int32_t> logit_rows;  // token indices whose logits are returned, in order
  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
};

class Olmo3Model {
 public:
  // Loads and packs this stage's weights. `checkpoint` must outlive the model (the embedding is
  // read from the mapping). Logs progress per layer.
  static absl::StatusOr<std::unique_ptr<Olmo3Model>> Load(
      const ModelConfig& config, std::shared_ptr<const checkpoint::Checkpoint> checkpoint,
      kernels::Ops* ops, const ModelOptions& options);

  const ModelConfig& config() const { return config_; }
  kernels::Ops* ops() const { return ops_; }
  int64_t layer_begin() const { return layer_begin_; }
  int64_t layer_end() const { return layer_end_; }
  // Weight bytes one step reads (all packed matrices; the embedding rows are negligible).
  int64_t weight_bytes() const { return weight_bytes_; }
  // Heads this rank holds (local KV-cache shape).
  int64_t local_q_heads() const { return nq_; }
  int64_t local_kv_heads() const { return nkv_; }

  bool is_first_stage() const { return layer_begin_ == 0; }
  bool is_last_stage() const { return layer_end_ == config_.num_hidden_layers; }

  // Runs the batch through every layer of the model; writes f32 [logit_rows.size(), vocab] logits.
  absl::Status Forward(const ForwardBatch& batch, kv::KvCache* cache, std::vector<float>* logits);
  // One pipeline stage: the first stage embeds batch.token_ids, later stages take hidden_in
  // (f32 [num_tokens, hidden], the previous stage's output). Non-last stages write their output
  // hidden states f32 [num_tokens, hidden] to `out`; the last stage writes logits
  // f32 [logit_rows.size(), vocab].
  absl::Status ForwardStage(const ForwardBatch& batch, kv::KvCache* cache, const float* hidden_in,
                            std::vector<float>* out);
  // The last stage on a device backend, with the logits left in backend memory (for sampling on
  // the device): returns f32 [logit_rows.size(), vocab], valid until the next forward.
  // Decode steps run as graph launches so far (ModelOptions::graphs).
  int64_t graph_launches() const { return graph_launches_; }
  absl::StatusOr<const float*> ForwardStageToBackend(const ForwardBatch& batch, kv::KvCache* cache,
                                                     const float* hidden_in);

  // Vocab-parallel sampling (tp > 1, last stage). ForwardStageLogitSlice runs the stage and
  // leaves this rank's logits f32 [logit_rows.size(), vocab_local()] (columns
  // [vocab_begin(), vocab_begin() + vocab_local()) of the full rows) in backend memory, valid
  // until the next forward. GatherLogitRows then gathers the rows listed (ascending indices into
  // logit_rows) over the TP group as f32 [rows.size(), vocab]: into *host, or (device backends,
  // host null) into backend memory valid until the next forward. Every rank of the group makes
  // the same calls.
  absl::StatusOr<const float*> ForwardStageLogitSlice(const ForwardBatch& batch, kv::KvCache* cache,
                                                      const float* hidden_in);
  absl::StatusOr<const float*> GatherLogitRows(const std::vector<int32_t>& rows,
                                               std::vector<float>* host);
  int tp() const { return tp_; }
  comm::Comm* tp_comm() const { return tpc_; }
  int64_t vocab_begin() const { return vocab_begin_; }
  int64_t vocab_local() const { return vocab_local_; }

 private:
  struct Layer {
    std::unique_ptr<kernels::PackedWeight> qkv;      // [q_width + 2 kv_width, hidden]
    std::unique_ptr<kernels::PackedWeight> o;        // [hidden, q_width]
    std::unique_ptr<kernels::PackedWeight> gate_up;  // [2 intermediate, hidden]
    std::unique_ptr<kernels::PackedWeight> down;     // [hidden, intermediate]
    kernels::OpsBuffer<float> q_norm, k_norm, post_attn_norm, post_ff_norm;  // f32, backend memory
    const kernels::RopeTable* rope = nullptr;
    int64_t window = 0;  // 0 = full attention
    int group = 0;       // KV group
  };

  Olmo3Model() = default;
  absl::Status RunLayer(int64_t layer_index, const Layer& layer, const ForwardBatch& batch,
                        kv::KvCache* cache);

  ModelConfig config_;
  std::shared_ptr<const checkpoint::Checkpoint> checkpoint_;
  kernels::Ops* ops_ = nullptr;
  int64_t layer_begin_ = 0;
  int64_t layer_end_ = 0;
  kernels::WeightView embedding_;  // the checkpoint mapping, or embedding_copy_ on a device
  kernels::OpsBuffer<uint8_t> embedding_copy_;
  std::unique_ptr<kernels::PackedWeight> lm_head_;
  kernels::OpsBuffer<float> final_norm_;
  kernels::RopeTable rope_full_, rope_sliding_;
  std::vector<Layer> layers_;
  int64_t weight_bytes_ = 0;
  // Workspaces in the backend's memory, resized per step.
  kernels::OpsBuffer<float> x_, qkv_, attn_, proj_, gate_up_, act_, sum_sq_, final_x_;
  // Device Comm: local logits padded to [R, vmax], and the gathered [tp, R, vmax]. Device
  // backends: the step's logits [R, vocab].
  kernels::OpsBuffer<float> padded_dev_, gathered_dev_, logits_dev_;
  std::vector<float> gathered_;  // host (TP all-gather of logits)
  std::vector<float> staging_;   // host copy of device data for a host Comm (device backends)
  // The step's inputs in backend memory (device backends only; the CPU reads the batch itself).
  kernels::OpsBuffer<int32_t> ids_dev_, positions_dev_, token_seq_dev_;
  std::array<kernels::OpsBuffer<int32_t>, kNumKvGroups> tables_dev_;
  std::array<kernels::OpsBuffer<int64_t>, kNumKvGroups> slots_dev_;
  struct StepInputs {
    const int32_t *ids, *positions, *token_seq;
    const int32_t* tables[kNumKvGroups];
    const int64_t* slots[kNumKvGroups];
    int64_t table_width[kNumKvGroups];  // row stride of tables[g]: max_blocks[g], or padded
  };
  StepInputs inputs_{};
  std::array<std::vector<int32_t>, kNumKvGroups> padded_tables_;  // host rows at table_width
  absl::Status StageInputs(const ForwardBatch& batch);
  // Host-side work before the layers: workspaces sized, inputs staged, ids checked, hidden_in
  // copied into x_ (later stages).
  absl::Status Prepare(const ForwardBatch& batch, const float* hidden_in);
  // Embedding (first stage), then this stage's layers: leaves x_ [T, hidden]. Only backend work.
  absl::Status RunLayers(const ForwardBatch& batch, kv::KvCache* cache);
  bool Graphable(const ForwardBatch& batch) const;
  absl::Status RunGraphed(const ForwardBatch& batch, kv::KvCache* cache, bool gather);
  // What a graph holds: the addresses of the model's buffers and the backend's workspace epoch.
  struct GraphMemory {
    std::vector<const void*> addresses;
    int64_t workspace_epoch = 0;
    bool operator==(const GraphMemory&) const = default;
  };
  GraphMemory CurrentGraphMemory() const;
  void DropAllGraphs();
  // Drops every graph when a buffer or workspace was reallocated since they were captured.
  void DropStaleGraphs();
  // Runs this model without graphs from now on (a failed capture), with a warning.
  void DisableGraphs(const std::string& why);
  // The least of every TP rank's `value` (this rank's alone at tp 1), over the host Comm.
  absl::StatusOr<int32_t> AgreeMin(int32_t value);
  static constexpr size_t kMaxGraphs = 256;
  bool use_graphs_ = false;
  // (tokens, max_blocks full, sliding, logits gathered) -> graph handle, -1 when seen once
  // (warm-up) and not captured yet.
  std::map<std::array<int64_t, 4>, int64_t> graphs_;
  GraphMemory graph_memory_;  // what graphs_ was captured against
  comm::Comm* host_tpc_ = nullptr;
  int64_t graph_launches_ = 0;
  absl::Status Logits(const ForwardBatch& batch, std::vector<float>* host);
  absl::Status LocalLogits(const ForwardBatch& batch, std::vector<float>* host);
  absl::Status GatherRows(const std::vector<int32_t>& rows, std::vector<float>* host);
  int64_t logit_rows_ = 0;  // logit rows of the step being run (set by Prepare)
  void BindBuffers();
  // Tensor parallelism.
  int tp_ = 1;
  comm::Comm* tpc_ = nullptr;
  int64_t nq_ = 0, nkv_ = 0;    // local heads
  bool kv_stats_owner_ = true;  // this rank adds its k-norm statistics (first replica)
  int64_t inter_local_ = 0;
  int64_t vocab_begin_ = 0, vocab_local_ = 0, vocab_slice_max_ = 0;
  absl::Status AllReduce(float* data, int64_t n);
  absl::Status ReduceSumSquares(int64_t num_tokens);
};

}  // namespace olmo::model
