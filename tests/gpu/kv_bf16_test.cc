// The bf16 KV cache on the CUDA backend against the CPU op: KvWrite rounds exactly as the CPU
// (bit-identical cache) and Attention over the bf16 cache (the warp kernel; the tiled setting
// falls back to it for bf16) matches the CPU's bf16 attention within f32 tolerance, on a
// shuffled paged layout with GQA and a sliding window. DESIGN.md §5: bf16 KV cache on CUDA.
#include <numeric>

#include "tests/gpu/gpu_test_util.h"

namespace olmo::kernels::gpu_test {
namespace {

using KvBf16GpuTest = AttentionKernelTest;

TEST_P(KvBf16GpuTest, WriteIsBitExactAndAttentionMatchesCpu) {
  OLMO_SKIP_WITHOUT_GPU();
  const int64_t heads = 32, kvh = 8, D = 128, bs = 16, len = 300, blocks = 24;
  const int64_t kw = kvh * D;
  std::vector<float> k = Random(static_cast<size_t>(len * kw), 1, 2.0f);
  std::vector<float> v = Random(static_cast<size_t>(len * kw), 2, 2.0f);
  std::vector<int32_t> ids(blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(3));
  const int64_t max_blocks = (len + bs - 1) / bs;
  std::vector<int32_t> table(ids.begin(), ids.begin() + max_blocks);
  std::vector<int64_t> slots(static_cast<size_t>(len));
  for (int64_t u = 0; u < len; ++u) slots[u] = int64_t{table[u / bs]} * bs + u % bs;

  const size_t cache_elems = static_cast<size_t>(blocks * 2 * kvh * bs * D);
  std::vector<uint16_t> host_cache(cache_elems, 0);
  KvLayerView hv{host_cache.data(), blocks, kvh, bs, D, DType::kBF16};
  cpu_->KvWrite({k.data(), v.data(), kw, kw, len, slots.data(), hv});
  Dev<float> dk(k), dv(v);
  Dev<int64_t> dslots(slots);
  Dev<uint16_t> dcache(cache_elems);
  KvLayerView dvw = hv;
  dvw.data = dcache.ptr;
  gpu_->KvWrite({dk.ptr, dv.ptr, kw, kw, len, dslots.ptr, dvw});
  ASSERT_EQ(dcache.Host(), host_cache) << "bf16 KvWrite differs from the CPU's rounding";

  // Queries: a 20-token prefill chunk at the end and decodes at 0, 150; window 0 and 64.
  std::vector<int32_t> pos = {0, 150};
  for (int32_t p = len - 20; p < len; ++p) pos.push_back(p);
  const int64_t T = static_cast<int64_t>(pos.size());
  std::vector<int32_t> seq(static_cast<size_t>(T), 0);
  std::vector<float> q = Random(static_cast<size_t>(T * heads * D), 4);
  Dev<float> dq(q), dout(static_cast<size_t>(T * heads * D));
  Dev<int32_t> dpos(pos), dseq(seq), dtab(table);
  for (int64_t window : {int64_t{0}, int64_t{64}}) {
    AttentionParams hp{q.data(),
                       heads * D,
                       nullptr,
                       T,
                       heads,
                       pos.data(),
                       seq.data(),
                       table.data(),
                       max_blocks,
                       window,
                       1.0f / std::sqrt(128.0f),
                       hv};
    std::vector<float> want(static_cast<size_t>(T * heads * D));
    hp.out = want.data();
    cpu_->Attention(hp);
    AttentionParams gp = hp;
    gp.q = dq.ptr;
    gp.out = dout.ptr;
    gp.positions = dpos.ptr;
    gp.token_seq = dseq.ptr;
    gp.block_tables = dtab.ptr;
    gp.cache = dvw;
    gpu_->Attention(gp);
    ExpectClose(dout.Host(), want, 1e-3f, 1e-4f,
                "bf16-KV attention vs cpu op, window " + std::to_string(window));
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, KvBf16GpuTest,
                         ::testing::Values(CudaAttention::kWarp, CudaAttention::kTiled),
                         [](const auto& info) {
                           return info.param == CudaAttention::kWarp ? "warp" : "tiled";
                         });

}  // namespace
}  // namespace olmo::kernels::gpu_test
