// CUDA Embedding against the CPU op: f32 and bf16 tables (a gather: exact), a vocab slice with
// ids below, inside and past it (zeros outside), hidden 4096 and an odd width.
#include "tests/gpu/gpu_test_util.h"

namespace olmo::kernels::gpu_test {
namespace {

class EmbeddingGpuTest : public GpuOpsTest {};

TEST_F(EmbeddingGpuTest, VocabSliceF32AndBf16Tables) {
  OLMO_SKIP_WITHOUT_GPU();
  for (int64_t hidden : {4096, 77}) {
    const int64_t rows = 300, begin = 100;
    std::vector<float> table = Random(static_cast<size_t>(rows * hidden), 3);
    std::vector<uint16_t> table16 = ToBf16(table);
    std::vector<int32_t> ids = {100, 399, 5, 250, 400, 101, -1, 399};
    const int64_t n = static_cast<int64_t>(ids.size());
    Dev<int32_t> did(ids);
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      const void* host = dtype == DType::kF32 ? static_cast<const void*>(table.data())
                                              : static_cast<const void*>(table16.data());
      std::vector<float> want(static_cast<size_t>(n * hidden));
      cpu_->Embedding({ids.data(), n, {host, dtype, rows, hidden}, begin, want.data()});
      std::vector<char> bytes(static_cast<size_t>(rows * hidden * DTypeSize(dtype)));
      std::memcpy(bytes.data(), host, bytes.size());
      Dev<char> dt(bytes);
      Dev<float> dout(want.size());
      gpu_->Embedding({did.ptr, n, {dt.ptr, dtype, rows, hidden}, begin, dout.ptr});
      ExpectClose(
          dout.Host(), want, 0, 0,
          "embedding " + std::string(DTypeName(dtype)) + " hidden " + std::to_string(hidden));
    }
  }
}

}  // namespace
}  // namespace olmo::kernels::gpu_test
