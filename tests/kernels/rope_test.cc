// RoPE tables against transformers' ROPE_INIT_FUNCTIONS (fixture from tools/golden/rope_fixtures.py)
// and the rotation itself against a direct evaluation.
#include <cmath>
#include <fstream>
#include <random>

#include "common/model_config.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "nlohmann/json.hpp"

namespace olmo::kernels {
namespace {

TEST(RopeTable, MatchesTransformers) {
  std::ifstream in(std::string(OLMO_TEST_DATA_DIR) + "/rope/rope_tables.json");
  ASSERT_TRUE(in.good());
  nlohmann::json fixture = nlohmann::json::parse(in);
  int checked = 0;
  for (auto& [name, c] : fixture["cases"].items()) {
    nlohmann::json cfg = c["config"];
    cfg["vocab_size"] = 16;
    cfg["intermediate_size"] = 8;
    cfg["num_hidden_layers"] = 4;
    cfg["sliding_window"] = 8;
    cfg["rms_norm_eps"] = 1e-6;
    cfg["model_type"] = "olmo3";
    auto config = ModelConfig::FromJson(cfg, name);
    ASSERT_TRUE(config.ok()) << config.status();
    RopeTable t = MakeRopeTable(config->rope_full, config->head_dim);
    auto want = c["inv_freq"].get<std::vector<double>>();
    ASSERT_EQ(t.inv_freq.size(), want.size()) << name;
    for (size_t j = 0; j < want.size(); ++j) {
      EXPECT_NEAR(t.inv_freq[j], want[j], 2e-7 * std::fabs(want[j]) + 1e-12) << name << " j=" << j;
    }
    EXPECT_NEAR(t.attention_scale, c["attention_scaling"].get<double>(), 1e-7) << name;
    // Sliding layers: plain RoPE with the same theta, amplitude 1.
    RopeTable s = MakeRopeTable(config->rope_sliding, config->head_dim);
    EXPECT_EQ(s.attention_scale, 1.0f);
    EXPECT_NEAR(s.inv_freq[1], std::pow(config->rope_full.theta, -2.0 / config->head_dim), 1e-6);
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

TEST(Rope, RotatesPairsAndScales) {
  const int64_t T = 5, H = 3, D = 8, stride = H * D + 4;  // padded rows
  RopeTable table;
  table.inv_freq = {1.0f, 0.3f, 0.05f, 0.001f};
  table.attention_scale = 1.5f;
  std::vector<int32_t> pos = {0, 1, 7, 100, 4095};
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> x(T * stride), ref(T * stride);
  for (auto& v : x) v = nd(rng);
  ref = x;
  cpu::Rope({x.data(), T, H, D, stride, pos.data(), &table}, 2);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t j = 0; j < D / 2; ++j) {
        double a = ref[t * stride + h * D + j], b = ref[t * stride + h * D + j + D / 2];
        double th = static_cast<double>(static_cast<float>(pos[t]) * table.inv_freq[j]);
        EXPECT_NEAR(x[t * stride + h * D + j], 1.5 * (a * std::cos(th) - b * std::sin(th)), 1e-5);
        EXPECT_NEAR(x[t * stride + h * D + j + D / 2], 1.5 * (b * std::cos(th) + a * std::sin(th)),
                    1e-5);
      }
    }
    for (int64_t p = H * D; p < stride; ++p) EXPECT_EQ(x[t * stride + p], ref[t * stride + p]);
  }
}

}  // namespace
}  // namespace olmo::kernels
