// Embedding: gathers rows of a (possibly vocab-sliced) table and converts them to f32.
#include <cstring>

#include "common/dtype.h"
#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels::cpu {
namespace {
// Parallel regions only pay off above this many elements (tiny steps run on one thread).
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

void Embedding(const EmbeddingParams& p, int num_threads) {
  const int64_t hidden = p.table.cols;
  const int64_t row_bytes = hidden * DTypeSize(p.table.dtype);
  const auto* base = static_cast<const unsigned char*>(p.table.data);
#pragma omp parallel for num_threads(num_threads) \
    schedule(static) if (p.num_tokens * hidden > kParallelMin)
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    // Vocab-parallel: ids outside this rank's slice give zeros; the all-reduce over ranks then
    // yields the one rank's row.
    const int64_t row = static_cast<int64_t>(p.token_ids[t]) - p.vocab_begin;
    float* out = p.out + t * hidden;
    if (row < 0 || row >= p.table.rows) {
      std::memset(out, 0, static_cast<size_t>(hidden) * sizeof(float));
    } else {
      ConvertToF32(base + row * row_bytes, p.table.dtype, hidden, out);
    }
  }
}

}  // namespace olmo::kernels::cpu
