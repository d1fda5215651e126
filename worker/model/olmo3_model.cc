#include "worker/model/olmo3_model.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace olmo::model {
namespace {

namespace names = checkpoint::names;

absl::StatusOr<kernels::WeightView> Matrix(const checkpoint::Checkpoint& ckpt,
                                           const std::string& name) {
  OLMO_ASSIGN_OR_RETURN(checkpoint::TensorView t, ckpt.Get(name));
  if (t.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrFormat("tensor %s: expected rank 2", name));
  }
  return kernels::WeightView{t.data, t.dtype, t.shape[0], t.shape[1]};
}

absl::StatusOr<std::vector<float>> Vector(const checkpoint::Checkpoint& ckpt,
                                          const std::string& name) {
  OLMO_ASSIGN_OR_RETURN(checkpoint::TensorView t, ckpt.Get(name));
  std::vector<float> out(static_cast<size_t>(t.numel()));
  ConvertToF32(t.data, t.dtype, t.numel(), out.data());
  return out;
}

absl::StatusOr<std::unique_ptr<kernels::PackedWeight>> Pack(
    kernels::Ops* ops, const checkpoint::Checkpoint& ckpt, std::initializer_list<std::string> parts) {
  std::vector<kernels::WeightView> views;
  for (const std::string& name : parts) {
    OLMO_ASSIGN_OR_RETURN(kernels::WeightView v, Matrix(ckpt, name));
    views.push_back(v);
  }
  return ops->PackWeight(views);
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
    return absl::InvalidArgumentError(absl::StrFormat(
        "layer range [%d, %d) is not inside the model's %d layers", m->layer_begin_,
        m->layer_end_, config.num_hidden_layers));
  }
  const checkpoint::Checkpoint& ckpt = *checkpoint;
  m->rope_full_ = kernels::MakeRopeTable(config.rope_full, config.head_dim);
  m->rope_sliding_ = kernels::MakeRopeTable(
      options.yarn_on_all_layers ? config.rope_full : config.rope_sliding, config.head_dim);

  OLMO_ASSIGN_OR_RETURN(m->embedding_, Matrix(ckpt, names::Embedding()));
  int64_t total = m->layer_end_ - m->layer_begin_;
  for (int64_t l = m->layer_begin_; l < m->layer_end_; ++l) {
    Layer layer;
    auto n = [&](const char* leaf) { return names::Layer(l, leaf); };
    OLMO_ASSIGN_OR_RETURN(layer.qkv, Pack(ops, ckpt,
                                          {n("self_attn.q_proj.weight"), n("self_attn.k_proj.weight"),
                                           n("self_attn.v_proj.weight")}));
    OLMO_ASSIGN_OR_RETURN(layer.o, Pack(ops, ckpt, {n("self_attn.o_proj.weight")}));
    OLMO_ASSIGN_OR_RETURN(layer.gate_up,
                          Pack(ops, ckpt, {n("mlp.gate_proj.weight"), n("mlp.up_proj.weight")}));
    OLMO_ASSIGN_OR_RETURN(layer.down, Pack(ops, ckpt, {n("mlp.down_proj.weight")}));
    OLMO_ASSIGN_OR_RETURN(layer.q_norm, Vector(ckpt, n("self_attn.q_norm.weight")));
    OLMO_ASSIGN_OR_RETURN(layer.k_norm, Vector(ckpt, n("self_attn.k_norm.weight")));
    OLMO_ASSIGN_OR_RETURN(layer.post_attn_norm, Vector(ckpt, n("post_attention_layernorm.weight")));
    OLMO_ASSIGN_OR_RETURN(layer.post_ff_norm, Vector(ckpt, n("post_feedforward_layernorm.weight")));
    bool full = config.is_full(l);
    layer.rope = full ? &m->rope_full_ : &m->rope_sliding_;
    layer.window = full ? 0 : config.sliding_window;
    layer.group = kv::KvCache::GroupOf(config.layer_types[l]);
    int64_t bytes = layer.qkv->bytes() + layer.o->bytes() + layer.gate_up->bytes() +
                    layer.down->bytes();
    m->weight_bytes_ += bytes;
    m->layers_.push_back(std::move(layer));
    spdlog::info("loaded layer {}/{} ({}, {:.1f} MiB)", l - m->layer_begin_ + 1, total,
                 full ? "full" : "sliding", bytes / 1048576.0);
  }
  OLMO_ASSIGN_OR_RETURN(m->final_norm_, Vector(ckpt, names::FinalNorm()));
  OLMO_ASSIGN_OR_RETURN(m->lm_head_, Pack(ops, ckpt, {names::LmHead()}));
  m->weight_bytes_ += m->lm_head_->bytes();
  spdlog::info("model ready: {} layers, {:.1f} MiB of packed weights", total,
               m->weight_bytes_ / 1048576.0);
  return m;
}

