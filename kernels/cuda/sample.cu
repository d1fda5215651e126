// Sample (kernels/ops.h) on the GPU, over full vocab rows. Rows go in passes of at most
// kRowsPerPass through the backend's workspace (SampleWorkspaceBytes); per pass:
//   1. SamplePrepareKernel, one block per row: raw max / argmax and log-sum-exp (double sum);
//      the top raw logprobs (radix select of the n-th largest key, the ids above it, the lowest
//      ids equal to it, then sorted by one thread); the processed logits z (copy, sparse
//      penalties, ban); greedy argmax, or z / temperature, the top-k threshold (radix select)
//      and the survivors compacted in id order as (key, id) pairs;
//   2. cub's segmented radix sort of each row's survivors by key, descending; it is stable, so
//      equal keys keep their id order: the CPU's (z desc, id asc);
//   3. SampleDrawKernel, one block per row over the sorted survivors: probabilities
//      exp(z - z_max) in double, the top-p cut (a scan of the tail mass from the end), the
//      min-p cut and the inverse-CDF draw (a forward scan) with the CPU's Philox uniform.
// Keys are order-preserving u32 images of the floats (a < b <=> Key(a) < Key(b); -0 and +0 map
// to one key), so the selections are exact. f32 arithmetic that the CPU does in single
// operations uses the _rn intrinsics: never fused, rounded as on the CPU.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "common/philox.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/memory_plan.h"
#include "kernels/cuda/sample_block.cuh"

namespace olmo::kernels::cuda {
namespace {

using sample::Before;
using sample::BestIndices;
using sample::Candidate;
using sample::DoubleScan;
using sample::Key;
using sample::KeyValue;
using sample::kNegInfKey;
using sample::KthLargestKey;
using sample::kThreads;
using sample::MaxOp;
using sample::MinOp;
using sample::OrderedCompact;
using sample::ProcessedLogits;
using sample::RowFirst;
using sample::RowIndex;
using sample::RowSum;
using sample::Shared;

constexpr int64_t kRowsPerPass = kSampleRowsPerPass;  // memory_plan.h budgets for it

struct PrepareArgs {
  const float* logits;  // f32 [rows, vocab]: this pass's rows
  int64_t vocab;
  const SampleRowParams* row_params;  // [rows]
  const int32_t* penalty_offsets;     // i32 [rows + 1] (absolute offsets) or null
  const int32_t* penalty_ids;
  const int32_t* penalty_counts;
  const int32_t* ban_offsets;  // i32 [rows + 1] (absolute offsets) or null
  const int32_t* ban_ids;
  int64_t max_logprobs;
  int32_t* token_ids;   // i32 [rows]
  float* logprobs;      // f32 [rows]
  int32_t* top_ids;     // i32 [rows, max_logprobs]
  float* top_logprobs;  // f32 [rows, max_logprobs]
  float* z;             // workspace f32 [rows, vocab]: processed logits
  uint32_t* keys;       // workspace u32 [rows, vocab]: survivors' keys, row r at r * vocab
  int32_t* ids;         // workspace i32 [rows, vocab]: survivors' ids, same places
  float* lse;           // workspace f32 [rows]
  int32_t* seg_begin;   // workspace i32 [rows]: row r's survivors are
  int32_t* seg_end;     // [seg_begin[r], seg_end[r]) of keys / ids (empty: token done)
};

// Writes the n_top best raw logprobs of row x (f32 [vocab]) by (logit desc, id asc).
__device__ void TopLogprobs(const float* x, int64_t vocab, int64_t n_top, float lse,
                            int32_t* top_ids, float* top_logprobs, Shared& sh) {
  BestIndices([x](int64_t i) { return x[i]; }, vocab, n_top, top_ids, sh);
  for (int64_t j = threadIdx.x; j < n_top; j += kThreads) {
    top_logprobs[j] = __fsub_rn(x[top_ids[j]], lse);
  }
}

__global__ void __launch_bounds__(kThreads) SamplePrepareKernel(PrepareArgs a) {
  __shared__ Shared sh;
  const int64_t r = blockIdx.x, V = a.vocab;
  const float* x = a.logits + r * V;
  const SampleRowParams p = a.row_params[r];

  // Raw argmax (the fallback token) and log-sum-exp.
  Candidate best{-INFINITY, INT_MAX};
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const Candidate c{x[i], static_cast<int32_t>(i)};
    if (Before(c, best)) best = c;
  }
  const Candidate raw = RowFirst(best, sh);
  const int32_t raw_argmax = raw.id == INT_MAX ? 0 : raw.id;  // INT_MAX only for NaN rows
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    s += exp(static_cast<double>(__fsub_rn(x[i], raw.value)));
  }
  const float lse = __fadd_rn(raw.value, static_cast<float>(log(RowSum(s, sh))));

