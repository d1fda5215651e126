// make-tiny: writes a random-weight Olmo 3 checkpoint in the HF layout (config.json,
// generation_config.json, model.safetensors or shards + index). Weights are scaled so logits have
// std >= 1: embeddings std 1, linear layers std 1/sqrt(fan_in) (lm_head 2/sqrt(fan_in)), norm
// weights 1 + 0.1 u. The demo checkpoint and the 7B-shaped benchmark checkpoint come from here,
// so neither needs Python.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_format.h"
#include "common/dtype.h"
#include "nlohmann/json.hpp"
#include "worker/checkpoint/checkpoint.h"
#include "worker/checkpoint/safetensors_writer.h"

namespace {

namespace ckpt = olmo::checkpoint;

struct Spec {
  std::string out;
  int64_t vocab = 512, hidden = 64, layers = 4, heads = 4, kv_heads = 2, head_dim = 16;
  int64_t intermediate = 128, window = 64, max_pos = 4096, orig_max_pos = 512;
  bool yarn = true;
  bool bf16 = true;
  int shards = 1;
  uint64_t seed = 1;
  std::vector<std::string> layer_types;  // empty: (i + 1) % 4 rule
  std::string tokenizer;      // tokenizer.json copied into the checkpoint
  std::string chat_template;  // chat_template.jinja copied into the checkpoint
};

const char* kUsage = R"(make-tiny: write a random-weight Olmo 3 checkpoint (HF layout).

  make-tiny --out DIR [--preset tiny-demo|7b-2layer] [options]

  --preset tiny-demo   vocab 100278 (the real Olmo 3 size), hidden 64, 4 layers, 4 heads, 2 kv
                       heads, head_dim 16, intermediate 128, window 64, BF16 (about 26 MB)
  --preset 7b-2layer   Olmo 3 7B shapes cut to 2 layers (sliding, full): hidden 4096, 32 heads,
                       intermediate 11008, vocab 100278, BF16 (about 2.5 GB; for benchmarks)
  --vocab N --hidden N --layers N --heads N --kv-heads N --head-dim N --intermediate N
  --window N           sliding window (keys, including the current one)
  --max-pos N          max_position_embeddings
  --orig-max-pos N     YaRN original_max_position_embeddings (factor = max-pos / this)
  --no-yarn            plain RoPE on every layer
  --dtype bf16|f32     weight dtype (default bf16)
  --shards N           split into N safetensors files with an index (default 1)
  --seed S             random seed (default 1)
  --tokenizer FILE     copy this tokenizer.json into the checkpoint
  --chat-template FILE copy this Jinja chat template into the checkpoint (chat_template.jinja)
)";

// xorshift64* stream; Uniform() in [-1, 1).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {}
  float Uniform() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    uint64_t x = s * 0x2545F4914F6CDD1Dull;
    return static_cast<float>(x >> 40) * (2.0f / 16777216.0f) - 1.0f;
  }
};

int Fail(const std::string& msg) {
  std::fprintf(stderr, "make-tiny: error: %s\n", msg.c_str());
  return 1;
}

