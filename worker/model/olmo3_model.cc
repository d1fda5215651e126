#include "worker/model/olmo3_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_format.h"
#include "common/parallel_config.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace olmo::model {
namespace {

namespace names = checkpoint::names;

absl::StatusOr<std::vector<float>> Vector(const checkpoint::Checkpoint& ckpt,
                                          const std::string& name) {
  OLMO_ASSIGN_OR_RETURN(checkpoint::TensorView t, ckpt.Get(name));
  std::vector<float> out(static_cast<size_t>(t.numel()));
  ConvertToF32(t.data, t.dtype, t.numel(), out.data());
  return out;
}

// Rows [begin, end) of a 2-D tensor as a weight view (no copy).
absl::StatusOr<kernels::WeightView> RowSlice(const checkpoint::Checkpoint& ckpt,
                                             const std::string& name, int64_t begin, int64_t end) {
  OLMO_ASSIGN_OR_RETURN(checkpoint::TensorView t, ckpt.GetRows(name, begin, end));
  if (t.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrFormat("tensor %s: expected rank 2", name));
  }
  return kernels::WeightView{t.data, t.dtype, t.shape[0], t.shape[1]};
}

absl::StatusOr<std::unique_ptr<kernels::PackedWeight>> PackViews(
    kernels::Ops* ops, std::vector<kernels::WeightView> views) {
  return ops->PackWeight(views);
}

// Columns [begin, end) of a 2-D tensor, copied, then packed.
absl::StatusOr<std::unique_ptr<kernels::PackedWeight>> PackColumns(
    kernels::Ops* ops, const checkpoint::Checkpoint& ckpt, const std::string& name, int64_t begin,
    int64_t end) {
  OLMO_ASSIGN_OR_RETURN(checkpoint::OwnedTensor t, ckpt.ReadColumns(name, begin, end));
  kernels::WeightView v{t.bytes.data(), t.dtype, t.shape[0], t.shape[1]};
  return ops->PackWeight(std::span<const kernels::WeightView>(&v, 1));
}

// v[begin, end) copied into the backend's memory.
absl::StatusOr<kernels::OpsBuffer<float>> ToBackend(kernels::Ops* ops, const std::vector<float>& v,
                                                    int64_t begin = 0, int64_t end = -1) {
  if (end < 0) end = static_cast<int64_t>(v.size());
  kernels::OpsBuffer<float> b(ops);
  if (!b.Upload(v.data() + begin, static_cast<size_t>(end - begin))) {
    return absl::ResourceExhaustedError("out of backend memory for a norm weight");
  }
  return b;
}

// Uploads n elements, growing the buffer geometrically: a step slightly larger than every earlier
// one does not reallocate it (which would make every captured graph stale).
template <typename T>
bool UploadGrowing(kernels::OpsBuffer<T>& buf, const T* host, size_t n) {
  if (n > buf.capacity() && !buf.resize(std::max(n, 2 * buf.capacity()))) return false;
  return buf.Upload(host, n);
}