  if (a.max_logprobs > 0) {
    const int64_t n_top =
        std::min<int64_t>(std::max<int64_t>(p.num_logprobs, 0), std::min(a.max_logprobs, V));
    int32_t* top_ids = a.top_ids + r * a.max_logprobs;
    float* top_logprobs = a.top_logprobs + r * a.max_logprobs;
    if (n_top > 0) TopLogprobs(x, V, n_top, lse, top_ids, top_logprobs, sh);
    for (int64_t j = n_top + threadIdx.x; j < a.max_logprobs; j += kThreads) {
      top_ids[j] = -1;
      top_logprobs[j] = -INFINITY;
    }
  }

  // Processed logits: copy, penalties, ban.
  float* z = a.z + r * V;
  ProcessedLogits(x, z, V, 0, p, r, a.penalty_offsets, a.penalty_ids, a.penalty_counts,
                  a.ban_offsets, a.ban_ids);

  if (p.temperature == 0.0f) {  // greedy: argmax of z, lowest id on ties
    Candidate g{-INFINITY, INT_MAX};
    for (int64_t i = threadIdx.x; i < V; i += kThreads) {
      const Candidate c{z[i], static_cast<int32_t>(i)};
      if (Before(c, g)) g = c;
    }
    g = RowFirst(g, sh);
    if (threadIdx.x == 0) {
      const int32_t token = g.id == INT_MAX ? 0 : g.id;
      a.token_ids[r] = token;
      a.logprobs[r] = __fsub_rn(x[token], lse);
      a.seg_begin[r] = 0;
      a.seg_end[r] = 0;
    }
    return;
  }

  for (int64_t i = threadIdx.x; i < V; i += kThreads) z[i] = __fdiv_rn(z[i], p.temperature);
  __syncthreads();
  const auto z_key = [z](int64_t i) { return Key(z[i]); };
  // Survivors: key >= the top-k threshold (ties kept) and z > -inf.
  uint32_t lowest = kNegInfKey + 1;
  if (p.top_k > 0 && p.top_k < V) lowest = max(lowest, KthLargestKey(z_key, V, p.top_k, sh));
  uint32_t* keys = a.keys + r * V;
  int32_t* ids = a.ids + r * V;
  const int64_t count = OrderedCompact(
      V, V, [&](int64_t i) { return z_key(i) >= lowest; },
      [&](int64_t slot, int64_t i) {
        keys[slot] = z_key(i);
        ids[slot] = static_cast<int32_t>(i);
      },
      sh);
  if (threadIdx.x == 0) {
    a.lse[r] = lse;
    a.seg_begin[r] = static_cast<int32_t>(r * V);
    a.seg_end[r] = static_cast<int32_t>(r * V + count);
    if (count == 0) {  // everything banned: the best raw logit
      a.token_ids[r] = raw_argmax;
      a.logprobs[r] = __fsub_rn(x[raw_argmax], lse);
    }
  }
}

struct DrawArgs {
  const float* logits;  // f32 [rows, vocab]
  int64_t vocab;
  const SampleRowParams* row_params;  // [rows]
  int32_t* token_ids;                 // i32 [rows]
  float* logprobs;                    // f32 [rows]
  const uint32_t* keys;               // sorted survivors: key desc, then id asc
  const int32_t* ids;
  const float* lse;  // f32 [rows]
  const int32_t* seg_begin;
  const int32_t* seg_end;
};

