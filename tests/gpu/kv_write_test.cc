// CUDA KvWrite against the CPU op (a scatter: exact): strided k/v rows (the k and v parts of a
// fused qkv row), slots across shuffled blocks, block size 16 and an odd one.
#include "tests/gpu/gpu_test_util.h"

namespace olmo::kernels::gpu_test {
namespace {

class KvWriteGpuTest : public GpuOpsTest {};

TEST_F(KvWriteGpuTest, MatchesCpuLayout) {
  OLMO_SKIP_WITHOUT_GPU();
  struct Case {
    int64_t kvh, head_dim, block_size;
  };
  for (const Case& c : {Case{8, 128, 16}, Case{32, 128, 16}, Case{3, 64, 7}}) {
    const int64_t blocks = 10, tokens = 7, row = c.kvh * c.head_dim, stride = 3 * row;
    std::vector<float> qkv = Random(static_cast<size_t>(tokens * stride), 13);
    std::vector<int64_t> slots = {0, 17, blocks * c.block_size - 1, 33, 34, 50, 5};
    std::vector<float> want(static_cast<size_t>(blocks * 2 * row * c.block_size), 0.0f);
    cpu_->KvWrite({qkv.data() + row,
                   qkv.data() + 2 * row,
                   stride,
                   stride,
                   tokens,
                   slots.data(),
                   {want.data(), blocks, c.kvh, c.block_size, c.head_dim}});
    Dev<float> dqkv(qkv), dc(want.size());
    Dev<int64_t> ds(slots);
    gpu_->KvWrite({dqkv.ptr + row,
                   dqkv.ptr + 2 * row,
                   stride,
                   stride,
                   tokens,
                   ds.ptr,
                   {dc.ptr, blocks, c.kvh, c.block_size, c.head_dim}});
    ExpectClose(dc.Host(), want, 0, 0,
                "kv_write kvh " + std::to_string(c.kvh) + " bs " + std::to_string(c.block_size));
  }
}

}  // namespace
}  // namespace olmo::kernels::gpu_test
