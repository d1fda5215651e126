#include "common/model_config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace olmo {
namespace {

using nlohmann::json;

absl::Status FieldError(const std::string& source, const std::string& field,
                        const std::string& why) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: field '%s' %s", source, field, why));
}

absl::StatusOr<int64_t> GetInt(const json& j, const std::string& source, const std::string& field,
                               std::optional<int64_t> fallback = std::nullopt) {
  if (!j.contains(field) || j[field].is_null()) {
    if (fallback.has_value()) return *fallback;
    return FieldError(source, field, "missing");
  }
  const json& v = j[field];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) {
    return static_cast<int64_t>(v.get<double>());
  }
  return FieldError(source, field, "must be an integer");
}

absl::StatusOr<double> GetDouble(const json& j, const std::string& source,
                                 const std::string& field, std::optional<double> fallback) {
  if (!j.contains(field) || j[field].is_null()) {
    if (fallback.has_value()) return *fallback;
    return FieldError(source, field, "missing");
  }
  if (!j[field].is_number()) return FieldError(source, field, "must be a number");
  return j[field].get<double>();
}

absl::StatusOr<int64_t> Positive(const json& j, const std::string& source,
                                 const std::string& field,
                                 std::optional<int64_t> fallback = std::nullopt) {
  OLMO_ASSIGN_OR_RETURN(int64_t v, GetInt(j, source, field, fallback));
  if (v <= 0) return FieldError(source, field, absl::StrFormat("must be > 0, got %d", v));
  return v;
}

// Token id list from an int, a list of ints, or null/absent (empty).
absl::StatusOr<std::vector<int32_t>> IdList(const json& j, const std::string& source,
                                            const std::string& field) {
  std::vector<int32_t> ids;
  if (!j.contains(field) || j[field].is_null()) return ids;
  const json& v = j[field];
  if (v.is_number_integer()) {
    ids.push_back(v.get<int32_t>());
  } else if (v.is_array()) {
    for (const json& e : v) {
      if (!e.is_number_integer()) return FieldError(source, field, "must hold integers");
      ids.push_back(e.get<int32_t>());
    }
  } else {
    return FieldError(source, field, "must be an integer or a list of integers");
  }
  return ids;
}

// One RoPE parameter object (HF rope_scaling / rope_parameters entry).
absl::StatusOr<RopeConfig> ParseRope(const json& r, double default_theta,
                                     int64_t max_position_embeddings, const std::string& source,
                                     const std::string& field) {
  RopeConfig rope;
  rope.theta = default_theta;
  if (!r.is_object()) return FieldError(source, field, "must be an object");
  if (r.contains("rope_theta")) {
    OLMO_ASSIGN_OR_RETURN(rope.theta, GetDouble(r, source, "rope_theta", std::nullopt));
  }
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {  // `type` is the legacy alias
    if (r.contains(key) && r[key].is_string()) {
      type = r[key].get<std::string>();
      break;
    }
  }
  if (type == "default") return rope;
  if (type != "yarn") {
    return FieldError(source, field + ".rope_type",
                      absl::StrFormat("'%s' is not supported (default or yarn)", type));
  }
  rope.type = RopeType::kYarn;
  OLMO_ASSIGN_OR_RETURN(double stored_factor, GetDouble(r, source, "factor", 1.0));
  rope.factor = stored_factor;
  if (r.contains("original_max_position_embeddings")) {
    OLMO_ASSIGN_OR_RETURN(rope.original_max_position_embeddings,
                          GetInt(r, source, "original_max_position_embeddings"));
    if (rope.original_max_position_embeddings <= 0) {
      return FieldError(source, field + ".original_max_position_embeddings", "must be > 0");
    }
    // HF quirk: the factor actually used is max_position_embeddings / original.
    double implicit = static_cast<double>(max_position_embeddings) /
                      static_cast<double>(rope.original_max_position_embeddings);
    if (std::fabs(implicit - stored_factor) > 1e-9) {
      spdlog::warn("{}: rope factor {} differs from max_position_embeddings / "
                   "original_max_position_embeddings = {}; using {} as HF does",
                   source, stored_factor, implicit, implicit);
    }
    rope.factor = implicit;
  }
  if (rope.original_max_position_embeddings == 0) {
    rope.original_max_position_embeddings = max_position_embeddings;  // HF default
  }
  if (!(rope.factor > 0.0)) return FieldError(source, field + ".factor", "must be > 0");
  if (r.contains("attention_factor") && !r["attention_factor"].is_null()) {
    OLMO_ASSIGN_OR_RETURN(double af, GetDouble(r, source, "attention_factor", std::nullopt));
    rope.attention_factor = af;
  }
  OLMO_ASSIGN_OR_RETURN(rope.beta_fast, GetDouble(r, source, "beta_fast", 32.0));
  OLMO_ASSIGN_OR_RETURN(rope.beta_slow, GetDouble(r, source, "beta_slow", 1.0));
  if (r.contains("truncate") && r["truncate"].is_boolean()) rope.truncate = r["truncate"].get<bool>();
  return rope;
}

