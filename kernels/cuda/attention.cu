// Paged causal attention (decode and prefill chunks, sliding window, GQA/MQA) over the f32 cache
// [num_blocks][2 (k, v)][kv_heads][block_size][head_dim] (kernels/ops.h AttentionParams).
//
// One thread block per (tile of query tokens, kv head, head chunk, key split)
// (launch_geometry.h). The block's rows are (token, query head) pairs that all read the same kv
// head: its query heads of one GQA group and, in prefill steps, several consecutive tokens of
// one sequence. Every K/V row is loaded once for all rows: tiles of 32 keys go global -> shared
// memory with cp.async into two buffers (the next tile loads while this one is used). Per tile:
//   1. scores s[r][key] = scale · (q_r · k_key), several threads per key when the block has few
//      rows (their partial dot products are summed in step 2);
//   2. online softmax in f32, one warp per row, one key per lane: running max m, running sum l,
//      correction exp(m_old - m_new) for the accumulators; keys outside the row's [lo, p]
//      (causal, window) get probability 0;
//   3. acc[r][d] = acc[r][d] · correction + Σ_key p[r][key] · v[key][d], acc in registers.
// Only keys inside the union of the rows' ranges are read, so a sliding layer touches only its
// window's blocks.
//
// Split-K (flash decoding): when tokens × kv heads do not fill the GPU, blockIdx.y splits the
// key range into chunks of keys_per_split; each split writes its unnormalized accumulators and
// (m, l), and AttentionReduceKernel merges them: out = Σ_s e^(m_s - M) acc_s / Σ_s e^(m_s - M) l_s.
#include <cuda_pipeline.h>

