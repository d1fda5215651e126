// CUDA SwiGlu against the CPU op (element-wise f32: 1e-5 relative): intermediate 11008 and odd.
#include "tests/gpu/gpu_test_util.h"

namespace olmo::kernels::gpu_test {
namespace {

class SwiGluGpuTest : public GpuOpsTest {};

TEST_F(SwiGluGpuTest, AgainstCpu) {
  OLMO_SKIP_WITHOUT_GPU();
  for (int64_t dim : {11008, 5503, 1}) {
    const int64_t rows = 6;
    std::vector<float> gu = Random(static_cast<size_t>(rows * 2 * dim), 8, 3.0f);
    std::vector<float> want(static_cast<size_t>(rows * dim));
    cpu_->SwiGlu({gu.data(), want.data(), rows, dim});
    Dev<float> dgu(gu), dout(want.size());
    gpu_->SwiGlu({dgu.ptr, dout.ptr, rows, dim});
    ExpectClose(dout.Host(), want, 1e-5f, 1e-6f, "swiglu dim " + std::to_string(dim));
  }
}

}  // namespace
}  // namespace olmo::kernels::gpu_test
