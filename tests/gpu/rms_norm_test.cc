// CUDA RmsNorm (fused residual, in place), SumSquares and RmsScale (the TP split) against the
// CPU ops: f32 reductions, tolerance 1e-3 (the CPU sums in double, the GPU in f32 trees).
#include "tests/gpu/gpu_test_util.h"

namespace olmo::kernels::gpu_test {
namespace {

class RmsNormGpuTest : public GpuOpsTest {};

TEST_F(RmsNormGpuTest, FusedResidualAndInPlace) {
  OLMO_SKIP_WITHOUT_GPU();
  for (int64_t dim : {4096, 5120, 77, 1}) {
    const int64_t rows = 9;
    std::vector<float> x = Random(static_cast<size_t>(rows * dim), 4);
    std::vector<float> res = Random(x.size(), 5);
    std::vector<float> w = Random(static_cast<size_t>(dim), 6);
    std::vector<float> want(x.size());
    cpu_->RmsNorm({x.data(), res.data(), w.data(), want.data(), rows, dim, 1e-6f});
    Dev<float> dx(x), dr(res), dw(w), dout(x.size());
    gpu_->RmsNorm({dx.ptr, dr.ptr, dw.ptr, dout.ptr, rows, dim, 1e-6f});
    ExpectClose(dout.Host(), want, 1e-3f, 1e-4f, "rms_norm+residual dim " + std::to_string(dim));
    // out aliasing the residual (the residual stream updated in place), then no residual with
    // out aliasing x.
    gpu_->RmsNorm({dx.ptr, dr.ptr, dw.ptr, dr.ptr, rows, dim, 1e-6f});
    ExpectClose(dr.Host(), want, 1e-3f, 1e-4f, "rms_norm out=residual");
    cpu_->RmsNorm({x.data(), nullptr, w.data(), want.data(), rows, dim, 1e-5f});
    gpu_->RmsNorm({dx.ptr, nullptr, dw.ptr, dx.ptr, rows, dim, 1e-5f});
    ExpectClose(dx.Host(), want, 1e-3f, 1e-4f, "rms_norm in place");
  }
}

TEST_F(RmsNormGpuTest, SumSquaresAndRmsScaleWithStride) {
  OLMO_SKIP_WITHOUT_GPU();
  for (int64_t dim : {4096, 130}) {
    const int64_t rows = 7, stride = dim + 8, part = dim / 2;
    std::vector<float> x = Random(static_cast<size_t>(rows * stride), 7);
    std::vector<float> w = Random(static_cast<size_t>(part), 8);
    std::vector<float> ss_want(static_cast<size_t>(rows));
    cpu_->SumSquares({x.data(), rows, part, stride, ss_want.data()});
    Dev<float> dx(x), dw(w), dss(static_cast<size_t>(rows));
    gpu_->SumSquares({dx.ptr, rows, part, stride, dss.ptr});
    ExpectClose(dss.Host(), ss_want, 1e-3f, 1e-4f, "sum_squares dim " + std::to_string(part));
    // RmsScale with the width of the whole vector (as after the TP all-reduce).
    std::vector<float> xs = x;
    cpu_->RmsScale({xs.data(), rows, part, stride, ss_want.data(), w.data(), dim, 1e-6f});
    Dev<float> dss_exact(ss_want);
    gpu_->RmsScale({dx.ptr, rows, part, stride, dss_exact.ptr, dw.ptr, dim, 1e-6f});
    ExpectClose(dx.Host(), xs, 1e-3f, 1e-4f, "rms_scale (columns past dim untouched)");
  }
}

}  // namespace
}  // namespace olmo::kernels::gpu_test