__global__ void __launch_bounds__(kThreads) SampleDrawKernel(DrawArgs a) {
  __shared__ Shared sh;
  const int64_t r = blockIdx.x;
  const SampleRowParams p = a.row_params[r];
  const int64_t begin = a.seg_begin[r];
  const int64_t n = a.seg_end[r] - begin;
  if (p.temperature == 0.0f || n <= 0) return;  // greedy or fallback: written by the prepare
  const uint32_t* keys = a.keys + begin;
  const int32_t* ids = a.ids + begin;
  const double z_max = KeyValue(keys[0]);
  const auto prob = [&](int64_t i) { return exp(static_cast<double>(KeyValue(keys[i])) - z_max); };
  const auto mass = [&](int64_t m) {  // Σ_{i < m} prob(i)
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < m; i += kThreads) s += prob(i);
    return RowSum(s, sh);
  };

  int64_t m = n;  // survivors kept so far: [0, m)
  if (p.top_p < 1.0f && m > 1) {
    // Keep [0, j] for the largest j >= 1 whose tail mass Σ_{i >= j} prob(i) / total exceeds
    // 1 - top_p (j = 0 if none). The tail is scanned from the end, kThreads at a time: thread t
    // takes index base + kThreads - 1 - t, so its inclusive sum is the chunk's tail from there.
    const double total = mass(m);
    const double limit = 1.0 - static_cast<double>(p.top_p);
    long long last = 0;
    double carry = 0.0;
    for (int64_t base = (m - 1) / kThreads * kThreads; base >= 0; base -= kThreads) {
      const int64_t j = base + (kThreads - 1 - static_cast<int64_t>(threadIdx.x));
      const double q = j < m ? prob(j) / total : 0.0;
      double tail = 0.0, chunk = 0.0;
      DoubleScan(sh.tmp.double_scan).InclusiveSum(q, tail, chunk);
      __syncthreads();
      tail += carry;
      const long long found =
          RowIndex(j >= 1 && j < m && !(tail <= limit) ? j : -1, MaxOp(), sh);  // NaN: as the CPU
      carry += chunk;
      if (found >= 0) {
        last = found;
        break;
      }
    }
    m = last + 1;
  }
  if (p.min_p > 0.0f && m > 1) {
    // Keep [0, j] for the largest j with prob(j) / total >= min_p * prob(0) / total.
    const double total = mass(m);
    const double limit = static_cast<double>(p.min_p) * (prob(0) / total);
    long long last = 0;
    for (int64_t j = 1 + threadIdx.x; j < m; j += kThreads) {
      if (!(prob(j) / total < limit)) last = j;  // NaN (an infinite logit): kept, as the CPU
    }
    m = RowIndex(last, MaxOp(), sh) + 1;
  }
  int64_t pick = 0;
  if (m > 1) {
    // The first survivor whose running sum exceeds u (the last one if none).
    const double u =
        static_cast<double>(PhiloxUniform(p.seed, static_cast<uint64_t>(p.position), 0)) * mass(m);
    pick = m - 1;
    double carry = 0.0;
    for (int64_t base = 0; base < m; base += kThreads) {
      const int64_t i = base + threadIdx.x;
      double cum = 0.0, chunk = 0.0;
      DoubleScan(sh.tmp.double_scan).InclusiveSum(i < m ? prob(i) : 0.0, cum, chunk);
      __syncthreads();
      cum += carry;
      const long long found = RowIndex(i < m && cum > u ? i : LLONG_MAX, MinOp(), sh);
      carry += chunk;
      if (found != LLONG_MAX) {
        pick = found;
        break;
      }
    }
  }
  if (threadIdx.x == 0) {
    const int32_t token = ids[pick];
    a.token_ids[r] = token;
    a.logprobs[r] = __fsub_rn(a.logits[r * a.vocab + token], a.lse[r]);
  }
}

int64_t RowsPerPass(int64_t rows, int64_t vocab) {
  return std::max<int64_t>(1,
                           std::min({rows, kRowsPerPass, INT_MAX / std::max<int64_t>(vocab, 1)}));
}

constexpr int64_t Align(int64_t bytes) { return (bytes + 255) / 256 * 256; }

// The workspace of one pass of `rows` rows, carved from `base` (null: sizes only).
struct Layout {
  float* z = nullptr;            // f32 [rows, vocab]; also the sort's alternate key buffer
  uint32_t* keys = nullptr;      // u32 [rows, vocab]
  int32_t* ids = nullptr;        // i32 [rows, vocab]
  int32_t* ids_alt = nullptr;    // i32 [rows, vocab]
  float* lse = nullptr;          // f32 [rows]
  int32_t* seg_begin = nullptr;  // i32 [rows]
  int32_t* seg_end = nullptr;    // i32 [rows]
  void* sort_temp = nullptr;
  size_t sort_bytes = 0;
  int64_t total_bytes = 0;
};

