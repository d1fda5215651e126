// KV memory plan (pure host arithmetic, no GPU needed).
#include "kernels/cuda/memory_plan.h"

#include "gtest/gtest.h"

namespace olmo::kernels::cuda {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

TEST(MemoryPlanTest, KvBytesPerBlockOlmo7b) {
  // 32 layers, 32 kv heads, block 16, head_dim 128, f32: 2 * 32 * 32 * 16 * 128 * 4 = 16 MiB.
  EXPECT_EQ(KvBytesPerBlock(32, 32, 16, 128, 4), int64_t{16} << 20);
  EXPECT_EQ(KvBytesPerBlock(32, 32, 16, 128, 2), int64_t{8} << 20);
}

TEST(MemoryPlanTest, Olmo7bOnH100) {
  MemoryPlanInput in;
  in.free_bytes = 79 * kGiB;
  in.weight_bytes = int64_t{14} * kGiB;
  in.activation_bytes = 2 * kGiB;
  in.reserve_bytes = 1 * kGiB;
  in.kv_bytes_per_block = KvBytesPerBlock(32, 32, 16, 128, 4);
  in.memory_fraction = 0.9;
  absl::StatusOr<MemoryPlan> plan = PlanKvMemory(in);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const int64_t budget = static_cast<int64_t>(79 * kGiB * 0.9L);
  EXPECT_EQ(plan->budget_bytes, budget);
  const int64_t left = budget - 17 * kGiB;
  EXPECT_EQ(plan->num_kv_blocks, left / (int64_t{16} << 20));
  EXPECT_EQ(plan->kv_bytes, plan->num_kv_blocks * (int64_t{16} << 20));
  EXPECT_EQ(plan->spare_bytes, left - plan->kv_bytes);
  EXPECT_GE(plan->spare_bytes, 0);
  EXPECT_LT(plan->spare_bytes, int64_t{16} << 20);
}

TEST(MemoryPlanTest, ExactFitAndOneByteShort) {
  MemoryPlanInput in;
  in.free_bytes = 1000;
  in.weight_bytes = 100;
  in.activation_bytes = 50;
  in.reserve_bytes = 50;
  in.kv_bytes_per_block = 200;
  in.memory_fraction = 1.0;
  absl::StatusOr<MemoryPlan> plan = PlanKvMemory(in);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->num_kv_blocks, 4);
  EXPECT_EQ(plan->spare_bytes, 0);
  in.min_blocks = 5;
  EXPECT_EQ(PlanKvMemory(in).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(MemoryPlanTest, NothingFitsNamesEveryTerm) {
  MemoryPlanInput in;
  in.free_bytes = 10 * kGiB;
  in.weight_bytes = 14 * kGiB;
  in.kv_bytes_per_block = 1 << 20;
  in.memory_fraction = 0.9;
  absl::StatusOr<MemoryPlan> plan = PlanKvMemory(in);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string msg(plan.status().message());
  EXPECT_NE(msg.find("weights 15032385536"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0 KV blocks fit"), std::string::npos) << msg;
  // Fits the weights but not one block.
  in.weight_bytes = 9 * kGiB - 1;
  in.free_bytes = 10 * kGiB;
  in.memory_fraction = 0.9;
  EXPECT_FALSE(PlanKvMemory(in).ok());
}

TEST(MemoryPlanTest, InvalidInputs) {
  MemoryPlanInput ok;
  ok.free_bytes = kGiB;
  ok.kv_bytes_per_block = 1 << 20;
  ASSERT_TRUE(PlanKvMemory(ok).ok());
  for (double f : {0.0, -0.5, 1.5}) {
    MemoryPlanInput in = ok;
    in.memory_fraction = f;
    EXPECT_EQ(PlanKvMemory(in).status().code(), absl::StatusCode::kInvalidArgument) << f;
  }
  MemoryPlanInput in = ok;
  in.kv_bytes_per_block = 0;
  EXPECT_EQ(PlanKvMemory(in).status().code(), absl::StatusCode::kInvalidArgument);
  in = ok;
  in.weight_bytes = -1;
  EXPECT_EQ(PlanKvMemory(in).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace olmo::kernels::cuda