absl::Status Resize(kernels::OpsBuffer<float>& b, int64_t n, const char* what) {
  if (!b.resize(static_cast<size_t>(n))) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("out of backend memory for the %s workspace (%d floats)", what, n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Olmo3Model>> Olmo3Model::Load(
    const ModelConfig& config, std::shared_ptr<const checkpoint::Checkpoint> checkpoint,
    kernels::Ops* ops, const ModelOptions& options) {
  OLMO_RETURN_IF_ERROR(checkpoint->ValidateFor(config));
  std::unique_ptr<Olmo3Model> m(new Olmo3Model());
  m->config_ = config;
  m->checkpoint_ = checkpoint;
  m->ops_ = ops;
  m->layer_begin_ = options.layer_begin;
  m->layer_end_ = options.layer_end < 0 ? config.num_hidden_layers : options.layer_end;
  if (m->layer_begin_ < 0 || m->layer_begin_ >= m->layer_end_ ||
      m->layer_end_ > config.num_hidden_layers) {
    return absl::InvalidArgumentError(
        absl::StrFormat("layer range [%d, %d) is not inside the model's %d layers", m->layer_begin_,
                        m->layer_end_, config.num_hidden_layers));
  }
  const checkpoint::Checkpoint& ckpt = *checkpoint;
  m->tp_ = options.tp;
  m->tpc_ = options.collectives;
  if (m->tp_ > 1 &&
      (m->tpc_ == nullptr || m->tpc_->size() != m->tp_ || m->tpc_->rank() != options.tp_rank)) {
    return absl::InvalidArgumentError("tp > 1 needs TP collectives of that size and rank");
  }
  OLMO_ASSIGN_OR_RETURN(ParallelConfig pc,
                        ParallelConfig::Make(options.tp, 1, options.tp_rank, options.tp, config));
  const HeadShard hs = pc.heads(config);
  const int64_t D = config.head_dim;
  m->nq_ = hs.num_q_heads;
  m->nkv_ = hs.num_kv_heads;
  const Slice inter = SplitEvenly(config.intermediate_size, options.tp, options.tp_rank);
  const Slice vocab = SplitEvenly(config.vocab_size, options.tp, options.tp_rank);
  m->inter_local_ = inter.size();
  m->vocab_begin_ = vocab.begin;
  m->vocab_local_ = vocab.size();
  m->vocab_slice_max_ = SplitEvenly(config.vocab_size, options.tp, 0).size();
  if (options.tp > 1 && options.collectives->memory_space() == comm::MemorySpace::kDevice &&
      !ops->on_device()) {
    return absl::InvalidArgumentError(
        "device collectives (NCCL) need a device backend: use --device cuda, or a host Comm");
  }
  // Replicas of a kv slice are consecutive tp ranks; the first of them contributes the k-norm
  // statistics, the others add zeros, so each distinct slice counts once (exactly).
  m->kv_stats_owner_ = options.tp_rank % hs.kv_replication == 0;
  m->host_tpc_ = options.host_collectives;
  if (m->host_tpc_ == nullptr && m->tpc_ != nullptr &&
      m->tpc_->memory_space() == comm::MemorySpace::kHost) {
    m->host_tpc_ = m->tpc_;
  }
  m->use_graphs_ = options.graphs && ops->supports_graphs();
  if (m->use_graphs_ && m->tp_ > 1 && m->host_tpc_ == nullptr) {
    spdlog::warn("graphs at tp > 1 need the TP group's host Comm (to agree on captures): off");
    m->use_graphs_ = false;
  }
  m->BindBuffers();
  m->rope_full_ = kernels::MakeRopeTable(config.rope_full, config.head_dim);
  m->rope_sliding_ = kernels::MakeRopeTable(
      options.yarn_on_all_layers ? config.rope_full : config.rope_sliding, config.head_dim);

  if (m->is_first_stage()) {
    OLMO_ASSIGN_OR_RETURN(m->embedding_,
                          RowSlice(ckpt, names::Embedding(), vocab.begin, vocab.end));
    if (ops->on_device()) {  // the gather reads the table on the device
      const int64_t bytes =
          m->embedding_.rows * m->embedding_.cols * DTypeSize(m->embedding_.dtype);
      if (!m->embedding_copy_.Upload(static_cast<const uint8_t*>(m->embedding_.data),
                                     static_cast<size_t>(bytes))) {
        return absl::ResourceExhaustedError("out of device memory for the embedding");
      }
      m->embedding_.data = m->embedding_copy_.data();
    }
  }
  int64_t total = m->layer_end_ - m->layer_begin_;
  for (int64_t l = m->layer_begin_; l < m->layer_end_; ++l) {
    Layer layer;
    auto n = [&](const char* leaf) { return names::Layer(l, leaf); };
    const int64_t q0 = hs.q_head_begin * D, q1 = q0 + hs.num_q_heads * D;
    const int64_t k0 = hs.kv_head_begin * D, k1 = k0 + hs.num_kv_heads * D;
    std::vector<kernels::WeightView> qkv(3);
    OLMO_ASSIGN_OR_RETURN(qkv[0], RowSlice(ckpt, n("self_attn.q_proj.weight"), q0, q1));
    OLMO_ASSIGN_OR_RETURN(qkv[1], RowSlice(ckpt, n("self_attn.k_proj.weight"), k0, k1));
    OLMO_ASSIGN_OR_RETURN(qkv[2], RowSlice(ckpt, n("self_attn.v_proj.weight"), k0, k1));
    OLMO_ASSIGN_OR_RETURN(layer.qkv, PackViews(ops, qkv));
    OLMO_ASSIGN_OR_RETURN(layer.o, PackColumns(ops, ckpt, n("self_attn.o_proj.weight"), q0, q1));
    std::vector<kernels::WeightView> gu(2);
    OLMO_ASSIGN_OR_RETURN(gu[0], RowSlice(ckpt, n("mlp.gate_proj.weight"), inter.begin, inter.end));
    OLMO_ASSIGN_OR_RETURN(gu[1], RowSlice(ckpt, n("mlp.up_proj.weight"), inter.begin, inter.end));
    OLMO_ASSIGN_OR_RETURN(layer.gate_up, PackViews(ops, gu));
    OLMO_ASSIGN_OR_RETURN(
        layer.down, PackColumns(ops, ckpt, n("mlp.down_proj.weight"), inter.begin, inter.end));
    OLMO_ASSIGN_OR_RETURN(std::vector<float> q_norm, Vector(ckpt, n("self_attn.q_norm.weight")));
    OLMO_ASSIGN_OR_RETURN(std::vector<float> k_norm, Vector(ckpt, n("self_attn.k_norm.weight")));
    OLMO_ASSIGN_OR_RETURN(layer.q_norm, ToBackend(ops, q_norm, q0, q1));
    OLMO_ASSIGN_OR_RETURN(layer.k_norm, ToBackend(ops, k_norm, k0, k1));
    OLMO_ASSIGN_OR_RETURN(std::vector<float> post_attn,
                          Vector(ckpt, n("post_attention_layernorm.weight")));
    OLMO_ASSIGN_OR_RETURN(std::vector<float> post_ff,
                          Vector(ckpt, n("post_feedforward_layernorm.weight")));
    OLMO_ASSIGN_OR_RETURN(layer.post_attn_norm, ToBackend(ops, post_attn));
    OLMO_ASSIGN_OR_RETURN(layer.post_ff_norm, ToBackend(ops, post_ff));
    bool full = config.is_full(l);
    layer.rope = full ? &m->rope_full_ : &m->rope_sliding_;
    layer.window = full ? 0 : config.sliding_window;
    layer.group = kv::KvCache::GroupOf(config.layer_types[l]);
    int64_t bytes =
        layer.qkv->bytes() + layer.o->bytes() + layer.gate_up->bytes() + layer.down->bytes();
    m->weight_bytes_ += bytes;
    m->layers_.push_back(std::move(layer));
    spdlog::info("loaded layer {}/{} ({}, {:.1f} MiB)", l - m->layer_begin_ + 1, total,
                 full ? "full" : "sliding", bytes / 1048576.0);
  }
  if (m->is_last_stage()) {
    OLMO_ASSIGN_OR_RETURN(std::vector<float> final_norm, Vector(ckpt, names::FinalNorm()));
    OLMO_ASSIGN_OR_RETURN(m->final_norm_, ToBackend(ops, final_norm));
    std::vector<kernels::WeightView> head(1);
    OLMO_ASSIGN_OR_RETURN(head[0], RowSlice(ckpt, names::LmHead(), vocab.begin, vocab.end));
    OLMO_ASSIGN_OR_RETURN(m->lm_head_, PackViews(ops, head));
    m->weight_bytes_ += m->lm_head_->bytes();
  }
  spdlog::info("model ready: {} layers, {:.1f} MiB of packed weights", total,
               m->weight_bytes_ / 1048576.0);
  return m;
}

absl::Status Olmo3Model::RunLayer(int64_t layer_index, const Layer& L, const ForwardBatch& b,
                                  kv::KvCache* cache) {
  const ModelConfig& c = config_;
  const int64_t T = b.num_tokens();
  const int64_t d = c.hidden_size, qw = nq_ * c.head_dim, kw = nkv_ * c.head_dim;
  const int64_t qkv_w = qw + 2 * kw;
  const float eps = static_cast<float>(c.rms_norm_eps);
  OLMO_RETURN_IF_ERROR(Resize(qkv_, T * qkv_w, "qkv"));
  ops_->Matmul({x_.data(), T, L.qkv.get(), qkv_.data()});

  // QK-norm over the FULL q (and k) width: per-token partial sums of squares of this rank's
  // slice, one all-reduce of [2, T] floats, then each rank scales its slice (never gather q/k).
  // Replicated kv slices are counted once.
  float* q = qkv_.data();
  float* k = q + qw;
  float* v = k + kw;
  OLMO_RETURN_IF_ERROR(Resize(sum_sq_, 2 * T, "sum of squares"));
  float* q_sq = sum_sq_.data();
  float* k_sq = q_sq + T;
  ops_->SumSquares({q, T, qw, qkv_w, q_sq});
  ops_->SumSquares({k, T, kw, qkv_w, k_sq});
  OLMO_RETURN_IF_ERROR(ReduceSumSquares(T));
  ops_->RmsScale({q, T, qw, qkv_w, q_sq, L.q_norm.data(), c.q_width(), eps});
  ops_->RmsScale({k, T, kw, qkv_w, k_sq, L.k_norm.data(), c.kv_width(), eps});
  ops_->Rope({q, T, nq_, c.head_dim, qkv_w, inputs_.positions, L.rope});
  ops_->Rope({k, T, nkv_, c.head_dim, qkv_w, inputs_.positions, L.rope});

  kernels::KvLayerView kv = cache->Layer(layer_index);
  ops_->KvWrite({k, v, qkv_w, qkv_w, T, inputs_.slots[L.group], kv});
  OLMO_RETURN_IF_ERROR(Resize(attn_, T * qw, "attention"));
  kernels::AttentionParams ap;
  ap.q = q;
  ap.q_stride = qkv_w;
  ap.out = attn_.data();
  ap.num_tokens = T;
  ap.num_heads = nq_;
  ap.positions = inputs_.positions;
  ap.token_seq = inputs_.token_seq;
  ap.block_tables = inputs_.tables[L.group];
  ap.max_blocks = inputs_.table_width[L.group];
  ap.window = L.window;
  ap.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  ap.cache = kv;
  ops_->Attention(ap);

  // h = x + RMSNorm(o_proj(attn)); out = h + RMSNorm(mlp(h)).
  OLMO_RETURN_IF_ERROR(Resize(proj_, T * d, "projection"));
  ops_->Matmul({attn_.data(), T, L.o.get(), proj_.data()});
  OLMO_RETURN_IF_ERROR(AllReduce(proj_.data(), T * d));  // row-parallel o_proj
  ops_->RmsNorm({proj_.data(), x_.data(), L.post_attn_norm.data(), x_.data(), T, d, eps});
  const int64_t I = inter_local_;
  OLMO_RETURN_IF_ERROR(Resize(gate_up_, T * 2 * I, "gate_up"));
  ops_->Matmul({x_.data(), T, L.gate_up.get(), gate_up_.data()});
  OLMO_RETURN_IF_ERROR(Resize(act_, T * I, "activation"));
  ops_->SwiGlu({gate_up_.data(), act_.data(), T, I});
  ops_->Matmul({act_.data(), T, L.down.get(), proj_.data()});
  OLMO_RETURN_IF_ERROR(AllReduce(proj_.data(), T * d));  // row-parallel down_proj
  ops_->RmsNorm({proj_.data(), x_.data(), L.post_ff_norm.data(), x_.data(), T, d, eps});
  return absl::OkStatus();
}

void Olmo3Model::BindBuffers() {
  for (auto* b : {&x_, &qkv_, &attn_, &proj_, &gate_up_, &act_, &sum_sq_, &final_x_, &gathered_dev_,
                  &padded_dev_, &logits_dev_}) {
    b->set_ops(ops_);
  }
  for (auto* b : {&ids_dev_, &positions_dev_, &token_seq_dev_}) b->set_ops(ops_);
  for (int g = 0; g < kNumKvGroups; ++g) {
    tables_dev_[g].set_ops(ops_);
    slots_dev_[g].set_ops(ops_);
  }
  embedding_copy_.set_ops(ops_);
  final_norm_.set_ops(ops_);
}

// The CPU backend reads the batch's vectors directly; a device backend gets copies.
absl::Status Olmo3Model::StageInputs(const ForwardBatch& b) {
  // Graphed steps use padded table widths (GraphTableWidth): fewer step shapes.
  const bool graphed = Graphable(b);
  for (int g = 0; g < kNumKvGroups; ++g) {
    inputs_.table_width[g] = graphed ? GraphTableWidth(b.max_blocks[g]) : b.max_blocks[g];
    inputs_.tables[g] = b.block_tables[g].data();
    if (inputs_.table_width[g] == b.max_blocks[g]) continue;
    const int64_t from = std::max<int64_t>(b.max_blocks[g], 1);
    const int64_t to = std::max<int64_t>(inputs_.table_width[g], 1);
    const int64_t rows = static_cast<int64_t>(b.block_tables[g].size()) / from;
    std::vector<int32_t>& padded = padded_tables_[g];
    padded.assign(static_cast<size_t>(rows * to), 0);
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(b.block_tables[g].begin() + r * from, from, padded.begin() + r * to);
    }
    inputs_.tables[g] = padded.data();
  }
  if (!ops_->on_device()) {
    inputs_.ids = b.token_ids.data();
    inputs_.positions = b.positions.data();
    inputs_.token_seq = b.token_seq.data();
    for (int g = 0; g < kNumKvGroups; ++g) inputs_.slots[g] = b.slots[g].data();
    return absl::OkStatus();
  }
  bool ok = UploadGrowing(ids_dev_, b.token_ids.data(), b.token_ids.size()) &&
            UploadGrowing(positions_dev_, b.positions.data(), b.positions.size()) &&
            UploadGrowing(token_seq_dev_, b.token_seq.data(), b.token_seq.size());
  for (int g = 0; g < kNumKvGroups; ++g) {
    const size_t table_size = inputs_.tables[g] == b.block_tables[g].data()
                                  ? b.block_tables[g].size()
                                  : padded_tables_[g].size();
    ok = ok && UploadGrowing(tables_dev_[g], inputs_.tables[g], table_size) &&
         UploadGrowing(slots_dev_[g], b.slots[g].data(), b.slots[g].size());
    inputs_.tables[g] = tables_dev_[g].data();
    inputs_.slots[g] = slots_dev_[g].data();
  }
  if (!ok) return absl::ResourceExhaustedError("out of device memory for the step's inputs");
  inputs_.ids = ids_dev_.data();
  inputs_.positions = positions_dev_.data();
  inputs_.token_seq = token_seq_dev_.data();
  return absl::OkStatus();
}

absl::Status Olmo3Model::AllReduce(float* data, int64_t n) {
  if (tp_ == 1) return absl::OkStatus();
  if (!ops_->on_device() || tpc_->memory_space() == comm::MemorySpace::kDevice) {
    return tpc_->AllReduceSum(data, n);
  }
  // A host Comm over device buffers: stage through host memory (slow, but any device works,
  // e.g. two ranks on one GPU, where NCCL refuses).
  staging_.resize(static_cast<size_t>(n));
  ops_->Copy(staging_.data(), data, n * static_cast<int64_t>(sizeof(float)));
  OLMO_RETURN_IF_ERROR(ops_->Synchronize());
  OLMO_RETURN_IF_ERROR(tpc_->AllReduceSum(staging_.data(), n));
  ops_->Copy(data, staging_.data(), n * static_cast<int64_t>(sizeof(float)));
  return absl::OkStatus();
}

// QK-norm statistics: [2, T] partial sums of squares (q then k) of this rank's slices, summed over
// the TP group. A replica of a kv slice that is not its owner adds zeros for k.
absl::Status Olmo3Model::ReduceSumSquares(int64_t T) {
  float* sq = sum_sq_.data();
  if (!kv_stats_owner_) ops_->Zero(sq + T, T * static_cast<int64_t>(sizeof(float)));
  return AllReduce(sq, 2 * T);
}

absl::Status Olmo3Model::Forward(const ForwardBatch& b, kv::KvCache* cache,
                                 std::vector<float>* logits) {
  if (!is_first_stage() || !is_last_stage()) {
    return absl::FailedPreconditionError("Forward needs every layer; use ForwardStage");
  }
  return ForwardStage(b, cache, nullptr, logits);
}

absl::Status Olmo3Model::ForwardStage(const ForwardBatch& b, kv::KvCache* cache,
                                      const float* hidden_in, std::vector<float>* out) {
  const int64_t T = b.num_tokens();
  const int64_t d = config_.hidden_size;
  if (T == 0) {
    out->clear();
    logit_rows_ = 0;
    return absl::OkStatus();
  }
  OLMO_RETURN_IF_ERROR(Prepare(b, hidden_in));
  const bool graphed = Graphable(b);
  if (graphed) {
    OLMO_RETURN_IF_ERROR(RunGraphed(b, cache, /*gather=*/true));
  } else {
    OLMO_RETURN_IF_ERROR(RunLayers(b, cache));
  }
  if (!is_last_stage()) {
    out->resize(static_cast<size_t>(T * d));
    ops_->Copy(out->data(), x_.data(), T * d * static_cast<int64_t>(sizeof(float)));
    OLMO_RETURN_IF_ERROR(ops_->Synchronize());
    return absl::OkStatus();
  }
  if (!graphed) return Logits(b, out);
  const int64_t n = static_cast<int64_t>(b.logit_rows.size()) * config_.vocab_size;
  out->resize(static_cast<size_t>(n));
  ops_->Copy(out->data(), logits_dev_.data(), n * static_cast<int64_t>(sizeof(float)));
  OLMO_RETURN_IF_ERROR(ops_->Synchronize());
  return absl::OkStatus();
}

absl::StatusOr<const float*> Olmo3Model::ForwardStageToBackend(const ForwardBatch& b,
                                                               kv::KvCache* cache,
                                                               const float* hidden_in) {
  if (!ops_->on_device() || !is_last_stage()) {
    return absl::FailedPreconditionError(
        "logits stay in backend memory only on the last stage of a device backend");
  }
  if (b.num_tokens() == 0 || b.logit_rows.empty()) {
    return absl::InvalidArgumentError("a step with logits needs tokens and logit rows");
  }
  OLMO_RETURN_IF_ERROR(Prepare(b, hidden_in));
  if (Graphable(b)) {
    OLMO_RETURN_IF_ERROR(RunGraphed(b, cache, /*gather=*/true));
  } else {
    OLMO_RETURN_IF_ERROR(RunLayers(b, cache));
    OLMO_RETURN_IF_ERROR(Logits(b, nullptr));
  }
  return logits_dev_.data();
}

absl::StatusOr<const float*> Olmo3Model::ForwardStageLogitSlice(const ForwardBatch& b,
                                                                kv::KvCache* cache,
                                                                const float* hidden_in) {
  if (tp_ == 1 || !is_last_stage()) {
    return absl::FailedPreconditionError("logit slices exist on the last stage of a TP group");
  }
  if (b.num_tokens() == 0 || b.logit_rows.empty()) {
    return absl::InvalidArgumentError("a step with logits needs tokens and logit rows");
  }
  OLMO_RETURN_IF_ERROR(Prepare(b, hidden_in));
  if (Graphable(b)) {
    OLMO_RETURN_IF_ERROR(RunGraphed(b, cache, /*gather=*/false));
  } else {
    OLMO_RETURN_IF_ERROR(RunLayers(b, cache));
    OLMO_RETURN_IF_ERROR(LocalLogits(b, nullptr));
  }
  return proj_.data();
}

absl::StatusOr<const float*> Olmo3Model::GatherLogitRows(const std::vector<int32_t>& rows,
                                                         std::vector<float>* host) {
  if (tp_ == 1 || !is_last_stage()) {
    return absl::FailedPreconditionError("logit slices exist on the last stage of a TP group");
  }
  for (size_t j = 0; j < rows.size(); ++j) {
    if (rows[j] < 0 || rows[j] >= logit_rows_ || (j > 0 && rows[j] <= rows[j - 1])) {
      return absl::InvalidArgumentError(
          absl::StrFormat("logit rows to gather must ascend within [0, %d); entry %d is %d",
                          logit_rows_, j, rows[j]));
    }
  }
  if (host == nullptr && !ops_->on_device()) {
    return absl::FailedPreconditionError("gathered logits stay in backend memory only on devices");
  }
  OLMO_RETURN_IF_ERROR(GatherRows(rows, host));
  return host != nullptr ? host->data() : logits_dev_.data();
}

absl::Status Olmo3Model::Prepare(const ForwardBatch& b, const float* hidden_in) {
  const ModelConfig& c = config_;
  const int64_t T = b.num_tokens();
  const int64_t d = c.hidden_size;
  OLMO_RETURN_IF_ERROR(Resize(x_, T * d, "hidden"));
  OLMO_RETURN_IF_ERROR(StageInputs(b));
  logit_rows_ = static_cast<int64_t>(b.logit_rows.size());  // host state: set also when graphed
  if (is_first_stage()) {
    for (int32_t id : b.token_ids) {
      if (id < 0 || id >= c.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrFormat("token id %d is outside the vocabulary [0, %d)", id, c.vocab_size));
      }
    }
  } else {
    if (hidden_in == nullptr) return absl::InvalidArgumentError("stage needs input hidden states");
    ops_->Copy(x_.data(), hidden_in, T * d * static_cast<int64_t>(sizeof(float)));
  }
  return absl::OkStatus();
}

