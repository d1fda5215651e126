// RoPE tables (HF _compute_default_rope_parameters / _compute_yarn_parameters, docs/olmo3.md §3.8)
// and the rotate-half application.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels {

RopeTable MakeRopeTable(const RopeConfig& rope, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  RopeTable t;
  t.inv_freq.resize(static_cast<size_t>(half));
  // torch: base ** (arange(0, D, 2).float() / D) in f32, then 1.0 / that.
  const float base = static_cast<float>(rope.theta);
  std::vector<float> pos_freqs(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) {
    float expo = static_cast<float>(2 * j) / static_cast<float>(head_dim);
    pos_freqs[j] = std::pow(base, expo);
  }
  if (rope.type == RopeType::kDefault) {
    for (int64_t j = 0; j < half; ++j) t.inv_freq[j] = 1.0f / pos_freqs[j];
    t.attention_scale = 1.0f;
    return t;
  }
  const double s = rope.factor;
  t.attention_scale = rope.attention_factor.has_value()
                          ? static_cast<float>(*rope.attention_factor)
                          : static_cast<float>(0.1 * std::log(s) + 1.0);
  const double L0 = static_cast<double>(rope.original_max_position_embeddings);
  const double D = static_cast<double>(head_dim);
  auto corr_dim = [&](double n) {
    return D * std::log(L0 / (n * 2.0 * M_PI)) / (2.0 * std::log(rope.theta));
  };
  double low = corr_dim(rope.beta_fast), high = corr_dim(rope.beta_slow);
  if (rope.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, D - 1);
  if (low == high) high += 0.001;
  for (int64_t j = 0; j < half; ++j) {
    // HF: linear ramp in f32 over arange(dim // 2), clamped to [0, 1].
    float ramp = (static_cast<float>(j) - static_cast<float>(low)) /
                 (static_cast<float>(high) - static_cast<float>(low));
    ramp = std::clamp(ramp, 0.0f, 1.0f);
    float extrapolation = 1.0f - ramp;
    float interp = 1.0f / (static_cast<float>(s) * pos_freqs[j]);
    float extra = 1.0f / pos_freqs[j];
    t.inv_freq[j] = interp * (1.0f - extrapolation) + extra * extrapolation;
  }
  return t;
}

namespace cpu {

void Rope(const RopeParams& p, int num_threads) {
  const int64_t half = p.head_dim / 2;
  const float A = p.table->attention_scale;
  const float* inv = p.table->inv_freq.data();
#pragma omp parallel for num_threads(num_threads) schedule(static) if (p.num_tokens * p.num_heads * p.head_dim > (1 << 15))
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const float pos = static_cast<float>(p.positions[t]);
    float cosv[512], sinv[512];  // head_dim / 2 <= 512
    for (int64_t j = 0; j < half; ++j) {
      float angle = pos * inv[j];  // f32 product, as HF
      cosv[j] = static_cast<float>(std::cos(static_cast<double>(angle))) * A;
      sinv[j] = static_cast<float>(std::sin(static_cast<double>(angle))) * A;
    }
    for (int64_t h = 0; h < p.num_heads; ++h) {
      float* x = p.x + t * p.stride + h * p.head_dim;
      for (int64_t j = 0; j < half; ++j) {
        float a = x[j], b = x[j + half];
        x[j] = a * cosv[j] - b * sinv[j];
        x[j + half] = b * cosv[j] + a * sinv[j];
      }
    }
  }
}

}  // namespace cpu
}  // namespace olmo::kernels