#include <atomic>
#include <climits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace olmo::kernels::cuda {
namespace {

constexpr int kTile = kAttentionTile;
constexpr int kThreads = kAttentionThreads;
constexpr int kAcc = kAttentionAccPerThread;
static_assert(kTile == 32, "the softmax step maps one key to one lane");

struct Args {
  const float* q;
  int64_t q_stride;
  float* out;
  const int32_t* positions;
  const int32_t* token_seq;
  const int32_t* block_tables;
  int64_t max_blocks;
  int window;
  float scale;
  const float* cache;
  int kv_heads, block_size, head_dim, num_heads, group;
  int heads_per_block, head_chunks, num_splits, keys_per_split;
  int tokens_per_block;
  int64_t num_tokens;
  float* part_acc;  // f32 [tokens, num_heads, splits, head_dim]
  float* part_ml;   // f32 [tokens, num_heads, splits, 2]
};

// Enqueues (cp.async, one commit group) the copies of keys [tile_begin, min(end, tile_begin +
// kTile)) of one kv head into kb [kTile][D + 4] and vb [kTile][D] in shared memory.
// cache_g: the kv head's K rows in block 0; kv_plane: floats from a block's K to its V.
__device__ __forceinline__ void LoadTile(const int32_t* table, const float* cache_g,
                                         int64_t kv_plane, int block_size, int D, int tile_begin,
                                         int end, float* kb, float* vb) {
  const int n = min(kTile, end - tile_begin), c4 = D / 4, kstride = D + 4;
  for (int i = threadIdx.x; i < n * c4; i += kThreads) {
    const int key = i / c4, c = (i - key * c4) * 4;
    const int u = tile_begin + key;
    const int64_t block = table[u / block_size];
    const float* src = cache_g + block * 2 * kv_plane + (u % block_size) * D + c;
    __pipeline_memcpy_async(kb + key * kstride + c, src, 16);
    __pipeline_memcpy_async(vb + key * D + c, src + kv_plane, 16);
  }
  __pipeline_commit();
}

// Attention of one run of `nt` consecutive query tokens of one sequence (first token t0) for
// the block's nh query heads h0.. (rows r = token * nh + head) over one key split, into
// a.out (or the split's partials). Every thread of the block calls it (it synchronizes).
__device__ __forceinline__ void AttendRun(const Args& a, float* smem, int64_t t0, int nt, int g,
                                          int h0, int nh, int split) {
  const int D = a.head_dim, R = a.heads_per_block * a.tokens_per_block, kstride = D + 4;
  const int rows = nt * nh, tid = threadIdx.x;
  float* k_buf = smem;                          // [2][kTile][D + 4]
  float* v_buf = k_buf + 2 * kTile * kstride;   // [2][kTile][D]
  float* q_s = v_buf + 2 * kTile * D;           // [R][D]
  float* s_s = q_s + R * D;                     // [max(R * kTile, kThreads)]
  float* m_s = s_s + max(R * kTile, kThreads);  // [R] running max
  float* l_s = m_s + R;                         // [R] running sum
  float* c_s = l_s + R;                         // [R] correction of this tile
  int* lo_s = reinterpret_cast<int*>(c_s + R);  // [R] first key of the row
  int* hi_s = lo_s + R;                         // [R] one past its last key

  // The run's keys: the union of its rows' ranges [lo, p] (contiguous for consecutive
  // positions), cut to this split's share.
  int begin = INT_MAX, end = 0;
  for (int ti = 0; ti < nt; ++ti) {
    const int pos = a.positions[t0 + ti];
    begin = min(begin, a.window > 0 ? max(0, pos - a.window + 1) : 0);
    end = max(end, pos + 1);
  }
  if (a.num_splits > 1) {  // then nt == 1 (PlanAttention)
    begin += split * a.keys_per_split;
    end = min(end, begin + a.keys_per_split);
  }
  if (begin >= end) {  // this split is past the token's keys: a neutral partial
    if (tid < nh) {
      const int64_t row = (t0 * a.num_heads + h0 + tid) * a.num_splits + split;
      a.part_ml[2 * row] = -INFINITY;
      a.part_ml[2 * row + 1] = 0.0f;
    }
    return;
  }

  const int32_t* table = a.block_tables + static_cast<int64_t>(a.token_seq[t0]) * a.max_blocks;
  const int64_t head_elems = static_cast<int64_t>(a.block_size) * D;  // one kv head, one block
  const int64_t kv_plane = a.kv_heads * head_elems;                   // k -> v of one block
  const float* cache_g = a.cache + g * head_elems;
  const int c4 = D / 4;

  LoadTile(table, cache_g, kv_plane, a.block_size, D, begin, end, k_buf, v_buf);
  for (int i = tid; i < rows * D; i += kThreads) {
    const int r = i / D, d = i - r * D;
    q_s[i] = a.q[(t0 + r / nh) * a.q_stride + static_cast<int64_t>(h0 + r % nh) * D + d];
  }
  for (int r = tid; r < rows; r += kThreads) {
    const int pos = a.positions[t0 + r / nh];
    m_s[r] = -INFINITY;
    l_s[r] = 0.0f;
    lo_s[r] = a.window > 0 ? max(0, pos - a.window + 1) : 0;
    hi_s[r] = pos + 1;
  }
  // Threads per key in step 1: as many as fill the block, dividing the D / 4 float4 columns.
  int parts = max(1, kThreads / (rows * kTile));
  while (parts > 1 && c4 % parts != 0) parts /= 2;
  const int cols_per_part = c4 / parts;  // float4 columns of one partial dot product

  float acc[kAcc];
#pragma unroll
  for (int j = 0; j < kAcc; ++j) acc[j] = 0.0f;

  const int num_tiles = (end - begin + kTile - 1) / kTile;
  for (int it = 0; it < num_tiles; ++it) {
    const int tile_begin = begin + it * kTile;
    const int n = min(kTile, end - tile_begin);
    const int buf = it & 1;
    if (it + 1 < num_tiles) {
      LoadTile(table, cache_g, kv_plane, a.block_size, D, tile_begin + kTile, end,
               k_buf + (buf ^ 1) * kTile * kstride, v_buf + (buf ^ 1) * kTile * D);
    } else {
      __pipeline_commit();  // an empty group keeps "all but the newest group" = this tile
    }
    __pipeline_wait_prior(1);
    __syncthreads();

    // 1. Partial dot products: item i -> key i % kTile, row (i / kTile) % rows, part.
    const float* kb = k_buf + buf * kTile * kstride;
    for (int i = tid; i < rows * kTile * parts; i += kThreads) {
      const int key = i % kTile, r = (i / kTile) % rows, part = i / (kTile * rows);
      float dot = 0.0f;
      if (key < n) {
        const float4* qv = reinterpret_cast<const float4*>(q_s + r * D) + part * cols_per_part;
        const float4* kv =
            reinterpret_cast<const float4*>(kb + key * kstride) + part * cols_per_part;
        for (int c = 0; c < cols_per_part; ++c) {
          const float4 x = qv[c], y = kv[c];
          dot = fmaf(x.x, y.x, dot);
          dot = fmaf(x.y, y.y, dot);
          dot = fmaf(x.z, y.z, dot);
          dot = fmaf(x.w, y.w, dot);
        }
      }
      s_s[i] = dot;
    }
    __syncthreads();

    // 2. Online softmax, one warp per row, one key per lane; keys outside the row's range
    // (causal within a prefill run, window) get probability 0.
    const int warp = tid / 32, lane = tid % 32;
    for (int r = warp; r < rows; r += kThreads / 32) {
      float s = 0.0f;
      for (int part = 0; part < parts; ++part) s += s_s[(part * rows + r) * kTile + lane];
      const int u = tile_begin + lane;
      s = lane < n && u >= lo_s[r] && u < hi_s[r] ? s * a.scale : -INFINITY;
      const float m_old = m_s[r];
      const float m_new = fmaxf(m_old, WarpMax(s));
      // A row with no key yet (-inf max) keeps l = 0 and acc = 0: exp(-inf - 0) = 0.
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float prob = expf(s - m_use);
      const float sum = WarpSum(prob);
      s_s[r * kTile + lane] = prob;  // this lane's own slot, read above by this lane only
      if (lane == 0) {
        const float corr = expf(m_old - m_use);
        c_s[r] = corr;
        l_s[r] = l_s[r] * corr + sum;
        m_s[r] = m_new;
      }
    }
    __syncthreads();

    // 3. acc[(r, d)] for the outputs this thread owns: idx = tid + j * kThreads.
    const float* vb = v_buf + buf * kTile * D;
#pragma unroll
    for (int j = 0; j < kAcc; ++j) {
      const int idx = tid + j * kThreads;
      if (idx < rows * D) {
        const int r = idx / D, d = idx - r * D;
        const float* p = s_s + r * kTile;
        float x = acc[j] * c_s[r];
        for (int key = 0; key < n; ++key) x = fmaf(p[key], vb[key * D + d], x);
        acc[j] = x;
      }
    }
    __syncthreads();  // the buffers and s_s are rewritten by the next tile
  }

#pragma unroll
  for (int j = 0; j < kAcc; ++j) {
    const int idx = tid + j * kThreads;
    if (idx < rows * D) {
      const int r = idx / D, d = idx - r * D;
      const int64_t t = t0 + r / nh, h = h0 + r % nh;
      if (a.num_splits == 1) {
        a.out[(t * a.num_heads + h) * D + d] = acc[j] / l_s[r];
      } else {
        a.part_acc[((t * a.num_heads + h) * a.num_splits + split) * D + d] = acc[j];
      }
    }
  }
  if (a.num_splits > 1 && tid < rows) {
    const int64_t row = (t0 * a.num_heads + h0 + tid) * a.num_splits + split;
    a.part_ml[2 * row] = m_s[tid];
    a.part_ml[2 * row + 1] = l_s[tid];
  }
}

__global__ void __launch_bounds__(kThreads, 3) PagedAttentionKernel(Args a) {
  extern __shared__ float4 smem4[];
  int64_t item = blockIdx.x;
  const int chunk = static_cast<int>(item % a.head_chunks);
  item /= a.head_chunks;
  const int g = static_cast<int>(item % a.kv_heads);
  const int64_t t_first = (item / a.kv_heads) * a.tokens_per_block;
  const int64_t t_last = min(a.num_tokens, t_first + a.tokens_per_block);
  const int h0 = g * a.group + chunk * a.heads_per_block;  // first query head of this block
  const int nh = min(a.heads_per_block, a.group - chunk * a.heads_per_block);
  // Runs of consecutive tokens of one sequence share their K/V tiles.
  for (int64_t t0 = t_first; t0 < t_last;) {
    int64_t t1 = t0 + 1;
    while (t1 < t_last && a.token_seq[t1] == a.token_seq[t0]) ++t1;
    AttendRun(a, reinterpret_cast<float*>(smem4), t0, static_cast<int>(t1 - t0), g, h0, nh,
              blockIdx.y);
    t0 = t1;
    __syncthreads();  // the next run rewrites q, the row state and the K/V buffers
  }
}

// One block per (token, head): merges the splits' partial results (splits with no keys have
// m = -inf and are skipped; split 0 always has keys).
__global__ void AttentionReduceKernel(const float* __restrict__ part_acc,
                                      const float* __restrict__ part_ml, float* __restrict__ out,
                                      int num_splits, int head_dim) {
  const int64_t row = blockIdx.x;  // t * num_heads + h
  const float* ml = part_ml + row * num_splits * 2;
  float m_max = -INFINITY;
  for (int s = 0; s < num_splits; ++s) m_max = fmaxf(m_max, ml[2 * s]);
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    for (int s = 0; s < num_splits; ++s) {
      const float m = ml[2 * s];
      if (m == -INFINITY) continue;
      const float w = expf(m - m_max);
      den = fmaf(w, ml[2 * s + 1], den);
      num = fmaf(w, part_acc[(row * num_splits + s) * head_dim + d], num);
    }
    out[row * head_dim + d] = num / den;
  }
}

