// A device worker sizes its KV cache from the backend's free memory (kernels/cuda/memory_plan.h):
// fraction x free - activation workspace - reserve, in whole blocks; too little memory is a
// ResourceExhausted naming the terms. Runs on the CPU through DeviceLikeCpuOps.
#include "device_like_ops.h"
#include "model_test_util.h"

namespace olmo::testing {
namespace {

absl::StatusOr<std::unique_ptr<step::LocalWorker>> Load(int64_t free_bytes, double fraction,
                                                         DType kv_dtype = DType::kF32) {
  step::LocalWorkerOptions o;
  o.kv_dtype = kv_dtype;
  o.block_size = 16;
  o.kv_memory_fraction = fraction;
  o.max_tokens_per_step = 64;
  o.make_ops = [free_bytes]() -> absl::StatusOr<std::unique_ptr<kernels::Ops>> {
    auto ops = std::make_unique<DeviceLikeCpuOps>();
    ops->free_bytes = free_bytes;
    return std::unique_ptr<kernels::Ops>(std::move(ops));
  };
  return step::LoadLocalWorker(ModelsDir() + "/mha_f32", o);
}

TEST(MemoryPlanWorker, KvBlocksFollowFreeMemoryAndFraction) {
  auto w = Load(1ll << 30, 0.9);
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = (*w)->config;
  const int64_t per_block = 2 * c.num_hidden_layers * c.num_key_value_heads * 16 * c.head_dim * 4;
  const int64_t per_token = 4 * (3 * c.hidden_size + 2 * (c.num_attention_heads +
                                 c.num_key_value_heads) * c.head_dim + 3 * c.intermediate_size +
                                 c.vocab_size);
  const int64_t budget = static_cast<int64_t>((1ll << 30) * 0.9);
  const int64_t want = (budget - per_token * 64 - (512ll << 20)) / per_block;
  EXPECT_EQ((*w)->runner->info().num_blocks[kKvGroupFull], want);
  EXPECT_EQ((*w)->runner->info().num_blocks[kKvGroupSliding], want);
  auto half = Load(1ll << 30, 0.6);  // a smaller fraction: fewer blocks
  ASSERT_TRUE(half.ok());
  EXPECT_LT((*half)->runner->info().num_blocks[kKvGroupFull], want);
}

// A bf16 cache holds twice the blocks in the same memory.
TEST(MemoryPlanWorker, Bf16KvCacheHoldsTwiceTheBlocks) {
  auto f32 = Load(1ll << 30, 0.9);
  auto bf16 = Load(1ll << 30, 0.9, DType::kBF16);
  ASSERT_TRUE(f32.ok() && bf16.ok());
  const int64_t a = (*f32)->runner->info().num_blocks[kKvGroupFull];
  const int64_t b = (*bf16)->runner->info().num_blocks[kKvGroupFull];
  EXPECT_GE(b, 2 * a);
  EXPECT_LE(b, 2 * a + 1);
}

TEST(MemoryPlanWorker, TooLittleMemoryIsResourceExhausted) {
  auto w = Load(256ll << 20, 0.9);  // less than the 512 MiB reserve
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(w.status().message().find("reserve"), std::string::npos) << w.status();
}

}  // namespace
}  // namespace olmo::testing