void Olmo3Model::RunLayer(int64_t layer_index, const Layer& L, const ForwardBatch& b,
                          kv::KvCache* cache) {
  const ModelConfig& c = config_;
  const int64_t T = b.num_tokens();
  const int64_t d = c.hidden_size, qw = c.q_width(), kw = c.kv_width();
  const int64_t qkv_w = qw + 2 * kw;
  const float eps = static_cast<float>(c.rms_norm_eps);
  qkv_.resize(static_cast<size_t>(T * qkv_w));
  ops_->Matmul({x_.data(), T, L.qkv.get(), qkv_.data()});

  // QK-norm over the full q (and k) width, as one partial sum of squares + scale (the TP form).
  float* q = qkv_.data();
  float* k = q + qw;
  float* v = k + kw;
  sum_sq_.resize(static_cast<size_t>(T));
  ops_->SumSquares({q, T, qw, qkv_w, sum_sq_.data()});
  ops_->RmsScale({q, T, qw, qkv_w, sum_sq_.data(), L.q_norm.data(), qw, eps});
  ops_->SumSquares({k, T, kw, qkv_w, sum_sq_.data()});
  ops_->RmsScale({k, T, kw, qkv_w, sum_sq_.data(), L.k_norm.data(), kw, eps});
  ops_->Rope({q, T, c.num_attention_heads, c.head_dim, qkv_w, b.positions.data(), L.rope});
  ops_->Rope({k, T, c.num_key_value_heads, c.head_dim, qkv_w, b.positions.data(), L.rope});

  kernels::KvLayerView kv = cache->Layer(layer_index);
  ops_->KvWrite({k, v, qkv_w, qkv_w, T, b.slots[L.group].data(), kv});
  attn_.resize(static_cast<size_t>(T * qw));
  kernels::AttentionParams ap;
  ap.q = q;
  ap.q_stride = qkv_w;
  ap.out = attn_.data();
  ap.num_tokens = T;
  ap.num_heads = c.num_attention_heads;
  ap.positions = b.positions.data();
  ap.token_seq = b.token_seq.data();
  ap.block_tables = b.block_tables[L.group].data();
  ap.max_blocks = b.max_blocks[L.group];
  ap.window = L.window;
  ap.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  ap.cache = kv;
  ops_->Attention(ap);

  // h = x + RMSNorm(o_proj(attn)); out = h + RMSNorm(mlp(h)).
  proj_.resize(static_cast<size_t>(T * d));
  ops_->Matmul({attn_.data(), T, L.o.get(), proj_.data()});
  ops_->RmsNorm({proj_.data(), x_.data(), L.post_attn_norm.data(), x_.data(), T, d, eps});
  const int64_t I = c.intermediate_size;
  gate_up_.resize(static_cast<size_t>(T * 2 * I));
  ops_->Matmul({x_.data(), T, L.gate_up.get(), gate_up_.data()});
  act_.resize(static_cast<size_t>(T * I));
  ops_->SwiGlu({gate_up_.data(), act_.data(), T, I});
  ops_->Matmul({act_.data(), T, L.down.get(), proj_.data()});
  ops_->RmsNorm({proj_.data(), x_.data(), L.post_ff_norm.data(), x_.data(), T, d, eps});
}

absl::Status Olmo3Model::Forward(const ForwardBatch& b, kv::KvCache* cache,
                                 std::vector<float>* logits) {
  const ModelConfig& c = config_;
  const int64_t T = b.num_tokens();
  const int64_t d = c.hidden_size;
  if (T == 0) {
    logits->clear();
    return absl::OkStatus();
  }
  for (int32_t id : b.token_ids) {
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrFormat("token id %d is outside the vocabulary [0, %d)", id, c.vocab_size));
    }
  }
  x_.resize(static_cast<size_t>(T * d));
  ops_->Embedding({b.token_ids.data(), T, embedding_, 0, x_.data()});
  for (int64_t l = layer_begin_; l < layer_end_; ++l) {
    RunLayer(l, layers_[l - layer_begin_], b, cache);
  }
  const int64_t R = static_cast<int64_t>(b.logit_rows.size());
  final_x_.resize(static_cast<size_t>(R * d));
  for (int64_t r = 0; r < R; ++r) {
    std::copy_n(x_.data() + b.logit_rows[r] * d, d, final_x_.data() + r * d);
  }
  ops_->RmsNorm({final_x_.data(), nullptr, final_norm_.data(), final_x_.data(), R, d,
                 static_cast<float>(c.rms_norm_eps)});
  logits->resize(static_cast<size_t>(R * c.vocab_size));
  ops_->Matmul({final_x_.data(), R, lm_head_.get(), logits->data()});
  return absl::OkStatus();
}

}  // namespace olmo::model
