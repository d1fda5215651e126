// CPU matmul y[m, n] = sum_k x[m, k] * w[n, k] (kernels/ops.h).
//
// kPacked: weights stay in their dtype (BF16 as BF16; F16 is widened to F32, exactly) in panels of
// 16 output columns, [panels][K][16]. Every output element is one FMA chain over k = 0..K-1 in
// order, starting from 0, vectorized over n: the same f32 operations whatever the number of rows,
// a row's index, the tile shape or the thread count (batch invariance). Small m: each weight panel
// is streamed once for all rows; one row covers 4 panels at once for independent FMA chains.
// Larger m: 6-row x 16-column register tiles over K blocks kept in L1; the accumulator is stored
// and reloaded between blocks, which keeps the chain exact.
//
// kBlas: f32-converted weights and OpenBLAS cblas_sgemm (not batch-invariant).
#include <cblas.h>
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "kernels/cpu/cpu_kernels.h"

namespace olmo::kernels::cpu {
namespace {

constexpr int64_t kPanel = 16;   // output columns per panel
constexpr int64_t kRows = 6;     // rows per register tile
constexpr int64_t kKBlock = 256; // K block for the multi-row path

template <typename T>
struct AlignedDeleter {
  void operator()(T* p) const { std::free(p); }
};
template <typename T>
using AlignedBuffer = std::unique_ptr<T[], AlignedDeleter<T>>;
// Large weight buffers are 2 MiB aligned and asked for transparent huge pages: decode streams
// every weight once per step, and 4 KiB pages cost TLB misses on each of the parallel streams.
template <typename T>
AlignedBuffer<T> AllocAligned(int64_t n) {
  constexpr size_t kHuge = size_t{2} << 20;
  size_t bytes = static_cast<size_t>(n) * sizeof(T);
  size_t align = bytes >= kHuge ? kHuge : 64;
  bytes = std::max<size_t>((bytes + align - 1) / align * align, align);
  void* p = std::aligned_alloc(align, bytes);
  if (p != nullptr && align == kHuge) madvise(p, bytes, MADV_HUGEPAGE);
  return AlignedBuffer<T>(static_cast<T*>(p));
}

class CpuPackedWeight final : public PackedWeight {
 public:
  int64_t rows() const override { return n_; }
  int64_t cols() const override { return k_; }
  DType dtype() const override { return dtype_; }
  int64_t bytes() const override { return n_ * k_ * DTypeSize(dtype_); }