// Raises the kernel's dynamic shared-memory limit once per size (above the 48 KB default).
void EnsureSharedMemory(int64_t bytes) {
  static std::atomic<int64_t> granted{48 * 1024};
  int64_t have = granted.load();
  if (bytes <= have) return;
  // On failure the error stays for the caller's launch check (cudaGetLastError), and the launch
  // below fails too; nothing is marked granted.
  if (cudaFuncSetAttribute(PagedAttentionKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(bytes)) != cudaSuccess) {
    return;
  }
  granted.compare_exchange_strong(have, bytes);
}

}  // namespace

void Attention(const AttentionParams& p, const AttentionGeometry& geo, float* partials,
               cudaStream_t stream) {
  if (p.num_tokens == 0 || geo.grid_x == 0) return;
  const KvLayerView& c = p.cache;
  Args a{p.q,
         p.q_stride,
         p.out,
         p.positions,
         p.token_seq,
         p.block_tables,
         p.max_blocks,
         static_cast<int>(p.window),
         p.scale,
         static_cast<const float*>(c.data),  // f32 only: cuda_ops.cc routes bf16 to the warp kernel
         static_cast<int>(c.kv_heads),
         static_cast<int>(c.block_size),
         static_cast<int>(c.head_dim),
         static_cast<int>(p.num_heads),
         static_cast<int>(p.num_heads / c.kv_heads),
         static_cast<int>(geo.heads_per_block),
         static_cast<int>(geo.head_chunks),
         static_cast<int>(geo.num_splits),
         static_cast<int>(geo.keys_per_split),
         static_cast<int>(geo.tokens_per_block),
         p.num_tokens,
         nullptr,
         nullptr};
  if (geo.num_splits > 1) {
    a.part_acc = partials;
    a.part_ml = partials + p.num_tokens * p.num_heads * geo.num_splits * c.head_dim;
  }
  EnsureSharedMemory(geo.smem_bytes);
  const dim3 grid(static_cast<unsigned>(geo.grid_x), static_cast<unsigned>(geo.num_splits));
  PagedAttentionKernel<<<grid, kThreads, geo.smem_bytes, stream>>>(a);
  if (geo.num_splits > 1) {
    const int threads = static_cast<int>(((c.head_dim + 31) / 32) * 32);
    AttentionReduceKernel<<<static_cast<unsigned>(p.num_tokens * p.num_heads), threads, 0,
                            stream>>>(a.part_acc, a.part_ml, p.out,
                                      static_cast<int>(geo.num_splits),
                                      static_cast<int>(c.head_dim));
  }
}

}  // namespace olmo::kernels::cuda
