// ParallelConfig: a rank's place in a tp x pp worker group (DESIGN.md §2-3). rank = pp_rank * tp +
// tp_rank, so a stage's TP group is contiguous ranks (one node). Stage layer ranges are balanced
// by estimated compute, not bytes.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"

namespace olmo {

struct StageRange {
  int64_t layer_begin = 0;
  int64_t layer_end = 0;  // exclusive
  bool has_embedding = false;  // stage 0
  bool has_lm_head = false;    // last stage: final norm + lm_head
};

// Attention heads held by one tp rank. With tp > num_key_value_heads, kv heads are replicated:
// tp ranks tp_rank * kv / tp ... share one kv head.
struct HeadShard {
  int64_t q_head_begin = 0;
  int64_t num_q_heads = 0;
  int64_t kv_head_begin = 0;
  int64_t num_kv_heads = 0;
  // Ranks holding the same kv slice (1 unless replicated; consecutive tp ranks); only the first
  // of them contributes k-norm statistics, so each distinct kv slice counts once.
  int64_t kv_replication = 1;
};

// A contiguous [begin, end) range of a dimension split over tp ranks as evenly as possible (the
// first `size % tp` ranks get one more). Used for vocab and intermediate slices.
struct Slice {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};
Slice SplitEvenly(int64_t size, int parts, int index);

struct ParallelConfig {
  int tp = 1;
  int pp = 1;
  int rank = 0;

  int world_size() const { return tp * pp; }
  int tp_rank() const { return rank % tp; }
  int pp_rank() const { return rank / tp; }
  bool is_first_stage() const { return pp_rank() == 0; }
  bool is_last_stage() const { return pp_rank() == pp - 1; }

  // Validates tp/pp against the model and the launched world size; errors name the rule broken.
  static absl::StatusOr<ParallelConfig> Make(int tp, int pp, int rank, int world_size,
                                             const ModelConfig& model);

  // Layer ranges of every stage, minimizing the most expensive stage (cost per layer: its
  // matmul parameters; lm_head counts vocab x hidden); among splits within 2% of the best, the one
  // with most boundaries on the 4-layer sliding/full period.
  static std::vector<StageRange> SplitStages(const ModelConfig& model, int pp);

  HeadShard heads(const ModelConfig& model) const;
};

}  // namespace olmo
