// SampleSlice (kernels/ops.h) on the GPU: one block per row, rows in passes of at most
// kRowsPerPass through the workspace (SampleSliceWorkspaceBytes: the processed logits z). Per
// row: the raw max / argmax (block reduction) and Σ exp(x - max) in double; the best raw logits
// and the best z by (value desc, id asc) with sample::BestIndices (exact radix select, then a
// small sort); z is built as in sample.cu's prepare kernel with the same _rn intrinsics, so its
// values equal the CPU's bit for bit. Σ exp is summed in another order than the CPU (within
// double rounding).
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/memory_plan.h"
#include "kernels/cuda/sample_block.cuh"

namespace olmo::kernels::cuda {
namespace {

using sample::Before;
using sample::BestIndices;
using sample::Candidate;
using sample::kThreads;
using sample::ProcessedLogits;
using sample::RowFirst;
using sample::RowSum;
using sample::Shared;

constexpr int64_t kRowsPerPass = kSampleRowsPerPass;  // memory_plan.h budgets for it

struct SliceArgs {
  SampleSliceParams p;  // pointers advanced to this pass's first row
  float* z;             // workspace f32 [rows, vocab]
};

__global__ void __launch_bounds__(kThreads) SampleSliceKernel(SliceArgs a) {
  __shared__ Shared sh;
  const SampleSliceParams& p = a.p;
  const int64_t r = blockIdx.x, V = p.vocab, begin = p.vocab_begin;
  const float* x = p.logits + r * V;
  const SampleRowParams rp = p.row_params[r];

  // The raw log-sum-exp's parts: max, argmax (lowest id on ties), Σ exp(x - max).
  Candidate best{-INFINITY, INT_MAX};
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const Candidate c{x[i], static_cast<int32_t>(i)};
    if (Before(c, best)) best = c;
  }
  const Candidate raw = RowFirst(best, sh);
  double s = 0.0;
  if (raw.value != -INFINITY) {
    for (int64_t i = threadIdx.x; i < V; i += kThreads) {
      s += exp(static_cast<double>(__fsub_rn(x[i], raw.value)));
    }
  }
  const double sum = RowSum(s, sh);
  if (threadIdx.x == 0) {
    p.max[r] = raw.value;
    p.argmax[r] = raw.id == INT_MAX ? -1 : static_cast<int32_t>(begin + raw.id);
    p.sum_exp[r] = raw.value == -INFINITY ? 0.0 : sum;
  }

  // The best raw logits.
  const int64_t N = p.max_logprobs > 0 ? p.max_logprobs : 0;
  if (N > 0) {
    const int64_t n = std::min<int64_t>(std::min<int64_t>(std::max(rp.num_logprobs, 0), N), V);
    int32_t* top_ids = p.top_ids + r * N;
    float* top_raw = p.top_raw + r * N;
    if (n > 0) BestIndices([x](int64_t i) { return x[i]; }, V, n, top_ids, sh);
    for (int64_t j = threadIdx.x; j < N; j += kThreads) {
      if (j < n) {
        const int32_t local = top_ids[j];
        top_raw[j] = x[local];
        top_ids[j] = static_cast<int32_t>(begin + local);
      } else {
        top_ids[j] = -1;
        top_raw[j] = -INFINITY;
      }
    }
  }

  // Processed logits (Sample's: copy, penalties, ban, temperature).
  float* z = a.z + r * V;
  ProcessedLogits(x, z, V, begin, rp, r, p.penalty_offsets, p.penalty_ids, p.penalty_counts,
                  p.ban_offsets, p.ban_ids);
  if (rp.temperature != 0.0f) {
    for (int64_t i = threadIdx.x; i < V; i += kThreads) z[i] = __fdiv_rn(z[i], rp.temperature);
  }
  __syncthreads();

  // The best z, with their raw logits.
  const int64_t C = p.max_candidates;
  const int64_t nc = std::min(C, V);
  int32_t* cand_ids = p.cand_ids + r * C;
  if (nc > 0) BestIndices([z](int64_t i) { return z[i]; }, V, nc, cand_ids, sh);
  for (int64_t j = threadIdx.x; j < C; j += kThreads) {
    if (j < nc) {
      const int32_t local = cand_ids[j];
      p.cand_z[r * C + j] = z[local];
      p.cand_raw[r * C + j] = x[local];
      cand_ids[j] = static_cast<int32_t>(begin + local);
    } else {
      cand_ids[j] = -1;
      p.cand_z[r * C + j] = -INFINITY;
      p.cand_raw[r * C + j] = -INFINITY;
    }
  }
}

int64_t RowsPerPass(int64_t rows, int64_t vocab) {
  return std::max<int64_t>(1,
                           std::min({rows, kRowsPerPass, INT_MAX / std::max<int64_t>(vocab, 1)}));
}

}  // namespace

int64_t SampleSliceWorkspaceBytes(int64_t rows, int64_t vocab) {
  if (rows <= 0 || vocab <= 0) return 0;
  return RowsPerPass(rows, vocab) * vocab * static_cast<int64_t>(sizeof(float));
}

absl::Status SampleSlice(const SampleSliceParams& p, void* workspace, int64_t workspace_bytes,
                         cudaStream_t stream) {
  if (p.rows <= 0) return absl::OkStatus();
  if (p.vocab < 0 || p.vocab > INT_MAX) {
    return absl::InvalidArgumentError("SampleSlice: vocab must be in [0, 2^31)");
  }
  if (p.max_candidates < 1) {
    return absl::InvalidArgumentError("SampleSlice: max_candidates must be >= 1");
  }
  if (SampleSliceWorkspaceBytes(p.rows, p.vocab) > workspace_bytes) {
    return absl::InternalError("SampleSlice: workspace smaller than SampleSliceWorkspaceBytes");
  }
  const int64_t V = p.vocab, N = std::max<int64_t>(p.max_logprobs, 0), C = p.max_candidates;
  const int64_t per_pass = RowsPerPass(p.rows, V);
  for (int64_t r0 = 0; r0 < p.rows; r0 += per_pass) {
    const int64_t rows = std::min(per_pass, p.rows - r0);
    SliceArgs a{p, static_cast<float*>(workspace)};
    a.p.logits = p.logits + r0 * V;
    a.p.rows = rows;
    a.p.row_params = p.row_params + r0;
    if (p.penalty_offsets != nullptr) a.p.penalty_offsets = p.penalty_offsets + r0;
    if (p.ban_offsets != nullptr) a.p.ban_offsets = p.ban_offsets + r0;
    a.p.max = p.max + r0;
    a.p.argmax = p.argmax + r0;
    a.p.sum_exp = p.sum_exp + r0;
    if (N > 0) {
      a.p.top_ids = p.top_ids + r0 * N;
      a.p.top_raw = p.top_raw + r0 * N;
    }
    a.p.cand_ids = p.cand_ids + r0 * C;
    a.p.cand_z = p.cand_z + r0 * C;
    a.p.cand_raw = p.cand_raw + r0 * C;
    SampleSliceKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(a);
    OLMO_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  return absl::OkStatus();
}

}  // namespace olmo::kernels::cuda
