// ModelConfig against the reconstructed Olmo 3 configs and the loader rules of olmo3.md §2.1.
#include "common/model_config.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace olmo {
namespace {

nlohmann::json Base() {
  return nlohmann::json::parse(R"({
    "model_type": "olmo3", "vocab_size": 100278, "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 8, "num_attention_heads": 32, "num_key_value_heads": 8,
    "max_position_embeddings": 65536, "rope_theta": 500000, "rms_norm_eps": 1e-6,
    "sliding_window": 4096, "eos_token_id": 100257,
    "rope_scaling": {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8192,
                     "attention_factor": 1.2079441541679836, "beta_fast": 32.0, "beta_slow": 1.0}
  })");
}

std::string Err(const nlohmann::json& j) {
  auto c = ModelConfig::FromJson(j, "config.json");
  EXPECT_FALSE(c.ok());
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(ModelConfig, RealOlmo3Configs) {
  for (const char* name : {"olmo3-7b", "olmo3-32b"}) {
    std::string dir = ::testing::TempDir() + "/" + name;
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(std::string(OLMO_SOURCE_DIR) + "/tests/data/configs/" + name +
                                   ".config.json",
                               dir + "/config.json",
                               std::filesystem::copy_options::overwrite_existing);
    auto c = ModelConfig::Load(dir);
    ASSERT_TRUE(c.ok()) << c.status();
    bool is7b = std::string(name) == "olmo3-7b";
    EXPECT_EQ(c->vocab_size, 100278);
    EXPECT_EQ(c->hidden_size, is7b ? 4096 : 5120);
    EXPECT_EQ(c->num_key_value_heads, is7b ? 32 : 8);
    EXPECT_EQ(c->head_dim, 128);
    EXPECT_EQ(c->num_hidden_layers, is7b ? 32 : 64);
    EXPECT_EQ(c->sliding_window, 4096);
    EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
    for (int64_t l = 0; l < c->num_hidden_layers; ++l) EXPECT_EQ(c->is_full(l), (l + 1) % 4 == 0);
    EXPECT_EQ(c->rope_full.type, RopeType::kYarn);
    EXPECT_DOUBLE_EQ(c->rope_full.factor, 8.0);
    EXPECT_EQ(c->rope_full.original_max_position_embeddings, 8192);
    EXPECT_DOUBLE_EQ(*c->rope_full.attention_factor, 1.2079441541679836);
    EXPECT_EQ(c->rope_sliding.type, RopeType::kDefault);
    EXPECT_DOUBLE_EQ(c->rope_sliding.theta, 500000.0);
    EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{100257});
  }
}

TEST(ModelConfig, Defaults) {
  nlohmann::json j = Base();
  j.erase("num_key_value_heads");
  auto c = ModelConfig::FromJson(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_key_value_heads, 32);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->layer_types.size(), 8u);
  EXPECT_TRUE(c->is_full(3));
  EXPECT_FALSE(c->is_full(4));
  j.erase("rms_norm_eps");
  EXPECT_DOUBLE_EQ(ModelConfig::FromJson(j, "c")->rms_norm_eps, 1e-5);  // HF class default
}

TEST(ModelConfig, RopeSpellings) {
  // (a) rope_scaling with the legacy `type` key.
  nlohmann::json a = Base();
  a["rope_scaling"].erase("rope_type");
  a["rope_scaling"]["type"] = "yarn";
  // (b) per-layer-type rope_parameters.
  nlohmann::json b = Base();
  b.erase("rope_scaling");
  b["rope_parameters"] = {{"full_attention", Base()["rope_scaling"]},
                          {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 500000}}}};
  b["rope_parameters"]["full_attention"]["rope_theta"] = 500000;
  // (c) flat rope_parameters with rope_theta inside.
  nlohmann::json c = Base();
  c.erase("rope_scaling");
  c.erase("rope_theta");
  c["rope_parameters"] = Base()["rope_scaling"];
  c["rope_parameters"]["rope_theta"] = 500000;
  for (const auto& j : {a, b, c}) {
    auto cfg = ModelConfig::FromJson(j, "config.json");
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    EXPECT_EQ(cfg->rope_full.type, RopeType::kYarn);
    EXPECT_DOUBLE_EQ(cfg->rope_full.theta, 500000.0);
    EXPECT_EQ(cfg->rope_sliding.type, RopeType::kDefault);
    EXPECT_DOUBLE_EQ(cfg->rope_sliding.theta, 500000.0);
  }
  // HF quirk: factor = max_position_embeddings / original_max_position_embeddings.
  nlohmann::json q = Base();
  q["rope_scaling"]["factor"] = 4.0;
  EXPECT_DOUBLE_EQ(ModelConfig::FromJson(q, "c")->rope_full.factor, 8.0);
}

TEST(ModelConfig, ErrorsNameFieldAndFile) {
  struct Case {
    std::string field;
    nlohmann::json value;  // null: erase
    std::string expect;
  } cases[] = {
      {"hidden_size", nullptr, "'hidden_size' missing"},
      {"vocab_size", "big", "'vocab_size' must be an integer"},
      {"num_hidden_layers", 0, "'num_hidden_layers' must be > 0"},
      {"num_key_value_heads", 5, "'num_key_value_heads'"},
      {"layer_types", nlohmann::json::array({"full_attention"}), "'layer_types' has 1 entries"},
      {"sliding_window", nullptr, "'sliding_window' missing"},
      {"eos_token_id", 200000, "'eos_token_id'"},
      {"head_dim", 7, "'head_dim' must be even"},
      {"tie_word_embeddings", true, "'tie_word_embeddings'"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = Base();
    if (c.value.is_null()) j.erase(c.field); else j[c.field] = c.value;
    std::string msg = Err(j);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  }
  nlohmann::json bad_rope = Base();
  bad_rope["rope_scaling"]["rope_type"] = "longrope";
  EXPECT_NE(Err(bad_rope).find("longrope"), std::string::npos);
}

TEST(ModelConfig, GenerationConfigOverridesStopIds) {
  std::string dir = ::testing::TempDir() + "/genconf";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << Base().dump();
  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": [100265, 100257]})";
  auto c = ModelConfig::Load(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{100265, 100257}));
  std::ofstream(dir + "/generation_config.json") << "{oops";
  auto bad = ModelConfig::Load(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("generation_config.json"), std::string::npos);
  auto missing = ModelConfig::Load(dir + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
}

}  // namespace
}  // namespace olmo
