// Every CUDA op against the CPU op (label gpu; each test skips without a CUDA device). Random
// inputs at Olmo shapes and odd sizes; tolerances of DESIGN.md §5: f32 element-wise ops and
// reductions 1e-3 (relative to the values' scale), bf16 GEMM inputs rtol/atol 2e-2.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/cuda_ops.h"

namespace olmo::kernels {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device"

template <typename T>
struct Dev {
  T* ptr = nullptr;
  size_t n = 0;
  explicit Dev(const std::vector<T>& host) : n(host.size()) {
    EXPECT_EQ(cudaMalloc(&ptr, std::max<size_t>(1, n) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  explicit Dev(size_t count) : n(count) {
    EXPECT_EQ(cudaMalloc(&ptr, std::max<size_t>(1, n) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemset(ptr, 0, n * sizeof(T)), cudaSuccess);
  }
  ~Dev() { cudaFree(ptr); }
  std::vector<T> Host() const {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// max |a - b| / (atol + rtol |b|) must be <= 1.
void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, float rtol,
                 float atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0, max_abs = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    max_abs = std::max(max_abs, err);
    const double r = err / (atol + rtol * std::fabs(want[i]));
    if (r > worst) worst = r, at = i;
  }
  EXPECT_LE(worst, 1.0) << what << ": element " << at << " got " << got[at] << " want "
                        << want[at];
  std::printf("%s: max abs err %.3g over %zu values\n", what.c_str(), max_abs, got.size());
}

class CudaOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceAvailable()) return;
    auto ops = MakeCudaOps({});
    ASSERT_TRUE(ops.ok()) << ops.status();
    gpu_ = std::move(*ops);
    cpu_ = MakeCpuOps({});
  }
  std::unique_ptr<Ops> gpu_, cpu_;
};

TEST_F(CudaOpsTest, MatmulBf16AndF32AgainstCpu) {
  SKIP_WITHOUT_GPU();
  struct Shape {
    int64_t m, n, k;
    DType dtype;
  };
  for (const Shape& s : {Shape{1, 4096, 4096, DType::kBF16}, Shape{7, 11008, 4096, DType::kBF16},
                         Shape{64, 384, 4096, DType::kBF16}, Shape{3, 130, 70, DType::kF32},
                         Shape{33, 257, 96, DType::kBF16}}) {
    std::vector<float> wf = Random(static_cast<size_t>(s.n * s.k), 1, 0.02f);
    std::vector<uint16_t> wb(wf.size());
    for (size_t i = 0; i < wf.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &wf[i], 4);
      wb[i] = static_cast<uint16_t>((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
    }
    WeightView view{s.dtype == DType::kBF16 ? static_cast<const void*>(wb.data()) : wf.data(),
                    s.dtype, s.n, s.k};
    auto wc = cpu_->PackWeight({&view, 1});
    auto wg = gpu_->PackWeight({&view, 1});
    ASSERT_TRUE(wc.ok() && wg.ok());
    std::vector<float> x = Random(static_cast<size_t>(s.m * s.k), 2);
    std::vector<float> want(static_cast<size_t>(s.m * s.n));
    cpu_->Matmul({x.data(), s.m, wc->get(), want.data()});
    Dev<float> dx(x), dy(static_cast<size_t>(s.m * s.n));
    gpu_->Matmul({dx.ptr, s.m, wg->get(), dy.ptr});
    // BF16: the activations are rounded to bf16 too (relative error 2^-9 per product).
    const float tol = s.dtype == DType::kBF16 ? 2e-2f : 1e-3f;
    ExpectClose(dy.Host(), want, tol, tol,
                "matmul m" + std::to_string(s.m) + " n" + std::to_string(s.n) + " k" +
                    std::to_string(s.k));
  }
}

TEST_F(CudaOpsTest, EmbeddingVocabSliceAgainstCpu) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 300, hidden = 4096, begin = 100;
  std::vector<float> table = Random(static_cast<size_t>(rows * hidden), 3);
  std::vector<int32_t> ids = {100, 399, 5, 250, 400, 101};
  Dev<float> dt(table);
  Dev<int32_t> did(ids);
  Dev<float> dout(ids.size() * hidden);
  std::vector<float> want(ids.size() * hidden);
  cpu_->Embedding({ids.data(), 6, {table.data(), DType::kF32, rows, hidden}, begin, want.data()});
  gpu_->Embedding({did.ptr, 6, {dt.ptr, DType::kF32, rows, hidden}, begin, dout.ptr});
  ExpectClose(dout.Host(), want, 0, 0, "embedding");
}

TEST_F(CudaOpsTest, RmsNormSumSquaresRmsScaleAgainstCpu) {
  SKIP_WITHOUT_GPU();
  for (int64_t dim : {4096, 5120, 77}) {
    const int64_t rows = 9;
    std::vector<float> x = Random(static_cast<size_t>(rows * dim), 4);
    std::vector<float> res = Random(x.size(), 5);
    std::vector<float> w = Random(static_cast<size_t>(dim), 6);
    std::vector<float> want(x.size());
    cpu_->RmsNorm({x.data(), res.data(), w.data(), want.data(), rows, dim, 1e-6f});
    Dev<float> dx(x), dr(res), dw(w), dout(x.size());
    gpu_->RmsNorm({dx.ptr, dr.ptr, dw.ptr, dout.ptr, rows, dim, 1e-6f});
    ExpectClose(dout.Host(), want, 1e-3f, 1e-4f, "rms_norm dim " + std::to_string(dim));
    // TP split: partial sums of squares, then the scale with the full width.
    std::vector<float> ss(rows), ss_want(rows);
    cpu_->SumSquares({x.data(), rows, dim / 2, dim, ss_want.data()});
    Dev<float> dss(static_cast<size_t>(rows));
    gpu_->SumSquares({dx.ptr, rows, dim / 2, dim, dss.ptr});
    ExpectClose(dss.Host(), ss_want, 1e-4f, 1e-4f, "sum_squares");
    std::vector<float> xs = x;
    cpu_->RmsScale({xs.data(), rows, dim / 2, dim, ss_want.data(), w.data(), dim, 1e-6f});
    Dev<float> dxs(x);
    gpu_->RmsScale({dxs.ptr, rows, dim / 2, dim, dss.ptr, dw.ptr, dim, 1e-6f});
    ExpectClose(dxs.Host(), xs, 1e-3f, 1e-4f, "rms_scale");
  }
}

TEST_F(CudaOpsTest, RopeDefaultAndYarnTablesAgainstCpu) {
  SKIP_WITHOUT_GPU();
  RopeConfig plain;
  plain.theta = 500000.0;
  RopeConfig yarn = plain;
  yarn.type = RopeType::kYarn;
  yarn.factor = 8.0;
  yarn.original_max_position_embeddings = 8192;
  yarn.attention_factor = 1.2079441541679836;
  yarn.beta_fast = 32.0;
  yarn.beta_slow = 1.0;
  for (const RopeConfig& rc : {plain, yarn}) {
    RopeTable table = MakeRopeTable(rc, 128);
    const int64_t tokens = 5, heads = 8, stride = heads * 128 + 64;
    std::vector<float> x = Random(static_cast<size_t>(tokens * stride), 7);
    std::vector<int32_t> pos = {0, 1, 4095, 65535, 12345};
    std::vector<float> want = x;
    cpu_->Rope({want.data(), tokens, heads, 128, stride, pos.data(), &table});
    Dev<float> dx(x);
    Dev<int32_t> dp(pos);
    gpu_->Rope({dx.ptr, tokens, heads, 128, stride, dp.ptr, &table});
    ExpectClose(dx.Host(), want, 1e-4f, 1e-4f, "rope");
  }
}

TEST_F(CudaOpsTest, SwiGluAndLogSoftmaxAgainstCpu) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 6, dim = 11008;
  std::vector<float> gu = Random(static_cast<size_t>(rows * 2 * dim), 8, 3.0f);
  std::vector<float> want(static_cast<size_t>(rows * dim));
  cpu_->SwiGlu({gu.data(), want.data(), rows, dim});
  Dev<float> dgu(gu), dout(want.size());
  gpu_->SwiGlu({dgu.ptr, dout.ptr, rows, dim});
  ExpectClose(dout.Host(), want, 1e-5f, 1e-6f, "swiglu");

