// KV block budget (see memory_plan.h).
#include "kernels/cuda/memory_plan.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace olmo::kernels::cuda {

absl::StatusOr<MemoryPlan> PlanKvMemory(const MemoryPlanInput& in) {
  if (in.free_bytes < 0 || in.weight_bytes < 0 || in.activation_bytes < 0 || in.reserve_bytes < 0 ||
      in.min_blocks < 0) {
    return absl::InvalidArgumentError("memory plan: byte counts must not be negative");
  }
  if (in.kv_bytes_per_block <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "memory plan: kv_bytes_per_block must be positive, got %d", in.kv_bytes_per_block));
  }
  if (!(in.memory_fraction > 0.0 && in.memory_fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "memory plan: memory_fraction must be in (0, 1], got %g", in.memory_fraction));
  }
  MemoryPlan plan;
  // Through long double so that 80 GB-scale counts keep every byte.
  plan.budget_bytes = static_cast<int64_t>(
      std::floor(static_cast<long double>(in.free_bytes) * in.memory_fraction));
  const int64_t fixed = in.weight_bytes + in.activation_bytes + in.reserve_bytes;
  const int64_t left = plan.budget_bytes - fixed;
  plan.num_kv_blocks = left > 0 ? left / in.kv_bytes_per_block : 0;
  if (plan.num_kv_blocks < in.min_blocks || plan.num_kv_blocks == 0) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "memory plan: %d KV blocks fit, need at least %d: budget %d bytes (%.3f of %d free) - "
        "weights %d - activations %d - reserve %d = %d bytes, %d bytes per block",
        plan.num_kv_blocks, std::max<int64_t>(in.min_blocks, 1), plan.budget_bytes,
        in.memory_fraction, in.free_bytes, in.weight_bytes, in.activation_bytes, in.reserve_bytes,
        left, in.kv_bytes_per_block));
  }
  plan.kv_bytes = plan.num_kv_blocks * in.kv_bytes_per_block;
  plan.spare_bytes = left - plan.kv_bytes;
  return plan;
}

int64_t KvBytesPerBlock(int64_t layers, int64_t kv_heads, int64_t block_size, int64_t head_dim,
                        int64_t dtype_bytes) {
  return 2 * layers * kv_heads * block_size * head_dim * dtype_bytes;
}

int64_t SamplingWorkspaceBound(int64_t vocab) {
  return vocab <= 0 ? 0 : kSampleRowsPerPass * vocab * (16 + 16 + 4);
}

}  // namespace olmo::kernels::cuda
