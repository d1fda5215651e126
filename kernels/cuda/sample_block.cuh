// Block-level building blocks of the sampling kernels (sample.cu, sample_slice.cu):
// order-preserving float keys, the (value desc, id asc) order, block-wide reductions that
// broadcast their result, an exact radix select and an order-keeping compaction. Every function is
// called by all threads of a block of kThreads threads (it contains barriers) with the block's
// shared Shared storage.
#pragma once

#include <climits>
#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "kernels/ops.h"

namespace olmo::kernels::cuda::sample {

// Threads per block of the sampling kernels (one block per row).
inline constexpr int kThreads = 512;
inline constexpr uint32_t kNegInfKey = 0x007fffffu;  // Key(-inf)

// Order-preserving u32 image of a float (not NaN): a < b <=> Key(a) < Key(b); -0 and +0 share
// one key.
__device__ inline uint32_t Key(float f) {
  const uint32_t bits = f == 0.0f ? 0u : __float_as_uint(f);
  return (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
}
__device__ inline float KeyValue(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) != 0 ? (key & 0x7fffffffu) : ~key);
}

// A (value, id) candidate; Before is the sampler's order: value desc, then id asc.
struct Candidate {
  float value;
  int32_t id;
};
__device__ inline bool Before(const Candidate& a, const Candidate& b) {
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}
struct FirstOp {
  __device__ Candidate operator()(const Candidate& a, const Candidate& b) const {
    return Before(b, a) ? b : a;
  }
};
struct MaxOp {
  __device__ long long operator()(long long a, long long b) const { return a > b ? a : b; }
};
struct MinOp {
  __device__ long long operator()(long long a, long long b) const { return a < b ? a : b; }
};

using IntScan = cub::BlockScan<int, kThreads>;
using DoubleScan = cub::BlockScan<double, kThreads>;
using DoubleReduce = cub::BlockReduce<double, kThreads>;
using IndexReduce = cub::BlockReduce<long long, kThreads>;
using CandidateReduce = cub::BlockReduce<Candidate, kThreads>;

struct Shared {
  union {
    IntScan::TempStorage int_scan;
    DoubleScan::TempStorage double_scan;
    DoubleReduce::TempStorage double_reduce;
    IndexReduce::TempStorage index_reduce;
    CandidateReduce::TempStorage candidate_reduce;
    unsigned hist[256];
  } tmp;
  Candidate candidate;
  double sum;
  long long index;
  long long rank;
  unsigned digit;
};

// Block-wide reductions; every thread gets the result. Each ends with a barrier, so the
// shared storage is free for the next one.
__device__ inline Candidate RowFirst(Candidate v, Shared& sh) {
  const Candidate r = CandidateReduce(sh.tmp.candidate_reduce).Reduce(v, FirstOp());
  if (threadIdx.x == 0) sh.candidate = r;
  __syncthreads();
  const Candidate out = sh.candidate;
  __syncthreads();
  return out;
}
__device__ inline double RowSum(double v, Shared& sh) {
  const double r = DoubleReduce(sh.tmp.double_reduce).Sum(v);
  if (threadIdx.x == 0) sh.sum = r;
  __syncthreads();
  const double out = sh.sum;
  __syncthreads();
  return out;
}
template <typename Op>
__device__ long long RowIndex(long long v, Op op, Shared& sh) {
  const long long r = IndexReduce(sh.tmp.index_reduce).Reduce(v, op);
  if (threadIdx.x == 0) sh.index = r;
  __syncthreads();
  const long long out = sh.index;
  __syncthreads();
  return out;
}

// The k-th largest (1-based, repeats counted) of key_at(0..n-1), 1 <= k <= n: an exact radix
// select, four passes of 8-bit histograms over the keys that match the prefix chosen so far.
template <typename KeyAt>
__device__ uint32_t KthLargestKey(const KeyAt& key_at, int64_t n, int64_t k, Shared& sh) {
  uint32_t prefix = 0, mask = 0;
  long long rank = k;  // rank of the wanted key among the keys matching prefix
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) sh.tmp.hist[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
      const uint32_t key = key_at(i);
      if ((key & mask) == prefix) atomicAdd(&sh.tmp.hist[(key >> shift) & 0xffu], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned b = 255;
      long long left = rank;
      while (b > 0 && left > static_cast<long long>(sh.tmp.hist[b])) {
        left -= sh.tmp.hist[b];
        --b;
      }
      sh.digit = b;
      sh.rank = left;
    }
    __syncthreads();
    prefix |= sh.digit << shift;
    mask |= 0xffu << shift;
    rank = sh.rank;
    __syncthreads();
  }
  return prefix;
}

// emit(slot, i) for the first `limit` indices i < n with pred(i), slot = their rank in index
// order; returns how many were emitted. Stops after the chunk that reaches the limit.
template <typename Pred, typename Emit>
__device__ int64_t OrderedCompact(int64_t n, int64_t limit, const Pred& pred, const Emit& emit,
                                  Shared& sh) {
  int64_t count = 0;
  for (int64_t base = 0; base < n && count < limit; base += kThreads) {
    const int64_t i = base + threadIdx.x;
    const int flag = i < n && pred(i) ? 1 : 0;
    int rank = 0, total = 0;
    IntScan(sh.tmp.int_scan).ExclusiveSum(flag, rank, total);
    if (flag != 0 && count + rank < limit) emit(count + rank, i);
    count += total;
    __syncthreads();
  }
  return count < limit ? count : limit;
}