absl::StatusOr<json> ReadJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrFormat("%s: cannot open", path));
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrFormat("%s: invalid JSON", path));
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: top level must be an object", path));
  }
  return j;
}

}  // namespace

absl::StatusOr<ModelConfig> FromJsonImpl(const json& j, const std::string& source);

absl::StatusOr<ModelConfig> ModelConfig::FromJson(const json& j, const std::string& source) {
  try {
    return FromJsonImpl(j, source);
  } catch (const json::exception& e) {  // a field of the wrong JSON type
    return absl::InvalidArgumentError(absl::StrFormat("%s: malformed config: %s", source, e.what()));
  }
}

absl::StatusOr<ModelConfig> FromJsonImpl(const json& j, const std::string& source) {
  if (!j.is_object()) return absl::InvalidArgumentError(source + ": top level must be an object");
  ModelConfig c;
  std::string model_type = j.value("model_type", "");
  if (model_type != "olmo3") {
    spdlog::warn("{}: model_type is '{}', expected 'olmo3'; reading it as Olmo 3", source,
                 model_type);
  }
  OLMO_ASSIGN_OR_RETURN(c.vocab_size, Positive(j, source, "vocab_size"));
  OLMO_ASSIGN_OR_RETURN(c.hidden_size, Positive(j, source, "hidden_size"));
  OLMO_ASSIGN_OR_RETURN(c.intermediate_size, Positive(j, source, "intermediate_size"));
  OLMO_ASSIGN_OR_RETURN(c.num_hidden_layers, Positive(j, source, "num_hidden_layers"));
  OLMO_ASSIGN_OR_RETURN(c.num_attention_heads, Positive(j, source, "num_attention_heads"));
  OLMO_ASSIGN_OR_RETURN(c.num_key_value_heads,
                        Positive(j, source, "num_key_value_heads", c.num_attention_heads));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return FieldError(source, "num_key_value_heads",
                      absl::StrFormat("(%d) must divide num_attention_heads (%d)",
                                      c.num_key_value_heads, c.num_attention_heads));
  }
  if (!j.contains("head_dim") || j["head_dim"].is_null()) {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return FieldError(source, "head_dim",
                        "missing and hidden_size is not a multiple of num_attention_heads");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  } else {
    OLMO_ASSIGN_OR_RETURN(c.head_dim, Positive(j, source, "head_dim"));
  }
  if (c.head_dim % 2 != 0) return FieldError(source, "head_dim", "must be even (RoPE pairs)");
  OLMO_ASSIGN_OR_RETURN(c.max_position_embeddings, Positive(j, source, "max_position_embeddings"));
  if (!j.contains("rms_norm_eps")) {
    spdlog::warn("{}: rms_norm_eps missing; using the HF class default 1e-5", source);
  }
  OLMO_ASSIGN_OR_RETURN(c.rms_norm_eps, GetDouble(j, source, "rms_norm_eps", 1e-5));
  if (!(c.rms_norm_eps > 0.0)) return FieldError(source, "rms_norm_eps", "must be > 0");

  if (j.contains("layer_types") && !j["layer_types"].is_null()) {
    const json& lt = j["layer_types"];
    if (!lt.is_array()) return FieldError(source, "layer_types", "must be a list");
    if (static_cast<int64_t>(lt.size()) != c.num_hidden_layers) {
      return FieldError(source, "layer_types",
                        absl::StrFormat("has %d entries, num_hidden_layers is %d", lt.size(),
                                        c.num_hidden_layers));
    }
    for (const json& t : lt) {
      std::string s = t.is_string() ? t.get<std::string>() : "";
      if (s == "full_attention") c.layer_types.push_back(LayerType::kFull);
      else if (s == "sliding_attention") c.layer_types.push_back(LayerType::kSliding);
      else return FieldError(source, "layer_types", "entries must be full_attention or sliding_attention");
    }
  } else {
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      c.layer_types.push_back((i + 1) % 4 == 0 ? LayerType::kFull : LayerType::kSliding);
    }
  }
  bool any_sliding = std::count(c.layer_types.begin(), c.layer_types.end(), LayerType::kSliding) > 0;
  if (any_sliding) {
    OLMO_ASSIGN_OR_RETURN(c.sliding_window, Positive(j, source, "sliding_window"));
  }

  // RoPE: (a) rope_theta + rope_scaling, (b) rope_parameters per layer type, (c) flat
  // rope_parameters with rope_theta inside. (a) and (c): YaRN on full layers only.
  OLMO_ASSIGN_OR_RETURN(double theta, GetDouble(j, source, "rope_theta", 10000.0));
  const json* scaling = nullptr;
  std::string scaling_field;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    const json& rp = j["rope_parameters"];
    if (rp.contains("full_attention") || rp.contains("sliding_attention")) {
      const std::string f = "rope_parameters";
      if (rp.contains("full_attention")) {
        OLMO_ASSIGN_OR_RETURN(c.rope_full, ParseRope(rp["full_attention"], theta,
                                                     c.max_position_embeddings, source,
                                                     f + ".full_attention"));
      } else {
        c.rope_full.theta = theta;
      }
      if (rp.contains("sliding_attention")) {
        OLMO_ASSIGN_OR_RETURN(c.rope_sliding, ParseRope(rp["sliding_attention"], theta,
                                                        c.max_position_embeddings, source,
                                                        f + ".sliding_attention"));
      } else {
        c.rope_sliding.theta = c.rope_full.theta;
      }
    } else {
      scaling = &rp;
      scaling_field = "rope_parameters";
    }
  } else if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    scaling = &j["rope_scaling"];
    scaling_field = "rope_scaling";
  } else {
    c.rope_full.theta = theta;
    c.rope_sliding.theta = theta;
  }
  if (scaling != nullptr) {
    OLMO_ASSIGN_OR_RETURN(c.rope_full, ParseRope(*scaling, theta, c.max_position_embeddings,
                                                 source, scaling_field));
    c.rope_sliding = RopeConfig{};
    c.rope_sliding.theta = c.rope_full.theta;
  }
  if (!(c.rope_full.theta > 0.0) || !(c.rope_sliding.theta > 0.0)) {
    return FieldError(source, "rope_theta", "must be > 0");
  }

  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  if (c.tie_word_embeddings) {
    return FieldError(source, "tie_word_embeddings", "true is not supported (Olmo 3 is untied)");
  }
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) {
    c.torch_dtype = j["torch_dtype"].get<std::string>();
  } else if (j.contains("dtype") && j["dtype"].is_string()) {
    c.torch_dtype = j["dtype"].get<std::string>();
  }
  OLMO_ASSIGN_OR_RETURN(c.eos_token_ids, IdList(j, source, "eos_token_id"));
  for (const char* f : {"pad_token_id", "bos_token_id"}) {
    if (j.contains(f) && !j[f].is_null()) {
      if (!j[f].is_number_integer()) return FieldError(source, f, "must be an integer");
      (std::string(f) == "pad_token_id" ? c.pad_token_id : c.bos_token_id) = j[f].get<int32_t>();
    }
  }
  for (int32_t id : c.eos_token_ids) {
    if (id < 0 || id >= c.vocab_size) {
      return FieldError(source, "eos_token_id",
                        absl::StrFormat("id %d outside the vocabulary [0, %d)", id, c.vocab_size));
    }
  }
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::Load(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::path base(dir);
  if (!fs::is_directory(base)) {
    return absl::NotFoundError(absl::StrFormat("%s: not a model directory", dir));
  }
  const std::string config_path = (base / "config.json").string();
  OLMO_ASSIGN_OR_RETURN(json j, ReadJson(config_path));
  OLMO_ASSIGN_OR_RETURN(ModelConfig c, FromJson(j, config_path));
  const std::string gen_path = (base / "generation_config.json").string();
  if (fs::exists(gen_path)) {
    OLMO_ASSIGN_OR_RETURN(json g, ReadJson(gen_path));
    if (g.contains("eos_token_id") && !g["eos_token_id"].is_null()) {
      OLMO_ASSIGN_OR_RETURN(std::vector<int32_t> ids, IdList(g, gen_path, "eos_token_id"));
      for (int32_t id : ids) {
        if (id < 0 || id >= c.vocab_size) {
          return FieldError(gen_path, "eos_token_id",
                            absl::StrFormat("id %d outside the vocabulary [0, %d)", id, c.vocab_size));
        }
      }
      c.eos_token_ids = std::move(ids);
    }
  }
  return c;
}

}  // namespace olmo