bool ParseArgs(int argc, char** argv, Spec* s, std::string* err) {
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    if (f == "--help" || f == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (f == "--no-yarn") {
      s->yarn = false;
      continue;
    }
    if (i + 1 >= argc) {
      *err = f + ": missing value";
      return false;
    }
    std::string v = argv[++i];
    auto num = [&](int64_t* dst) {
      char* end = nullptr;
      long long x = std::strtoll(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || x <= 0) {
        *err = f + ": expected a positive integer, got '" + v + "'";
        return false;
      }
      *dst = x;
      return true;
    };
    int64_t tmp = 0;
    if (f == "--out") s->out = v;
    else if (f == "--preset") {
      if (v == "tiny-demo") {
        *s = Spec{s->out, 100278, 64, 4, 4, 2, 16, 128, 64, 4096, 512, true, true, 1, s->seed, {},
                  s->tokenizer, s->chat_template};
      } else if (v == "7b-2layer") {
        *s = Spec{s->out, 100278, 4096, 2, 32, 32, 128, 11008, 4096, 65536, 8192, true, true, 1,
                  s->seed, {"sliding_attention", "full_attention"}, s->tokenizer, s->chat_template};
      } else {
        *err = "--preset: unknown preset '" + v + "' (tiny-demo or 7b-2layer)";
        return false;
      }
    } else if (f == "--vocab") { if (!num(&s->vocab)) return false; }
    else if (f == "--hidden") { if (!num(&s->hidden)) return false; }
    else if (f == "--layers") { if (!num(&s->layers)) return false; }
    else if (f == "--heads") { if (!num(&s->heads)) return false; }
    else if (f == "--kv-heads") { if (!num(&s->kv_heads)) return false; }
    else if (f == "--head-dim") { if (!num(&s->head_dim)) return false; }
    else if (f == "--intermediate") { if (!num(&s->intermediate)) return false; }
    else if (f == "--window") { if (!num(&s->window)) return false; }
    else if (f == "--max-pos") { if (!num(&s->max_pos)) return false; }
    else if (f == "--orig-max-pos") { if (!num(&s->orig_max_pos)) return false; }
    else if (f == "--shards") { if (!num(&tmp)) return false; s->shards = static_cast<int>(tmp); }
    else if (f == "--seed") { if (!num(&tmp)) return false; s->seed = static_cast<uint64_t>(tmp); }
    else if (f == "--tokenizer") s->tokenizer = v;
    else if (f == "--chat-template") s->chat_template = v;
    else if (f == "--dtype") {
      if (v != "bf16" && v != "f32") {
        *err = "--dtype: expected bf16 or f32";
        return false;
      }
      s->bf16 = v == "bf16";
    } else {
      *err = "unknown flag " + f + " (see --help)";
      return false;
    }
  }
  if (s->out.empty()) {
    *err = "--out: required";
    return false;
  }
  if (s->heads % s->kv_heads != 0) {
    *err = "--kv-heads must divide --heads";
    return false;
  }
  if (s->head_dim % 2 != 0) {
    *err = "--head-dim must be even";
    return false;
  }
  if (!s->layer_types.empty() && static_cast<int64_t>(s->layer_types.size()) != s->layers) {
    s->layer_types.clear();
  }
  return true;
}

