// RoPE tables (HF `_compute_default_rope_parameters` / `_compute_yarn_parameters` of transformers
// 4.57, docs/olmo3.md §3.8) and the rotate-half (NeoX) application.
//
// The tables follow torch's f32 arithmetic step by step: exponents 2j/D and base^(2j/D) in f32,
// `1 / x` in f32, Python-float scalars rounded to f32 before they meet a tensor. The correction
// range (low, high) is Python double arithmetic in HF and here.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels {
namespace {

// HF get_mscale(scale) with mscale = 1: the default YaRN attention factor.
double DefaultYarnAttentionFactor(double scale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * std::log(scale) + 1.0;
}

// HF find_correction_dim: the rotary dimension whose wavelength completes `num_rotations` turns
// over `max_pos` positions (Python double arithmetic).
double CorrectionDim(double num_rotations, double dim, double base, double max_pos) {
  return dim * std::log(max_pos / (num_rotations * 2.0 * M_PI)) / (2.0 * std::log(base));
}

}  // namespace

RopeTable MakeRopeTable(const RopeConfig& rope, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  RopeTable t;
  t.inv_freq.resize(static_cast<size_t>(half));
  // pos_freqs = base ** (arange(0, D, 2).float() / D): every step in f32.
  const float base = static_cast<float>(rope.theta);
  std::vector<float> pos_freqs(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) {
    const float expo = static_cast<float>(2 * j) / static_cast<float>(head_dim);
    pos_freqs[j] = std::pow(base, expo);
  }
  if (rope.type == RopeType::kDefault) {
    for (int64_t j = 0; j < half; ++j) t.inv_freq[j] = 1.0f / pos_freqs[j];
    t.attention_scale = 1.0f;
    return t;
  }

  const double s = rope.factor;
  t.attention_scale = static_cast<float>(
      rope.attention_factor.has_value() ? *rope.attention_factor : DefaultYarnAttentionFactor(s));
  // HF: original_max_position_embeddings or max_position_embeddings; the config loader stores
  // the effective value (never 0 for a YaRN table).
  const double max_pos = static_cast<double>(rope.original_max_position_embeddings);
  const double dim = static_cast<double>(head_dim);
  double low = CorrectionDim(rope.beta_fast, dim, rope.theta, max_pos);
  double high = CorrectionDim(rope.beta_slow, dim, rope.theta, max_pos);
  if (rope.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, dim - 1.0);
  if (low == high) high += 0.001;  // HF: prevents a zero-width ramp
  // ramp[j] = clamp((f32(j) - f32(low)) / f32(high - low), 0, 1), as torch does with scalars.
  const float low_f = static_cast<float>(low);
  const float width_f = static_cast<float>(high - low);
  const float s_f = static_cast<float>(s);
  for (int64_t j = 0; j < half; ++j) {
    const float ramp = std::clamp((static_cast<float>(j) - low_f) / width_f, 0.0f, 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    const float interpolation = 1.0f / (s_f * pos_freqs[j]);
    const float extrapolation = 1.0f / pos_freqs[j];
    // Two separate products then a sum, each rounded to f32 (torch evaluates them as tensors).
    const float a = interpolation * (1.0f - extrapolation_factor);
    const float b = extrapolation * extrapolation_factor;
    t.inv_freq[j] = a + b;
  }
  return t;
}

namespace cpu {

// Parallel regions only pay off above this many elements (tiny steps run on one thread).
constexpr int64_t kParallelMin = 1 << 15;

void Rope(const RopeParams& p, int num_threads) {
  const int64_t half = p.head_dim / 2;
  const float amp = p.table->attention_scale;
  const float* inv_freq = p.table->inv_freq.data();
#pragma omp parallel num_threads(num_threads) if (p.num_tokens * p.num_heads * p.head_dim > \
                                                  kParallelMin)
  {
    std::vector<float> cos_a(static_cast<size_t>(half)), sin_a(static_cast<size_t>(half));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < p.num_tokens; ++t) {
      const float pos = static_cast<float>(p.positions[t]);
      for (int64_t j = 0; j < half; ++j) {
        // The angle is an f32 product as in HF; cos/sin of that f32 angle are evaluated in
        // double and rounded once, then scaled by A in f32 (HF: emb.cos() * attention_scaling).
        const double angle = static_cast<double>(pos * inv_freq[j]);
        cos_a[j] = static_cast<float>(std::cos(angle)) * amp;
        sin_a[j] = static_cast<float>(std::sin(angle)) * amp;
      }
      for (int64_t h = 0; h < p.num_heads; ++h) {
        float* x = p.x + t * p.stride + h * p.head_dim;
        for (int64_t j = 0; j < half; ++j) {
          const float a = x[j], b = x[j + half];
          const float ac = a * cos_a[j], bs = b * sin_a[j];
          const float bc = b * cos_a[j], as = a * sin_a[j];
          x[j] = ac - bs;
          x[j + half] = bc + as;
        }
      }
    }
  }
}

}  // namespace cpu
}  // namespace olmo::kernels
