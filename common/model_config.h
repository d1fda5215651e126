// ModelConfig: the immutable Olmo 3 configuration read from HF `config.json` (+ optional
// `generation_config.json`), following docs/olmo3.md §2.1 loader rules.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace olmo {

enum class LayerType : uint8_t { kSliding, kFull };

enum class RopeType : uint8_t { kDefault, kYarn };

// RoPE parameters of one layer type. YaRN fields are meaningful only when type == kYarn.
struct RopeConfig {
  RopeType type = RopeType::kDefault;
  double theta = 10000.0;
  // Effective YaRN factor s. HF quirk: when original_max_position_embeddings is present the factor
  // used is max_position_embeddings / original_max_position_embeddings (a warning is logged when
  // that differs from the stored `factor`).
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  std::optional<double> attention_factor;  // absent -> 0.1 * ln(s) + 1
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  bool truncate = true;
};

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // absent -> num_attention_heads
  int64_t head_dim = 0;             // absent -> hidden_size / num_attention_heads
  int64_t max_position_embeddings = 0;
  int64_t sliding_window = 0;  // W: a sliding layer sees W keys including the current one
  double rms_norm_eps = 1e-6;  // HF class default is 1e-5; Olmo 3 files say 1e-6
  std::vector<LayerType> layer_types;  // absent -> full iff (i + 1) % 4 == 0
  RopeConfig rope_full;     // table for full-attention layers (YaRN for Olmo 3)
  RopeConfig rope_sliding;  // table for sliding layers (default RoPE, same theta)
  bool tie_word_embeddings = false;
  std::string torch_dtype;  // informational ("bfloat16", "float32")
  // Stop ids: eos_token_id of generation_config.json when present, else of config.json
  // (an int or a list). May be empty.
  std::vector<int32_t> eos_token_ids;
  std::optional<int32_t> pad_token_id;
  std::optional<int32_t> bos_token_id;

  int64_t q_width() const { return num_attention_heads * head_dim; }
  int64_t kv_width() const { return num_key_value_heads * head_dim; }
  bool is_full(int64_t layer) const { return layer_types[layer] == LayerType::kFull; }

  // Parses a config.json document. `source` names the file in error messages.
  static absl::StatusOr<ModelConfig> FromJson(const nlohmann::json& config,
                                              const std::string& source);
  // Reads `dir/config.json` and, when present, `dir/generation_config.json`.
  static absl::StatusOr<ModelConfig> Load(const std::string& dir);
};

}  // namespace olmo