nlohmann::ordered_json ConfigJson(const Spec& s) {
  nlohmann::ordered_json c;
  c["architectures"] = {"Olmo3ForCausalLM"};
  c["model_type"] = "olmo3";
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["eos_token_id"] = std::min<int64_t>(100257, s.vocab - 1);
  c["pad_token_id"] = std::min<int64_t>(100277, s.vocab - 1);
  c["hidden_act"] = "silu";
  c["hidden_size"] = s.hidden;
  c["head_dim"] = s.head_dim;
  c["intermediate_size"] = s.intermediate;
  nlohmann::ordered_json types = nlohmann::ordered_json::array();
  for (int64_t i = 0; i < s.layers; ++i) {
    types.push_back(s.layer_types.empty()
                        ? ((i + 1) % 4 == 0 ? "full_attention" : "sliding_attention")
                        : s.layer_types[i]);
  }
  c["layer_types"] = types;
  c["max_position_embeddings"] = s.max_pos;
  c["num_attention_heads"] = s.heads;
  c["num_hidden_layers"] = s.layers;
  c["num_key_value_heads"] = s.kv_heads;
  c["rms_norm_eps"] = 1e-6;
  if (s.yarn) {
    double factor = static_cast<double>(s.max_pos) / static_cast<double>(s.orig_max_pos);
    c["rope_scaling"] = {{"attention_factor", 0.1 * std::log(factor) + 1.0},
                         {"beta_fast", 32.0},
                         {"beta_slow", 1.0},
                         {"factor", factor},
                         {"original_max_position_embeddings", s.orig_max_pos},
                         {"rope_type", "yarn"}};
  }
  c["rope_theta"] = 500000;
  c["sliding_window"] = s.window;
  c["tie_word_embeddings"] = false;
  c["torch_dtype"] = s.bf16 ? "bfloat16" : "float32";
  c["vocab_size"] = s.vocab;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  Spec s;
  std::string err;
  if (!ParseArgs(argc, argv, &s, &err)) return Fail(err);
  std::error_code ec;
  std::filesystem::create_directories(s.out, ec);
  if (ec) return Fail(s.out + ": " + ec.message());

  // Tensors in checkpoint order, with their init (kind 0 = norm, 1 = embedding, 2 = linear).
  struct Init {
    ckpt::TensorEntry entry;
    int kind;
    float scale;
  };
  std::vector<Init> all;
  const olmo::DType dt = s.bf16 ? olmo::DType::kBF16 : olmo::DType::kF32;
  const int64_t qw = s.heads * s.head_dim, kw = s.kv_heads * s.head_dim;
  auto linear = [&](const std::string& name, int64_t out, int64_t in, float gain = 1.0f) {
    all.push_back({{name, dt, {out, in}}, 2, gain / std::sqrt(static_cast<float>(in))});
  };
  auto norm = [&](const std::string& name, int64_t n) { all.push_back({{name, dt, {n}}, 0, 0.1f}); };
  all.push_back({{ckpt::names::Embedding(), dt, {s.vocab, s.hidden}}, 1, 1.0f});
  for (int64_t l = 0; l < s.layers; ++l) {
    auto n = [&](const char* leaf) { return ckpt::names::Layer(l, leaf); };
    linear(n("self_attn.q_proj.weight"), qw, s.hidden);
    linear(n("self_attn.k_proj.weight"), kw, s.hidden);
    linear(n("self_attn.v_proj.weight"), kw, s.hidden);
    linear(n("self_attn.o_proj.weight"), s.hidden, qw);
    norm(n("self_attn.q_norm.weight"), qw);
    norm(n("self_attn.k_norm.weight"), kw);
    linear(n("mlp.gate_proj.weight"), s.intermediate, s.hidden);
    linear(n("mlp.up_proj.weight"), s.intermediate, s.hidden);
    linear(n("mlp.down_proj.weight"), s.hidden, s.intermediate);
    norm(n("post_attention_layernorm.weight"), s.hidden);
    norm(n("post_feedforward_layernorm.weight"), s.hidden);
  }
  norm(ckpt::names::FinalNorm(), s.hidden);
  linear(ckpt::names::LmHead(), s.vocab, s.hidden, 2.0f);

  int64_t total = 0;
  for (const Init& i : all) total += i.entry.nbytes();
  std::fprintf(stderr, "make-tiny: %zu tensors, %.1f MiB, %d shard(s) -> %s\n", all.size(),
               total / 1048576.0, s.shards, s.out.c_str());

  // Split into shards of roughly equal bytes, in order.
  std::map<std::string, std::string> weight_map;
  size_t next = 0;
  int64_t written = 0;
  for (int shard = 0; shard < s.shards; ++shard) {
    std::vector<size_t> idx;
    int64_t target = total * (shard + 1) / s.shards;
    while (next < all.size() && (written < target || shard == s.shards - 1)) {
      written += all[next].entry.nbytes();
      idx.push_back(next++);
    }
    std::string file = s.shards == 1 ? "model.safetensors"
                                     : absl::StrFormat("model-%05d-of-%05d.safetensors", shard + 1,
                                                       s.shards);
    std::vector<ckpt::TensorEntry> entries;
    for (size_t i : idx) {
      entries.push_back(all[i].entry);
      weight_map[all[i].entry.name] = file;
    }
    absl::Status st = ckpt::WriteSafetensors(
        s.out + "/" + file, entries, [&](size_t k, std::span<unsigned char> bytes) {
          const Init& init = all[idx[k]];
          Rng rng(s.seed * 1000003ull + idx[k]);
          const int64_t n = init.entry.nbytes() / olmo::DTypeSize(dt);
          const float u_scale = std::sqrt(3.0f);  // uniform [-1,1) has std 1/sqrt(3)
          for (int64_t e = 0; e < n; ++e) {
            float v = init.kind == 0 ? 1.0f + init.scale * rng.Uniform()
                                     : init.scale * u_scale * rng.Uniform();
            if (dt == olmo::DType::kBF16) {
              uint16_t b = olmo::F32ToBf16(v);
              std::memcpy(bytes.data() + 2 * e, &b, 2);
            } else {
              std::memcpy(bytes.data() + 4 * e, &v, 4);
            }
          }
          std::fprintf(stderr, "\rmake-tiny: %zu/%zu tensors", idx[k] + 1, all.size());
        });
    if (!st.ok()) return Fail(std::string(st.message()));
  }
  std::fprintf(stderr, "\n");
  if (s.shards > 1) {
    absl::Status st = ckpt::WriteShardIndex(s.out, weight_map, total);
    if (!st.ok()) return Fail(std::string(st.message()));
  }
  std::ofstream(s.out + "/config.json") << ConfigJson(s).dump(2) << "\n";
  nlohmann::ordered_json gen;
  gen["eos_token_id"] = s.vocab > 100265 ? nlohmann::ordered_json{100265, 100257}
                                         : nlohmann::ordered_json{s.vocab - 1};
  std::ofstream(s.out + "/generation_config.json") << gen.dump(2) << "\n";
  for (const auto& [from, to] : {std::pair{s.tokenizer, std::string("tokenizer.json")},
                                 std::pair{s.chat_template, std::string("chat_template.jinja")}}) {
    if (from.empty()) continue;
    std::filesystem::copy_file(from, s.out + "/" + to,
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) return Fail(from + ": " + ec.message());
  }
  std::fprintf(stderr, "make-tiny: wrote %s\n", s.out.c_str());
  return 0;
}
