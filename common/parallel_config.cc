#include "common/parallel_config.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_format.h"

namespace olmo {

Slice SplitEvenly(int64_t size, int parts, int index) {
  int64_t base = size / parts, extra = size % parts;
  Slice s;
  s.begin = index * base + std::min<int64_t>(index, extra);
  s.end = s.begin + base + (index < extra ? 1 : 0);
  return s;
}

absl::StatusOr<ParallelConfig> ParallelConfig::Make(int tp, int pp, int rank, int world_size,
                                                    const ModelConfig& m) {
  if (tp < 1 || pp < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("tp (%d) and pp (%d) must be >= 1", tp, pp));
  }
  if (tp * pp != world_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "world size %d != tp %d x pp %d: launch exactly tp x pp ranks", world_size, tp, pp));
  }
  if (rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(absl::StrFormat("rank %d outside [0, %d)", rank, world_size));
  }
  if (m.num_attention_heads % tp != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tp %d must divide num_attention_heads %d", tp, m.num_attention_heads));
  }
  int64_t kv = m.num_key_value_heads;
  if (kv % tp != 0 && tp % kv != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "num_key_value_heads %d must be divisible by tp %d, or tp by it (replicated kv heads)",
        kv, tp));
  }
  if (pp > m.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "pp %d exceeds num_hidden_layers %d", pp, m.num_hidden_layers));
  }
  ParallelConfig p;
  p.tp = tp;
  p.pp = pp;
  p.rank = rank;
  return p;
}

std::vector<StageRange> ParallelConfig::SplitStages(const ModelConfig& m, int pp) {
  const int64_t L = m.num_hidden_layers;
  const double layer_cost = static_cast<double>(m.hidden_size) * (m.q_width() + 2 * m.kv_width()) +
                            static_cast<double>(m.q_width()) * m.hidden_size +
                            3.0 * m.hidden_size * m.intermediate_size;
  const double head_cost = static_cast<double>(m.vocab_size) * m.hidden_size;
  auto stage_cost = [&](int64_t begin, int64_t end, bool last) {
    return (end - begin) * layer_cost + (last ? head_cost : 0.0);
  };
  // best[s][e]: minimal bottleneck for layers [0, e) split into s stages.
  const double kInf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(pp + 1, std::vector<double>(L + 1, kInf));
  best[0][0] = 0.0;
  for (int s = 1; s <= pp; ++s) {
    for (int64_t e = s; e <= L; ++e) {
      for (int64_t b = s - 1; b < e; ++b) {
        double c = std::max(best[s - 1][b], stage_cost(b, e, s == pp && e == L));
        best[s][e] = std::min(best[s][e], c);
      }
    }
  }
  const double limit = best[pp][L] * 1.02;
  // Among splits whose bottleneck is within the limit, maximize aligned boundaries (b % 4 == 0).
  // aligned[s][e] = max aligned boundaries for [0, e) in s stages with every stage under limit.
  std::vector<std::vector<int>> aligned(pp + 1, std::vector<int>(L + 1, -1));
  std::vector<std::vector<int64_t>> from(pp + 1, std::vector<int64_t>(L + 1, -1));
  aligned[0][0] = 0;
  for (int s = 1; s <= pp; ++s) {
    for (int64_t e = s; e <= L; ++e) {
      for (int64_t b = s - 1; b < e; ++b) {
        if (aligned[s - 1][b] < 0) continue;
        if (stage_cost(b, e, s == pp && e == L) > limit) continue;
        int score = aligned[s - 1][b] + (s > 1 && b % 4 == 0 ? 1 : 0);
        if (score > aligned[s][e]) {
          aligned[s][e] = score;
          from[s][e] = b;
        }
      }
    }
  }
  std::vector<StageRange> stages(pp);
  int64_t e = L;
  for (int s = pp; s >= 1; --s) {
    int64_t b = from[s][e];
    stages[s - 1].layer_begin = b;
    stages[s - 1].layer_end = e;
    e = b;
  }
  stages.front().has_embedding = true;
  stages.back().has_lm_head = true;
  return stages;
}

HeadShard ParallelConfig::heads(const ModelConfig& m) const {
  HeadShard h;
  h.num_q_heads = m.num_attention_heads / tp;
  h.q_head_begin = tp_rank() * h.num_q_heads;
  int64_t kv = m.num_key_value_heads;
  if (kv >= tp) {
    h.num_kv_heads = kv / tp;
    h.kv_head_begin = tp_rank() * h.num_kv_heads;
  } else {
    h.num_kv_heads = 1;
    h.kv_replication = tp / kv;
    h.kv_head_begin = tp_rank() / h.kv_replication;
  }
  return h;
}

}  // namespace olmo
