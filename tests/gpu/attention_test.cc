// CUDA paged attention against a contiguous reference (double precision, from per-sequence K/V
// arrays) and against the CPU op: shuffled block tables, several sequences, prefill chunks and
// decode tokens, MHA (Olmo 7B: 32 heads of 128), GQA, MQA (one kv head for 32 query heads: the
// group split over several blocks), sliding windows with a block size that does not divide
// them, and long contexts that take the split-K path. Cache slots outside every query's
// [lo, p] range hold NaN, so any read outside the causal window poisons the result.
// f32 softmax and accumulation: tolerance 1e-3 (DESIGN.md §5, fp32 reductions).
#include <cstdint>
#include <limits>
#include <numeric>

#include "kernels/cuda/launch_geometry.h"
#include "tests/gpu/gpu_test_util.h"

namespace olmo::kernels::gpu_test {
namespace {

struct Query {
  int32_t seq, pos;
};

struct Case {
  std::string name;
  int64_t heads, kv_heads, head_dim, block_size, window;
  std::vector<int64_t> lens;  // keys written per sequence
  std::vector<Query> queries;
  bool expect_split = false;  // the geometry must take the split-K path
};

// Every case runs on both CUDA kernels: kWarp (the default, attention_warp.cu) and kTiled
// (attention.cu: shared K/V tiles, split-K).
class AttentionGpuTest : public AttentionKernelTest {
 protected:
  // Runs one case on both backends and compares.
  void RunCase(const Case& c);
};

// All queries of the last `n` positions of a sequence of length len (a prefill chunk).
void AddChunk(Case& c, int32_t seq, int64_t len, int64_t n) {
  for (int64_t p = len - n; p < len; ++p) c.queries.push_back({seq, static_cast<int32_t>(p)});
}

void AttentionGpuTest::RunCase(const Case& c) {
  SCOPED_TRACE(c.name);
  const int64_t D = c.head_dim, kvh = c.kv_heads, bs = c.block_size;
  const int64_t seqs = static_cast<int64_t>(c.lens.size());
  const int64_t max_len = *std::max_element(c.lens.begin(), c.lens.end());
  const int64_t max_blocks = (max_len + bs - 1) / bs;
  const int64_t num_blocks = seqs * max_blocks + 3;
  // Contiguous K/V per sequence: [seq][u][kv head][D].
  std::vector<std::vector<float>> k(seqs), v(seqs);
  for (int64_t s = 0; s < seqs; ++s) {
    k[s] = Random(static_cast<size_t>(c.lens[s] * kvh * D), 100 + static_cast<uint32_t>(s));
    v[s] = Random(static_cast<size_t>(c.lens[s] * kvh * D), 200 + static_cast<uint32_t>(s));
  }
  // Shuffled block tables; unused entries point at block 0 (never read).
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(10));
  std::vector<int32_t> tables(static_cast<size_t>(seqs * max_blocks));
  std::copy(ids.begin(), ids.begin() + static_cast<int64_t>(tables.size()), tables.begin());
  // Lowest key any query of a sequence reads: keys below stay NaN.
  std::vector<int64_t> first_key(seqs, std::numeric_limits<int64_t>::max());
  for (const Query& q : c.queries) {
    const int64_t lo = c.window > 0 ? std::max<int64_t>(0, q.pos - c.window + 1) : 0;
    first_key[q.seq] = std::min(first_key[q.seq], lo);
  }
  std::vector<float> cache(static_cast<size_t>(num_blocks * 2 * kvh * bs * D),
                           std::numeric_limits<float>::quiet_NaN());
  for (int64_t s = 0; s < seqs; ++s) {
    for (int64_t u = first_key[s]; u < c.lens[s]; ++u) {
      const int64_t block = tables[s * max_blocks + u / bs];
      for (int64_t g = 0; g < kvh; ++g) {
        float* kd = cache.data() + ((block * 2 * kvh + g) * bs + u % bs) * D;
        float* vd = kd + kvh * bs * D;
        std::copy_n(k[s].data() + (u * kvh + g) * D, D, kd);
        std::copy_n(v[s].data() + (u * kvh + g) * D, D, vd);
      }
    }
  }
  const int64_t tokens = static_cast<int64_t>(c.queries.size());
  const int64_t q_stride = (c.heads + 2 * kvh) * D;  // q inside a fused qkv row
  std::vector<float> q = Random(static_cast<size_t>(tokens * q_stride), 12);
  std::vector<int32_t> pos, seq;
  for (const Query& x : c.queries) pos.push_back(x.pos), seq.push_back(x.seq);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  // Contiguous reference in double.
  std::vector<float> ref(static_cast<size_t>(tokens * c.heads * D));
  const int64_t group = c.heads / kvh;
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t s = seq[t], p = pos[t];
    const int64_t lo = c.window > 0 ? std::max<int64_t>(0, p - c.window + 1) : 0;
    for (int64_t h = 0; h < c.heads; ++h) {
      const float* qh = q.data() + t * q_stride + h * D;
      const int64_t g = h / group;
      std::vector<double> w(static_cast<size_t>(p - lo + 1));
      double mx = -INFINITY, z = 0;
      for (int64_t u = lo; u <= p; ++u) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += double{qh[d]} * k[s][(u * kvh + g) * D + d];
        w[u - lo] = dot * scale;
        mx = std::max(mx, w[u - lo]);
      }
      for (double& x : w) z += (x = std::exp(x - mx));
      for (int64_t d = 0; d < D; ++d) {
        double acc = 0;
        for (int64_t u = lo; u <= p; ++u) acc += w[u - lo] * v[s][(u * kvh + g) * D + d];
        ref[(t * c.heads + h) * D + d] = static_cast<float>(acc / z);
      }
    }
  }

  AttentionParams hp{q.data(),   q_stride,   nullptr,    tokens,
                     c.heads,    pos.data(), seq.data(), tables.data(),
                     max_blocks, c.window,   scale,      {cache.data(), num_blocks, kvh, bs, D}};
  std::vector<float> cpu_out(ref.size());
  hp.out = cpu_out.data();
  cpu_->Attention(hp);
  Dev<float> dq(q), dout(ref.size()), dcache(cache);
  Dev<int32_t> dpos(pos), dseq(seq), dtab(tables);
  AttentionParams gp = hp;
  gp.q = dq.ptr;
  gp.out = dout.ptr;
  gp.positions = dpos.ptr;
  gp.token_seq = dseq.ptr;
  gp.block_tables = dtab.ptr;
  gp.cache.data = dcache.ptr;
  gpu_->Attention(gp);
  const std::vector<float> got = dout.Host();

  int sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  const cuda::AttentionGeometry geo = cuda::PlanAttention(
      tokens, c.heads, kvh, D, cuda::AttentionMaxContext(max_blocks, bs, c.window), sms);
  std::printf("[geometry] %s: grid %lld x %lld splits, %lld heads/block, %lld B smem\n",
              c.name.c_str(), static_cast<long long>(geo.grid_x),
              static_cast<long long>(geo.num_splits), static_cast<long long>(geo.heads_per_block),
              static_cast<long long>(geo.smem_bytes));
  if (c.expect_split && GetParam() == CudaAttention::kTiled) {
    EXPECT_GT(geo.num_splits, 1);
  }
  ExpectClose(got, ref, 1e-3f, 1e-4f, "attention vs contiguous: " + c.name);
  ExpectClose(got, cpu_out, 1e-3f, 1e-4f, "attention vs cpu op: " + c.name);
}

