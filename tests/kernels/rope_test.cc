// RoPE tables against transformers 4.57.1 ROPE_INIT_FUNCTIONS (tests/data/rope/rope_tables.json,
// written by tools/golden/rope_fixtures.py) and the values quoted in docs/olmo3.md §3.8; the
// rotation against a direct double evaluation, and its norm-preserving property.
#include <cmath>
#include <cstring>
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
  int checked = 0, yarn = 0, exact = 0, entries = 0;
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
    ASSERT_EQ(config->head_dim, c["head_dim"].get<int64_t>()) << name;
    const RopeTable t = MakeRopeTable(config->rope_full, config->head_dim);
    const auto want = c["inv_freq"].get<std::vector<double>>();
    ASSERT_EQ(t.inv_freq.size(), want.size()) << name;
    for (size_t j = 0; j < want.size(); ++j) {
      // torch's vectorized pow is within 1 ulp: allow ~1 ulp of f32 (2^-23 relative).
      EXPECT_NEAR(t.inv_freq[j], want[j], 1.2e-7 * std::fabs(want[j])) << name << " j=" << j;
      exact += static_cast<double>(t.inv_freq[j]) == want[j];
      ++entries;
    }
    EXPECT_NEAR(t.attention_scale, c["attention_scaling"].get<double>(), 1e-7) << name;
    yarn += config->rope_full.type == RopeType::kYarn;
    // Sliding layers: default RoPE with the same theta, amplitude 1; equal to a default case.
    const RopeTable s = MakeRopeTable(config->rope_sliding, config->head_dim);
    EXPECT_EQ(s.attention_scale, 1.0f);
    if (config->rope_full.type == RopeType::kDefault) {
      EXPECT_EQ(s.inv_freq, t.inv_freq) << name;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 8);
  EXPECT_EQ(yarn, 5);
  // Most entries are bit-identical; report how many.
  std::printf("rope tables: %d of %d entries bit-identical to transformers\n", exact, entries);
  EXPECT_GT(exact, entries * 9 / 10);
}

TEST(RopeTable, Olmo3ValuesFromTheSpec) {
  RopeConfig full;
  full.type = RopeType::kYarn;
  full.theta = 500000.0;
  full.factor = 8.0;
  full.original_max_position_embeddings = 8192;
  full.attention_factor = 1.2079441541679836;
  const RopeTable f = MakeRopeTable(full, 128);
  ASSERT_EQ(f.inv_freq.size(), 64u);
  EXPECT_EQ(f.inv_freq[0], 1.0f);
  EXPECT_NEAR(f.inv_freq[1], 0.81461722, 1e-8);
  EXPECT_NEAR(f.inv_freq[2], 0.66360128, 1e-8);
  EXPECT_NEAR(f.inv_freq[19], 1.9282755e-02, 1e-9);
  EXPECT_NEAR(f.inv_freq[35], 9.5562122e-05, 1e-12);
  EXPECT_NEAR(f.inv_freq[63], 3.0689259e-07, 1e-14);
  EXPECT_FLOAT_EQ(f.attention_scale, 1.2079441541679836f);
  // low = 18, high = 35: j <= 18 keeps the base frequency, j >= 35 is divided by s = 8.
  RopeConfig sliding;
  sliding.theta = 500000.0;
  const RopeTable s = MakeRopeTable(sliding, 128);
  EXPECT_NEAR(s.inv_freq[19], 2.0329105e-02, 1e-9);
  EXPECT_NEAR(s.inv_freq[63], 2.4551407e-06, 1e-13);
  EXPECT_EQ(f.inv_freq[18], s.inv_freq[18]);
  EXPECT_NEAR(f.inv_freq[40], s.inv_freq[40] / 8.0, 1e-7 * s.inv_freq[40]);
  // Without attention_factor the amplitude is 0.1 ln s + 1.
  full.attention_factor.reset();
  EXPECT_FLOAT_EQ(MakeRopeTable(full, 128).attention_scale, 0.1f * std::log(8.0f) + 1.0f);
  full.factor = 0.5;  // HF get_mscale: 1 for s <= 1 (0.1 ln s + 1 would give 0.93)
  EXPECT_EQ(MakeRopeTable(full, 128).attention_scale, 1.0f);
}

