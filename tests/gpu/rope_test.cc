// CUDA Rope against the CPU op: default and YaRN tables, head_dim 128 and 64, a row stride
// wider than the heads (the q part of a fused qkv row), positions up to 65535 (large angles:
// full-precision sincosf), and a table rebuilt at the same address (the device copy is
// checked by content).
#include "tests/gpu/gpu_test_util.h"

namespace olmo::kernels::gpu_test {
namespace {

class RopeGpuTest : public GpuOpsTest {};

TEST_F(RopeGpuTest, DefaultAndYarnTables) {
  OLMO_SKIP_WITHOUT_GPU();
  RopeConfig plain;
  plain.theta = 500000.0;
  RopeConfig yarn = plain;
  yarn.type = RopeType::kYarn;
  yarn.factor = 8.0;
  yarn.original_max_position_embeddings = 8192;
  yarn.attention_factor = 1.2079441541679836;
  yarn.beta_fast = 32.0;
  yarn.beta_slow = 1.0;
  for (int64_t head_dim : {128, 64}) {
    for (const RopeConfig& rc : {plain, yarn}) {
      RopeTable table = MakeRopeTable(rc, head_dim);
      const int64_t tokens = 6, heads = head_dim == 128 ? 32 : 5;
      const int64_t stride = heads * head_dim + 2 * 8 * head_dim;  // q, then k and v of 8 heads
      std::vector<float> x = Random(static_cast<size_t>(tokens * stride), 7);
      std::vector<int32_t> pos = {0, 1, 4095, 65535, 12345, 7};
      std::vector<float> want = x;
      cpu_->Rope({want.data(), tokens, heads, head_dim, stride, pos.data(), &table});
      Dev<float> dx(x);
      Dev<int32_t> dp(pos);
      gpu_->Rope({dx.ptr, tokens, heads, head_dim, stride, dp.ptr, &table});
      ExpectClose(dx.Host(), want, 1e-4f, 1e-4f,
                  std::string("rope ") + (rc.type == RopeType::kYarn ? "yarn" : "default") +
                      " head_dim " + std::to_string(head_dim));
    }
  }
}

TEST_F(RopeGpuTest, TableRebuiltAtSameAddressIsRecopied) {
  OLMO_SKIP_WITHOUT_GPU();
  RopeConfig a;
  a.theta = 10000.0;
  RopeConfig b;
  b.theta = 500000.0;
  RopeTable table = MakeRopeTable(a, 64);
  const int64_t tokens = 2, heads = 2, stride = heads * 64;
  std::vector<int32_t> pos = {100, 3000};
  Dev<int32_t> dp(pos);
  std::vector<float> x = Random(static_cast<size_t>(tokens * stride), 9);
  Dev<float> d1(x);
  gpu_->Rope({d1.ptr, tokens, heads, 64, stride, dp.ptr, &table});
  table = MakeRopeTable(b, 64);  // same RopeTable object, other content
  std::vector<float> want = x;
  cpu_->Rope({want.data(), tokens, heads, 64, stride, pos.data(), &table});
  Dev<float> d2(x);
  gpu_->Rope({d2.ptr, tokens, heads, 64, stride, dp.ptr, &table});
  ExpectClose(d2.Host(), want, 1e-4f, 1e-4f, "rope after table change");
}

}  // namespace
}  // namespace olmo::kernels::gpu_test
