// CUDA LogSoftmax against the CPU op (f32 reduction): the Olmo vocab (100278), in place, a
// large-magnitude row (max subtraction), and tiny rows.
#include "tests/gpu/gpu_test_util.h"

namespace olmo::kernels::gpu_test {
namespace {

class LogSoftmaxGpuTest : public GpuOpsTest {};

TEST_F(LogSoftmaxGpuTest, AgainstCpuInPlaceAndOutOfPlace) {
  OLMO_SKIP_WITHOUT_GPU();
  for (int64_t n : {100278, 50, 1}) {
    const int64_t rows = 3;
    std::vector<float> logits = Random(static_cast<size_t>(rows * n), 9, 4.0f);
    for (int64_t j = 0; j < n; ++j) logits[static_cast<size_t>(n + j)] += 1000.0f;
    std::vector<float> want(logits.size());
    cpu_->LogSoftmax({logits.data(), want.data(), rows, n});
    Dev<float> dl(logits), dout(logits.size());
    gpu_->LogSoftmax({dl.ptr, dout.ptr, rows, n});
    ExpectClose(dout.Host(), want, 1e-5f, 1e-4f, "log_softmax n " + std::to_string(n));
    gpu_->LogSoftmax({dl.ptr, dl.ptr, rows, n});
    ExpectClose(dl.Host(), want, 1e-5f, 1e-4f, "log_softmax in place n " + std::to_string(n));
  }
}

}  // namespace
}  // namespace olmo::kernels::gpu_test