  const int64_t n = 100278;
  std::vector<float> logits = Random(static_cast<size_t>(3 * n), 9, 4.0f);
  std::vector<float> lw(logits.size());
  cpu_->LogSoftmax({logits.data(), lw.data(), 3, n});
  Dev<float> dl(logits);
  gpu_->LogSoftmax({dl.ptr, dl.ptr, 3, n});  // in place
  ExpectClose(dl.Host(), lw, 1e-5f, 1e-4f, "log_softmax");
}

// Paged attention against the CPU op (itself checked against contiguous attention in double):
// shuffled block tables, several sequences, GQA / MQA / MHA, sliding windows with a block size
// that does not divide them, a prefill chunk straddling the window, long contexts.
TEST_F(CudaOpsTest, PagedAttentionAgainstCpu) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t heads, kv_heads, head_dim, block_size, window, len;
  };
  for (const Case& c : {Case{32, 8, 128, 16, 0, 300}, Case{8, 1, 64, 16, 100, 257},
                        Case{4, 4, 16, 7, 20, 90}, Case{32, 8, 128, 16, 4096, 5000}}) {
    const int64_t seqs = 3;
    const int64_t max_blocks = (c.len + c.block_size - 1) / c.block_size;
    const int64_t num_blocks = seqs * max_blocks + 5;
    std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937(10));
    std::vector<int32_t> tables(static_cast<size_t>(seqs * max_blocks));
    std::copy(ids.begin(), ids.begin() + static_cast<int64_t>(tables.size()), tables.begin());
    const size_t cache_floats =
        static_cast<size_t>(num_blocks * 2 * c.kv_heads * c.block_size * c.head_dim);
    std::vector<float> cache = Random(cache_floats, 11);
    // Queries: the last 3 positions of sequence 0 (a chunk), one decode of sequences 1 and 2
    // at other lengths.
    std::vector<int32_t> pos = {static_cast<int32_t>(c.len - 3), static_cast<int32_t>(c.len - 2),
                                static_cast<int32_t>(c.len - 1), static_cast<int32_t>(c.len / 2),
                                static_cast<int32_t>(c.len - 1)};
    std::vector<int32_t> seq = {0, 0, 0, 1, 2};
    const int64_t tokens = 5, q_stride = c.heads * c.head_dim + 32;
    std::vector<float> q = Random(static_cast<size_t>(tokens * q_stride), 12);
    std::vector<float> want(static_cast<size_t>(tokens * c.heads * c.head_dim));
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    AttentionParams p{q.data(), q_stride, want.data(), tokens, c.heads, pos.data(), seq.data(),
                      tables.data(), max_blocks, c.window, scale,
                      {cache.data(), num_blocks, c.kv_heads, c.block_size, c.head_dim}};
    cpu_->Attention(p);
    Dev<float> dq(q), dout(want.size()), dcache(cache);
    Dev<int32_t> dpos(pos), dseq(seq), dtab(tables);
    AttentionParams g = p;
    g.q = dq.ptr;
    g.out = dout.ptr;
    g.positions = dpos.ptr;
    g.token_seq = dseq.ptr;
    g.block_tables = dtab.ptr;
    g.cache.data = dcache.ptr;
    gpu_->Attention(g);
    ExpectClose(dout.Host(), want, 1e-3f, 1e-4f,
                "attention h" + std::to_string(c.heads) + " kv" + std::to_string(c.kv_heads) +
                    " window " + std::to_string(c.window) + " len " + std::to_string(c.len));
  }
}

TEST_F(CudaOpsTest, KvWriteMatchesCpuLayout) {
  SKIP_WITHOUT_GPU();
  const int64_t kvh = 8, D = 128, bs = 16, blocks = 10, tokens = 7, stride = kvh * D + 8;
  std::vector<float> k = Random(static_cast<size_t>(tokens * stride), 13);
  std::vector<float> v = Random(k.size(), 14);
  std::vector<int64_t> slots = {0, 17, 159, 33, 34, 80, 5};
  std::vector<float> want(static_cast<size_t>(blocks * 2 * kvh * bs * D), 0.0f);
  cpu_->KvWrite({k.data(), v.data(), stride, stride, tokens, slots.data(),
                 {want.data(), blocks, kvh, bs, D}});
  Dev<float> dk(k), dv(v), dc(want.size());
  Dev<int64_t> ds(slots);
  gpu_->KvWrite({dk.ptr, dv.ptr, stride, stride, tokens, ds.ptr, {dc.ptr, blocks, kvh, bs, D}});
  ExpectClose(dc.Host(), want, 0, 0, "kv_write");
}

}  // namespace
}  // namespace olmo::kernels