  MatmulPath path = MatmulPath::kPacked;
  DType dtype_ = DType::kF32;  // storage: kBF16 or kF32
  int64_t n_ = 0, k_ = 0, panels = 0;
  AlignedBuffer<uint16_t> bf16;  // kPacked BF16: [panels][K][16]
  AlignedBuffer<float> f32;      // kPacked F32: [panels][K][16]; kBlas: [N][K]
};

// Element (row, col) of a stacked weight, as f32 (F16 widened) or raw bf16 bits.
struct StackedSource {
  std::span<const WeightView> parts;
  // Finds the part holding global row `r`; returns the part and local row.
  std::pair<const WeightView*, int64_t> Locate(int64_t r) const {
    for (const WeightView& p : parts) {
      if (r < p.rows) return {&p, r};
      r -= p.rows;
    }
    return {nullptr, 0};
  }
};

inline __m256 LoadBf16x8(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

template <typename W>
inline void LoadPanel(const W* w, __m256& lo, __m256& hi) {
  if constexpr (std::is_same_v<W, uint16_t>) {
    lo = LoadBf16x8(w);
    hi = LoadBf16x8(w + 8);
  } else {
    lo = _mm256_loadu_ps(w);
    hi = _mm256_loadu_ps(w + 8);
  }
}

// One row x 4 panels (64 columns), whole K. `panel` points at the first panel; panels are
// panel_stride elements apart. Stores the columns that exist (n_valid of 64).
template <typename W>
void RowTile4(const float* x, const W* panel, int64_t panel_stride, int64_t K, float* y,
              int64_t n_valid) {
  __m256 a[8];
  for (auto& v : a) v = _mm256_setzero_ps();
  const W* w0 = panel;
  const W* w1 = panel + panel_stride;
  const W* w2 = panel + 2 * panel_stride;
  const W* w3 = panel + 3 * panel_stride;
  for (int64_t k = 0; k < K; ++k) {
    __m256 xb = _mm256_broadcast_ss(x + k);
    __m256 lo, hi;
    LoadPanel(w0 + k * kPanel, lo, hi);
    a[0] = _mm256_fmadd_ps(xb, lo, a[0]);
    a[1] = _mm256_fmadd_ps(xb, hi, a[1]);
    LoadPanel(w1 + k * kPanel, lo, hi);
    a[2] = _mm256_fmadd_ps(xb, lo, a[2]);
    a[3] = _mm256_fmadd_ps(xb, hi, a[3]);
    LoadPanel(w2 + k * kPanel, lo, hi);
    a[4] = _mm256_fmadd_ps(xb, lo, a[4]);
    a[5] = _mm256_fmadd_ps(xb, hi, a[5]);
    LoadPanel(w3 + k * kPanel, lo, hi);
    a[6] = _mm256_fmadd_ps(xb, lo, a[6]);
    a[7] = _mm256_fmadd_ps(xb, hi, a[7]);
  }
  alignas(32) float buf[64];
  for (int i = 0; i < 8; ++i) _mm256_store_ps(buf + 8 * i, a[i]);
  std::memcpy(y, buf, static_cast<size_t>(n_valid) * sizeof(float));
}

// R rows (1..6) x one panel over k in [k0, k1). acc is f32 [R][16], loaded and stored, so blocks of
// K continue the same FMA chain.
template <typename W, int R>
void RowsTile(const float* x, int64_t ldx, const W* panel, int64_t k0, int64_t k1, float* acc) {
  __m256 lo[R], hi[R];
  for (int r = 0; r < R; ++r) {
    lo[r] = _mm256_loadu_ps(acc + r * kPanel);
    hi[r] = _mm256_loadu_ps(acc + r * kPanel + 8);
  }
  for (int64_t k = k0; k < k1; ++k) {
    __m256 wl, wh;
    LoadPanel(panel + k * kPanel, wl, wh);
    for (int r = 0; r < R; ++r) {
      __m256 xb = _mm256_broadcast_ss(x + r * ldx + k);
      lo[r] = _mm256_fmadd_ps(xb, wl, lo[r]);
      hi[r] = _mm256_fmadd_ps(xb, wh, hi[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(acc + r * kPanel, lo[r]);
    _mm256_storeu_ps(acc + r * kPanel + 8, hi[r]);
  }
}

template <typename W>
void RowsTileDispatch(int rows, const float* x, int64_t ldx, const W* panel, int64_t k0,
                      int64_t k1, float* acc) {
  switch (rows) {
    case 1: RowsTile<W, 1>(x, ldx, panel, k0, k1, acc); break;
    case 2: RowsTile<W, 2>(x, ldx, panel, k0, k1, acc); break;
    case 3: RowsTile<W, 3>(x, ldx, panel, k0, k1, acc); break;
    case 4: RowsTile<W, 4>(x, ldx, panel, k0, k1, acc); break;
    case 5: RowsTile<W, 5>(x, ldx, panel, k0, k1, acc); break;
    default: RowsTile<W, 6>(x, ldx, panel, k0, k1, acc); break;
  }
}

template <typename W>
void PackedMatmul(const CpuPackedWeight& w, const W* data, const MatmulParams& p, int threads) {
  const int64_t K = w.k_, N = w.n_, M = p.m;
  const int64_t panel_stride = K * kPanel;
  // Parallel regions only pay off above ~64k multiply-adds (tiny models run on one thread).
  threads = M * N * K >= (1 << 16) ? threads : 1;
  if (M == 1) {
    const int64_t groups = (w.panels + 3) / 4;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      int64_t first = g * 4;
      int64_t count = std::min<int64_t>(4, w.panels - first);
      if (count == 4) {
        int64_t n0 = first * kPanel;
        RowTile4(p.x, data + first * panel_stride, panel_stride, K, p.y + n0,
                 std::min<int64_t>(64, N - n0));
      } else {
        for (int64_t q = first; q < first + count; ++q) {
          alignas(32) float acc[kPanel] = {};
          RowsTile<W, 1>(p.x, K, data + q * panel_stride, 0, K, acc);
          int64_t n0 = q * kPanel;
          std::memcpy(p.y + n0, acc, static_cast<size_t>(std::min(kPanel, N - n0)) * 4);
        }
      }
    }
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t q = 0; q < w.panels; ++q) {
    const W* panel = data + q * panel_stride;
    const int64_t n0 = q * kPanel;
    const int64_t n_valid = std::min(kPanel, N - n0);
    std::vector<float> acc(static_cast<size_t>(M * kPanel), 0.0f);
    for (int64_t k0 = 0; k0 < K; k0 += kKBlock) {
      const int64_t k1 = std::min(K, k0 + kKBlock);
      // Balanced row tiles of at most kRows (M = 8 -> 4 + 4, not 6 + 2): a short tile has
      // too few independent FMA chains to hide their latency.
      const int64_t tiles = (M + kRows - 1) / kRows;
      for (int64_t t = 0, m0 = 0; t < tiles; ++t) {
        int rows = static_cast<int>(M / tiles + (t < M % tiles ? 1 : 0));
        RowsTileDispatch<W>(rows, p.x + m0 * K, K, panel, k0, k1, acc.data() + m0 * kPanel);
        m0 += rows;
      }
    }
    for (int64_t m = 0; m < M; ++m) {
      std::memcpy(p.y + m * N + n0, acc.data() + m * kPanel, static_cast<size_t>(n_valid) * 4);
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<PackedWeight>> PackWeight(std::span<const WeightView> parts,
                                                         MatmulPath path) {
  if (parts.empty()) return absl::InvalidArgumentError("PackWeight: no parts");
  const int64_t K = parts[0].cols;
  int64_t N = 0;
  bool all_bf16 = true;
  for (const WeightView& v : parts) {
    if (v.cols != K) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "PackWeight: parts disagree on columns (%d vs %d)", v.cols, K));
    }
    if (v.dtype != DType::kF32 && v.dtype != DType::kBF16 && v.dtype != DType::kF16) {
      return absl::InvalidArgumentError(
          absl::StrFormat("PackWeight: unsupported weight dtype %s", DTypeName(v.dtype)));
    }
    all_bf16 = all_bf16 && v.dtype == DType::kBF16;
    N += v.rows;
  }
  auto w = std::make_unique<CpuPackedWeight>();
  w->path = path;
  w->n_ = N;
  w->k_ = K;
  StackedSource src{parts};
  if (path == MatmulPath::kBlas) {
    w->dtype_ = DType::kF32;
    w->f32 = AllocAligned<float>(N * K);
    for (int64_t r = 0; r < N; ++r) {
      auto [part, local] = src.Locate(r);
      ConvertToF32(static_cast<const unsigned char*>(part->data) + local * K * DTypeSize(part->dtype),
                   part->dtype, K, w->f32.get() + r * K);
    }
    return w;
  }
  w->panels = (N + kPanel - 1) / kPanel;
  const int64_t total = w->panels * K * kPanel;
  if (all_bf16) {
    w->dtype_ = DType::kBF16;
    w->bf16 = AllocAligned<uint16_t>(total);
    std::memset(w->bf16.get(), 0, static_cast<size_t>(total) * 2);
    for (int64_t r = 0; r < N; ++r) {
      auto [part, local] = src.Locate(r);
      const auto* row = static_cast<const uint16_t*>(part->data) + local * K;
      uint16_t* dst = w->bf16.get() + (r / kPanel) * K * kPanel + r % kPanel;
      for (int64_t k = 0; k < K; ++k) dst[k * kPanel] = row[k];
    }
  } else {
    w->dtype_ = DType::kF32;
    w->f32 = AllocAligned<float>(total);
    std::memset(w->f32.get(), 0, static_cast<size_t>(total) * 4);
    std::vector<float> row(static_cast<size_t>(K));
    for (int64_t r = 0; r < N; ++r) {
      auto [part, local] = src.Locate(r);
      ConvertToF32(static_cast<const unsigned char*>(part->data) + local * K * DTypeSize(part->dtype),
                   part->dtype, K, row.data());
      float* dst = w->f32.get() + (r / kPanel) * K * kPanel + r % kPanel;
      for (int64_t k = 0; k < K; ++k) dst[k * kPanel] = row[k];
    }
  }
  return w;
}

void Matmul(const MatmulParams& p, int num_threads) {
  const auto& w = static_cast<const CpuPackedWeight&>(*p.w);
  if (p.m <= 0) return;
  if (w.path == MatmulPath::kBlas) {
    openblas_set_num_threads(num_threads);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(p.m),
                static_cast<int>(w.n_), static_cast<int>(w.k_), 1.0f, p.x, static_cast<int>(w.k_),
                w.f32.get(), static_cast<int>(w.k_), 0.0f, p.y, static_cast<int>(w.n_));
    return;
  }
  if (w.dtype_ == DType::kBF16) {
    PackedMatmul<uint16_t>(w, w.bf16.get(), p, num_threads);
  } else {
    PackedMatmul<float>(w, w.f32.get(), p, num_threads);
  }
}

}  // namespace olmo::kernels::cpu