absl::Status Olmo3Model::RunLayers(const ForwardBatch& b, kv::KvCache* cache) {
  const int64_t T = b.num_tokens();
  const int64_t d = config_.hidden_size;
  if (is_first_stage()) {
    // Vocab-parallel embedding: masked lookup of this rank's rows, then a sum over the group.
    ops_->Embedding({inputs_.ids, T, embedding_, vocab_begin_, x_.data()});
    OLMO_RETURN_IF_ERROR(AllReduce(x_.data(), T * d));
  }
  for (int64_t l = layer_begin_; l < layer_end_; ++l) {
    OLMO_RETURN_IF_ERROR(RunLayer(l, layers_[l - layer_begin_], b, cache));
  }
  return absl::OkStatus();
}

// The last stage's local logits after RunLayers: f32 [R, vocab_local] of b.logit_rows into proj_
// (the whole vocabulary at tp 1: into logits_dev_ on device backends, into *host on the CPU).
absl::Status Olmo3Model::LocalLogits(const ForwardBatch& b, std::vector<float>* host) {
  const ModelConfig& c = config_;
  const int64_t R = static_cast<int64_t>(b.logit_rows.size());
  const int64_t d = c.hidden_size;
  const int64_t fb = static_cast<int64_t>(sizeof(float));
  OLMO_RETURN_IF_ERROR(Resize(final_x_, R * d, "final hidden"));
  for (int64_t r = 0; r < R; ++r) {
    ops_->Copy(final_x_.data() + r * d, x_.data() + b.logit_rows[r] * d, d * fb);
  }
  ops_->RmsNorm({final_x_.data(), nullptr, final_norm_.data(), final_x_.data(), R, d,
                 static_cast<float>(c.rms_norm_eps)});
  if (tp_ == 1 && !ops_->on_device() && host != nullptr) {
    host->resize(static_cast<size_t>(R * vocab_local_));
    ops_->Matmul({final_x_.data(), R, lm_head_.get(), host->data()});
    return absl::OkStatus();
  }
  kernels::OpsBuffer<float>& out = tp_ == 1 && ops_->on_device() ? logits_dev_ : proj_;
  OLMO_RETURN_IF_ERROR(Resize(out, R * vocab_local_, "logits"));
  ops_->Matmul({final_x_.data(), R, lm_head_.get(), out.data()});
  return absl::OkStatus();
}

