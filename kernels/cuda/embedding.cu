// Embedding gather (vocab-parallel): out[t] = table[id - vocab_begin] or zeros outside the slice.
// One block per token, threads over the hidden dimension.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace olmo::kernels::cuda {
namespace {

__global__ void EmbeddingKernel(const int32_t* ids, const void* table, DType dtype, int64_t rows,
                                int64_t hidden, int64_t vocab_begin, float* out) {
  const int64_t t = blockIdx.x;
  const int64_t row = static_cast<int64_t>(ids[t]) - vocab_begin;
  const bool inside = row >= 0 && row < rows;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) {
    out[t * hidden + j] = inside ? LoadAsFloat(table, dtype, row * hidden + j) : 0.0f;
  }
}

}  // namespace

void Embedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return;
  EmbeddingKernel<<<static_cast<unsigned>(p.num_tokens), 256, 0, stream>>>(
      p.token_ids, p.table.data, p.table.dtype, p.table.rows, p.table.cols, p.vocab_begin, p.out);
}

}  // namespace olmo::kernels::cuda