// The n best indices of value_at(0 .. size - 1) by (value desc, index asc), 1 <= n <= size, into
// out[0 .. n) in that order; on return every thread sees them. Values must not be NaN. Exact:
// n = 1 is a block reduction; otherwise a radix select of the n-th largest key, the indices
// above it, then the lowest indices equal to it, ordered by each one's rank among them (one
// thread per index; one thread sorts when n > kThreads).
template <typename ValueAt>
__device__ void BestIndices(const ValueAt& value_at, int64_t size, int64_t n, int32_t* out,
                            Shared& sh) {
  if (n == 1) {
    Candidate best{-INFINITY, INT_MAX};
    for (int64_t i = threadIdx.x; i < size; i += kThreads) {
      const Candidate c{value_at(i), static_cast<int32_t>(i)};
      if (Before(c, best)) best = c;
    }
    best = RowFirst(best, sh);
    if (threadIdx.x == 0) out[0] = best.id;
    __syncthreads();
    return;
  }
  const auto key_at = [&](int64_t i) { return Key(value_at(i)); };
  const uint32_t kth = KthLargestKey(key_at, size, n, sh);
  const int64_t above = OrderedCompact(
      size, n, [&](int64_t i) { return key_at(i) > kth; },
      [&](int64_t slot, int64_t i) { out[slot] = static_cast<int32_t>(i); }, sh);
  OrderedCompact(
      size, n - above, [&](int64_t i) { return key_at(i) == kth; },
      [&](int64_t slot, int64_t i) { out[above + slot] = static_cast<int32_t>(i); }, sh);
  // OrderedCompact ends with a barrier: every index written is visible to every thread.
  if (n <= kThreads) {
    // The indices are distinct, so (value desc, index asc) is a strict order and the ranks are a
    // permutation of 0 .. n-1.
    int32_t mine = -1;
    int64_t rank = 0;
    if (threadIdx.x < n) {
      mine = out[threadIdx.x];
      const Candidate c{value_at(mine), mine};
      for (int64_t j = 0; j < n; ++j) {
        if (Before(Candidate{value_at(out[j]), out[j]}, c)) ++rank;
      }
    }
    __syncthreads();  // every thread has read out[] before any is overwritten
    if (threadIdx.x < n) out[rank] = mine;
  } else if (threadIdx.x == 0) {
    for (int64_t j = 1; j < n; ++j) {  // insertion sort by (value desc, index asc)
      const Candidate c{value_at(out[j]), out[j]};
      int64_t k = j;
      while (k > 0 && Before(c, Candidate{value_at(out[k - 1]), out[k - 1]})) {
        out[k] = out[k - 1];
        --k;
      }
      out[k] = c.id;
    }
  }
  __syncthreads();
}

// Sample's processed logits of one row before temperature: z[0 .. V) = x, then the penalties
// (ids unique: one thread per id; repetition, then presence + frequency × count, every f32 step
// rounded on its own as the CPU does) and the ban, for the listed ids inside [id_begin,
// id_begin + V). The lists are row r's CSR entries (null offsets: none). Ends with a barrier.
__device__ inline void ProcessedLogits(const float* x, float* z, int64_t V, int64_t id_begin,
                                       const SampleRowParams& p, int64_t r,
                                       const int32_t* penalty_offsets, const int32_t* penalty_ids,
                                       const int32_t* penalty_counts, const int32_t* ban_offsets,
                                       const int32_t* ban_ids) {
  for (int64_t i = threadIdx.x; i < V; i += kThreads) z[i] = x[i];
  __syncthreads();
  const bool rep = p.repetition_penalty != 1.0f;
  const bool pres_freq = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (penalty_offsets != nullptr && (rep || pres_freq)) {
    for (int64_t k = penalty_offsets[r] + threadIdx.x; k < penalty_offsets[r + 1]; k += kThreads) {
      const int64_t id = penalty_ids[k] - id_begin;
      if (id < 0 || id >= V) continue;
      float v = z[id];
      if (rep) {
        v = v < 0.0f ? __fmul_rn(v, p.repetition_penalty) : __fdiv_rn(v, p.repetition_penalty);
      }
      const int32_t count = pres_freq ? penalty_counts[k] : 0;  // read only when used (as the CPU)
      if (count > 0) {
        v = __fsub_rn(v, __fadd_rn(p.presence_penalty,
                                   __fmul_rn(p.frequency_penalty, __int2float_rn(count))));
      }
      z[id] = v;
    }
  }
  __syncthreads();
  if (ban_offsets != nullptr && p.ban_stop_ids != 0) {
    for (int64_t k = ban_offsets[r] + threadIdx.x; k < ban_offsets[r + 1]; k += kThreads) {
      const int64_t id = ban_ids[k] - id_begin;
      if (id >= 0 && id < V) z[id] = -INFINITY;
    }
  }
  __syncthreads();
}

}  // namespace olmo::kernels::cuda::sample