// x rotated by the table, in double from the f32 angle.
void ReferenceRope(const float* in, double* out, int64_t dim, int32_t pos, const RopeTable& t) {
  for (int64_t j = 0; j < dim / 2; ++j) {
    const double th = static_cast<double>(static_cast<float>(pos) * t.inv_freq[j]);
    const double a = in[j], b = in[j + dim / 2], amp = t.attention_scale;
    out[j] = amp * (a * std::cos(th) - b * std::sin(th));
    out[j + dim / 2] = amp * (b * std::cos(th) + a * std::sin(th));
  }
}

TEST(Rope, MatchesDirectEvaluationWithStridedRows) {
  RopeConfig cfg;
  cfg.type = RopeType::kYarn;
  cfg.theta = 10000.0;
  cfg.factor = 4.0;
  cfg.original_max_position_embeddings = 64;
  const RopeTable table = MakeRopeTable(cfg, 16);
  ASSERT_GT(table.attention_scale, 1.1f);
  const int64_t T = 6, H = 3, D = 16, stride = H * D + 5;  // padded rows (q inside fused qkv)
  const std::vector<int32_t> pos = {0, 1, 7, 100, 4095, 65535};
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> x(T * stride);
  for (auto& v : x) v = nd(rng);
  const auto before = x;
  cpu::Rope({x.data(), T, H, D, stride, pos.data(), &table}, 2);
  double worst = 0;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      double want[16];
      ReferenceRope(&before[t * stride + h * D], want, D, pos[t], table);
      for (int64_t j = 0; j < D; ++j) {
        worst = std::max(worst, std::fabs(x[t * stride + h * D + j] - want[j]));
      }
    }
    for (int64_t j = H * D; j < stride; ++j) EXPECT_EQ(x[t * stride + j], before[t * stride + j]);
  }
  EXPECT_LT(worst, 1e-6);
  // Position 0 is the identity times A.
  for (int64_t j = 0; j < H * D; ++j) EXPECT_EQ(x[j], before[j] * table.attention_scale);
}

TEST(Rope, PreservesPairNormsAndIsBatchInvariant) {
  RopeConfig cfg;
  cfg.theta = 500000.0;
  const RopeTable table = MakeRopeTable(cfg, 128);
  const int64_t T = 70, H = 4, D = 128;  // above the parallel threshold
  std::vector<int32_t> pos(T);
  for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(t * 937);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::vector<float> x(T * H * D);
  for (auto& v : x) v = nd(rng);
  const auto before = x;
  cpu::Rope({x.data(), T, H, D, H * D, pos.data(), &table}, 2);
  for (int64_t r = 0; r < T * H; ++r) {
    for (int64_t j = 0; j < D / 2; ++j) {
      const double a0 = before[r * D + j], b0 = before[r * D + j + D / 2];
      const double a1 = x[r * D + j], b1 = x[r * D + j + D / 2];
      EXPECT_NEAR(a1 * a1 + b1 * b1, a0 * a0 + b0 * b0, 1e-6 * (1 + a0 * a0 + b0 * b0));
    }
  }
  for (int64_t t = 0; t < T; t += 9) {
    std::vector<float> one(before.begin() + t * H * D, before.begin() + (t + 1) * H * D);
    cpu::Rope({one.data(), 1, H, D, H * D, &pos[t], &table}, 1);
    ASSERT_EQ(0, std::memcmp(one.data(), &x[t * H * D], H * D * 4)) << "token " << t;
  }
}

}  // namespace
}  // namespace olmo::kernels