TEST_P(AttentionGpuTest, MhaGqaMqaPrefillAndDecode) {
  OLMO_SKIP_WITHOUT_GPU();
  Case mha{"7B MHA 32x128", 32, 32, 128, 16, 0, {300, 45, 1}, {}};
  AddChunk(mha, 0, 300, 20);
  mha.queries.push_back({1, 44});
  mha.queries.push_back({2, 0});
  RunCase(mha);

  Case gqa{"GQA 32/8x128", 32, 8, 128, 16, 0, {257, 100}, {}};
  AddChunk(gqa, 0, 257, 5);
  gqa.queries.push_back({1, 60});  // keys past the query position stay unread
  RunCase(gqa);

  Case mqa{"MQA 32/1x128 (group over 4 blocks)", 32, 1, 128, 32, 0, {200}, {}};
  AddChunk(mqa, 0, 200, 3);
  RunCase(mqa);

  Case small{"MQA 8/1x64", 8, 1, 64, 16, 0, {70}, {}};
  AddChunk(small, 0, 70, 70);
  RunCase(small);

  Case odd{"5/5x20 block 3", 5, 5, 20, 3, 0, {41, 2}, {}};
  AddChunk(odd, 0, 41, 4);
  odd.queries.push_back({1, 1});
  RunCase(odd);

  Case prefill{"prefill 512 tokens GQA 32/8x128", 32, 8, 128, 16, 0, {512}, {}};
  AddChunk(prefill, 0, 512, 512);
  RunCase(prefill);
}