// The last stage's logits f32 [R, vocab] of b.logit_rows, after RunLayers: into *host when given,
// else into logits_dev_ (backend memory; device backends only).
absl::Status Olmo3Model::Logits(const ForwardBatch& b, std::vector<float>* host) {
  OLMO_RETURN_IF_ERROR(LocalLogits(b, host));
  if (tp_ > 1) {
    std::vector<int32_t> rows(static_cast<size_t>(logit_rows_));
    std::iota(rows.begin(), rows.end(), 0);
    return GatherRows(rows, host);
  }
  if (host == nullptr || !ops_->on_device()) return absl::OkStatus();  // CPU: already in *host
  const int64_t n = logit_rows_ * config_.vocab_size;
  host->resize(static_cast<size_t>(n));
  ops_->Copy(host->data(), logits_dev_.data(), n * static_cast<int64_t>(sizeof(float)));
  OLMO_RETURN_IF_ERROR(ops_->Synchronize());
  return absl::OkStatus();
}

// Rows `rows` (indices into the step's logit rows, ascending) of the TP group's local logits in
// proj_, gathered as f32 [rows.size(), vocab]: into *host when given, else into logits_dev_.
// Every rank of the group calls it with the same rows.
absl::Status Olmo3Model::GatherRows(const std::vector<int32_t>& rows, std::vector<float>* host) {
  const int64_t V = config_.vocab_size;
  const int64_t F = static_cast<int64_t>(rows.size());
  const int64_t fb = static_cast<int64_t>(sizeof(float));
  const int64_t vmax = vocab_slice_max_;
  const int64_t row_bytes = vocab_local_ * fb;
  const bool all = F == logit_rows_;  // rows is 0 .. F-1 (ascending, distinct)
  if (host != nullptr) host->resize(static_cast<size_t>(F * V));
  if (tpc_->memory_space() == comm::MemorySpace::kDevice) {
    // Device collectives: pad (when slices differ in size or rows are picked), gather and
    // reassemble on the device.
    const float* send = proj_.data();
    if (vmax != vocab_local_ || !all) {
      OLMO_RETURN_IF_ERROR(Resize(padded_dev_, F * vmax, "padded logits"));
      if (all) {
        ops_->Copy2D(padded_dev_.data(), vmax * fb, proj_.data(), row_bytes, row_bytes, F);
      } else {
        for (int64_t j = 0; j < F; ++j) {
          ops_->Copy(padded_dev_.data() + j * vmax, proj_.data() + rows[j] * vocab_local_,
                     row_bytes);
        }
      }
      send = padded_dev_.data();
    }
    OLMO_RETURN_IF_ERROR(Resize(gathered_dev_, tp_ * F * vmax, "gathered logits"));
    OLMO_RETURN_IF_ERROR(tpc_->AllGather(send, F * vmax * fb, gathered_dev_.data()));
    OLMO_RETURN_IF_ERROR(Resize(logits_dev_, F * V, "logits"));
    for (int rank = 0; rank < tp_; ++rank) {
      const Slice vs = SplitEvenly(V, tp_, rank);
      ops_->Copy2D(logits_dev_.data() + vs.begin, V * fb, gathered_dev_.data() + rank * F * vmax,
                   vmax * fb, vs.size() * fb, F);
    }
    if (host != nullptr) {
      ops_->Copy(host->data(), logits_dev_.data(), F * V * fb);
      OLMO_RETURN_IF_ERROR(ops_->Synchronize());
    }
    return absl::OkStatus();
  }
  // A host Comm: bring the local rows to the host (a device backend stages them), pad, gather,
  // reassemble on the host; upload when the logits are wanted in backend memory.
  std::vector<float> local(static_cast<size_t>(F * vmax), 0.0f);
  const float* local_logits = proj_.data();
  if (ops_->on_device()) {
    staging_.resize(static_cast<size_t>(logit_rows_ * vocab_local_));
    ops_->Copy(staging_.data(), proj_.data(), logit_rows_ * row_bytes);
    OLMO_RETURN_IF_ERROR(ops_->Synchronize());
    local_logits = staging_.data();
  }
  for (int64_t j = 0; j < F; ++j) {
    std::copy_n(local_logits + rows[j] * vocab_local_, vocab_local_, local.data() + j * vmax);
  }
  gathered_.resize(static_cast<size_t>(tp_ * F * vmax));
  OLMO_RETURN_IF_ERROR(tpc_->AllGather(local.data(), F * vmax * fb, gathered_.data()));
  std::vector<float>* out = host;
  if (out == nullptr) {
    staging_.resize(static_cast<size_t>(F * V));
    out = &staging_;
  }
  for (int rank = 0; rank < tp_; ++rank) {
    const Slice vs = SplitEvenly(V, tp_, rank);
    for (int64_t j = 0; j < F; ++j) {
      std::copy_n(gathered_.data() + (rank * F + j) * vmax, vs.size(),
                  out->data() + j * V + vs.begin);
    }
  }
  if (host == nullptr) {
    OLMO_RETURN_IF_ERROR(Resize(logits_dev_, F * V, "logits"));
    ops_->Copy(logits_dev_.data(), staging_.data(), F * V * fb);
  }
  return absl::OkStatus();
}

}  // namespace olmo::model