absl::StatusOr<Layout> Carve(void* base, int64_t rows, int64_t vocab) {
  Layout l;
  cub::DoubleBuffer<uint32_t> keys(nullptr, nullptr);
  cub::DoubleBuffer<int32_t> ids(nullptr, nullptr);
  OLMO_CUDA_RETURN_IF_ERROR(cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, l.sort_bytes, keys, ids, static_cast<int>(rows * vocab), static_cast<int>(rows),
      static_cast<int32_t*>(nullptr), static_cast<int32_t*>(nullptr), 0, 32));
  char* at = static_cast<char*>(base);
  int64_t offset = 0;
  auto take = [&](int64_t bytes) -> void* {
    void* p = at == nullptr ? nullptr : at + offset;
    offset += Align(bytes);
    return p;
  };
  const int64_t elems = rows * vocab;
  l.z = static_cast<float*>(take(elems * 4));
  l.keys = static_cast<uint32_t*>(take(elems * 4));
  l.ids = static_cast<int32_t*>(take(elems * 4));
  l.ids_alt = static_cast<int32_t*>(take(elems * 4));
  l.lse = static_cast<float*>(take(rows * 4));
  l.seg_begin = static_cast<int32_t*>(take(rows * 4));
  l.seg_end = static_cast<int32_t*>(take(rows * 4));
  l.sort_temp = take(static_cast<int64_t>(l.sort_bytes));
  l.total_bytes = offset;
  return l;
}

}  // namespace

absl::StatusOr<int64_t> SampleWorkspaceBytes(int64_t rows, int64_t vocab) {
  if (rows <= 0 || vocab <= 0) return 0;
  absl::StatusOr<Layout> l = Carve(nullptr, RowsPerPass(rows, vocab), vocab);
  if (!l.ok()) return l.status();
  return l->total_bytes;
}

absl::Status Sample(const SampleParams& p, void* workspace, int64_t workspace_bytes,
                    cudaStream_t stream) {
  if (p.rows <= 0 || p.vocab <= 0) return absl::OkStatus();
  if (p.vocab > INT_MAX) return absl::InvalidArgumentError("Sample: vocab must be < 2^31");
  const int64_t V = p.vocab;
  const int64_t per_pass = RowsPerPass(p.rows, V);
  absl::StatusOr<Layout> l = Carve(workspace, per_pass, V);
  if (!l.ok()) return l.status();
  if (l->total_bytes > workspace_bytes) {
    return absl::InternalError("Sample: workspace smaller than SampleWorkspaceBytes");
  }
  for (int64_t r0 = 0; r0 < p.rows; r0 += per_pass) {
    const int64_t rows = std::min(per_pass, p.rows - r0);
    const bool top = p.max_logprobs > 0;
    const PrepareArgs prepare{p.logits + r0 * V,
                              V,
                              p.row_params + r0,
                              p.penalty_offsets == nullptr ? nullptr : p.penalty_offsets + r0,
                              p.penalty_ids,
                              p.penalty_counts,
                              p.ban_offsets == nullptr ? nullptr : p.ban_offsets + r0,
                              p.ban_ids,
                              std::max<int64_t>(p.max_logprobs, 0),
                              p.token_ids + r0,
                              p.logprobs + r0,
                              top ? p.top_ids + r0 * p.max_logprobs : nullptr,
                              top ? p.top_logprobs + r0 * p.max_logprobs : nullptr,
                              l->z,
                              l->keys,
                              l->ids,
                              l->lse,
                              l->seg_begin,
                              l->seg_end};
    SamplePrepareKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(prepare);
    OLMO_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    cub::DoubleBuffer<uint32_t> keys(l->keys, reinterpret_cast<uint32_t*>(l->z));
    cub::DoubleBuffer<int32_t> ids(l->ids, l->ids_alt);
    size_t sort_bytes = l->sort_bytes;
    OLMO_CUDA_RETURN_IF_ERROR(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        l->sort_temp, sort_bytes, keys, ids, static_cast<int>(rows * V), static_cast<int>(rows),
        l->seg_begin, l->seg_end, 0, 32, stream));
    const DrawArgs draw{p.logits + r0 * V, V,
                        p.row_params + r0, p.token_ids + r0,
                        p.logprobs + r0,   keys.Current(),
                        ids.Current(),     l->lse,
                        l->seg_begin,      l->seg_end};
    SampleDrawKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(draw);
    OLMO_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  return absl::OkStatus();
}

}  // namespace olmo::kernels::cuda
