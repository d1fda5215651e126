// CUDA Matmul/PackWeight against the CPU op: bf16 weights (activations rounded to bf16 on the
// GPU, so rtol/atol 2e-2), f16, f32 weights (fp32 GEMM without TF32: 1e-3), parts stacked by
// PackWeight, Olmo 7B shapes (hidden 4096, intermediate 11008, fused qkv) and odd sizes.
#include "tests/gpu/gpu_test_util.h"

namespace olmo::kernels::gpu_test {
namespace {

struct Shape {
  int64_t m, n, k;
  DType dtype;
  int parts;  // the weight is packed from this many row blocks
};

class MatmulGpuTest : public GpuOpsTest {
 protected:
  // Runs one case on both backends and compares.
  void RunCase(const Shape& s);
};

void MatmulGpuTest::RunCase(const Shape& s) {
  // f32 master values; bf16/f16 storage holds their rounding.
  std::vector<float> wf = Random(static_cast<size_t>(s.n * s.k), 1, 0.02f);
  std::vector<uint16_t> w16(wf.size());
  if (s.dtype == DType::kBF16) w16 = ToBf16(wf);
  if (s.dtype == DType::kF16) {
    for (size_t i = 0; i < wf.size(); ++i) {
      // Small normals: exact f16 from the f32 bits with truncation is fine for a test input.
      const float f = wf[i];
      uint32_t b;
      std::memcpy(&b, &f, 4);
      const uint32_t sign = (b >> 16) & 0x8000u;
      const int32_t e = static_cast<int32_t>((b >> 23) & 0xff) - 127 + 15;
      w16[i] = e <= 0 ? static_cast<uint16_t>(sign)
                      : static_cast<uint16_t>(sign | (e << 10) | ((b >> 13) & 0x3ffu));
    }
  }
  const size_t elem = s.dtype == DType::kF32 ? 4 : 2;
  const char* base = s.dtype == DType::kF32 ? reinterpret_cast<const char*>(wf.data())
                                            : reinterpret_cast<const char*>(w16.data());
  std::vector<WeightView> views;
  int64_t row = 0;
  for (int i = 0; i < s.parts; ++i) {
    const int64_t rows = i + 1 < s.parts ? s.n / s.parts : s.n - row;
    views.push_back({base + row * s.k * elem, s.dtype, rows, s.k});
    row += rows;
  }
  auto wc = cpu_->PackWeight(views);
  auto wg = gpu_->PackWeight(views);
  ASSERT_TRUE(wc.ok()) << wc.status();
  ASSERT_TRUE(wg.ok()) << wg.status();
  EXPECT_EQ((*wg)->rows(), s.n);
  EXPECT_EQ((*wg)->cols(), s.k);
  EXPECT_EQ((*wg)->bytes(), s.n * s.k * static_cast<int64_t>(elem));
  std::vector<float> x = Random(static_cast<size_t>(s.m * s.k), 2);
  std::vector<float> want(static_cast<size_t>(s.m * s.n));
  cpu_->Matmul({x.data(), s.m, wc->get(), want.data()});
  Dev<float> dx(x), dy(static_cast<size_t>(s.m * s.n));
  // Twice: the second call reuses the cached cuBLASLt plan.
  gpu_->Matmul({dx.ptr, s.m, wg->get(), dy.ptr});
  gpu_->Matmul({dx.ptr, s.m, wg->get(), dy.ptr});
  const float tol = s.dtype == DType::kF32 ? 1e-3f : 2e-2f;
  ExpectClose(dy.Host(), want, tol, tol,
              "matmul " + std::string(DTypeName(s.dtype)) + " m" + std::to_string(s.m) + " n" +
                  std::to_string(s.n) + " k" + std::to_string(s.k));
}

TEST_F(MatmulGpuTest, Olmo7bShapesBf16) {
  OLMO_SKIP_WITHOUT_GPU();
  RunCase({1, 4096, 4096, DType::kBF16, 1});    // o_proj, decode
  RunCase({3, 12288, 4096, DType::kBF16, 3});   // fused q, k, v
  RunCase({7, 22016, 4096, DType::kBF16, 2});   // fused gate, up
  RunCase({5, 4096, 11008, DType::kBF16, 1});   // down_proj
  RunCase({130, 4096, 4096, DType::kBF16, 1});  // a prefill chunk
}

TEST_F(MatmulGpuTest, OddSizesAndDtypes) {
  OLMO_SKIP_WITHOUT_GPU();
  RunCase({33, 257, 96, DType::kBF16, 1});
  RunCase({1, 1, 8, DType::kBF16, 1});
  RunCase({3, 130, 70, DType::kF32, 2});
  RunCase({17, 1000, 512, DType::kF32, 1});
  RunCase({9, 100, 64, DType::kF16, 1});
}

TEST_F(MatmulGpuTest, PackWeightRejectsMismatchedParts) {
  OLMO_SKIP_WITHOUT_GPU();
  std::vector<uint16_t> a(64), b(64);
  WeightView parts[2] = {{a.data(), DType::kBF16, 8, 8}, {b.data(), DType::kBF16, 4, 16}};
  EXPECT_FALSE(gpu_->PackWeight(parts).ok());
  WeightView bad{a.data(), DType::kI32, 8, 8};
  EXPECT_FALSE(gpu_->PackWeight({&bad, 1}).ok());
}

}  // namespace
}  // namespace olmo::kernels::gpu_test