// Steps of at least kAttentionMinTokensForTiling tokens tile consecutive query tokens of one
// sequence in one block; runs of other sequences inside a tile are handled one after another.
TEST_P(AttentionGpuTest, PrefillTokenTiles) {
  OLMO_SKIP_WITHOUT_GPU();
  Case mha{"prefill 300 tokens 7B MHA 32x128 (16 tokens per block)", 32, 32, 128, 16, 0, {320}, {}};
  AddChunk(mha, 0, 320, 300);
  RunCase(mha);

  Case mixed{"mixed step: 280-token chunk with decodes inside, window 64, GQA 32/8, block 7",
             32,
             8,
             128,
             7,
             64,
             {400, 90, 33},
             {}};
  for (int32_t p = 120; p < 400; ++p) {
    mixed.queries.push_back({0, p});
    if (p == 130) mixed.queries.push_back({1, 89});
    if (p == 131) mixed.queries.push_back({2, 32});
    if (p == 200) mixed.queries.push_back({1, 10});
  }
  RunCase(mixed);

  Case mqa{"prefill 260 tokens MQA 32/1x128 (2 tokens x 8 heads)", 32, 1, 128, 16, 0, {260}, {}};
  AddChunk(mqa, 0, 260, 260);
  RunCase(mqa);
}

TEST_P(AttentionGpuTest, SlidingWindows) {
  OLMO_SKIP_WITHOUT_GPU();
  Case a{"window 100, MQA 8/1x64, block 16", 8, 1, 64, 16, 100, {257, 120}, {}};
  AddChunk(a, 0, 257, 40);  // the chunk straddles the window
  a.queries.push_back({1, 119});
  a.queries.push_back({1, 50});
  RunCase(a);

  Case b{"window 20, 4/4x16, block 7", 4, 4, 16, 7, 20, {90}, {}};
  AddChunk(b, 0, 90, 30);
  RunCase(b);

  Case c{"window 4096, 40/8x128, len 5000", 40, 8, 128, 16, 4096, {5000, 4097}, {}};
  AddChunk(c, 0, 5000, 3);
  c.queries.push_back({1, 4096});
  RunCase(c);
}

TEST_P(AttentionGpuTest, LongContextsTakeSplitK) {
  OLMO_SKIP_WITHOUT_GPU();
  Case a{"split-K decode GQA 32/8x128 len 8000/3000", 32, 8, 128, 16, 0, {8000, 3000}, {}, true};
  a.queries.push_back({0, 7999});
  a.queries.push_back({1, 2999});
  RunCase(a);

  Case b{"split-K MHA 32x128 window 1000 len 6000", 32, 32, 128, 16, 1000, {6000}, {}, true};
  b.queries.push_back({0, 5999});
  RunCase(b);

  Case c{"split-K MQA 8/1x64 len 20000, short second seq", 8, 1, 64, 16, 0, {20000, 10}, {}, true};
  c.queries.push_back({0, 19999});
  c.queries.push_back({1, 9});  // only its first split has keys
  c.queries.push_back({0, 300});
  RunCase(c);
}

INSTANTIATE_TEST_SUITE_P(Kernels, AttentionGpuTest,
                         ::testing::Values(CudaAttention::kWarp, CudaAttention::kTiled),
                         [](const auto& info) {
                           return info.param == CudaAttention::kWarp ? std::string("warp")
                                                                     : std::string("tiled");
                         });

}  // namespace
}  // namespace olmo::kernels::gpu_test
