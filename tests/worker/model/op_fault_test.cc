// Op failures on the backend fail the step that ran them (OpFaultTest).
#include <ostream>
#include <string>

#include "gmock/gmock.h"
#include "group_harness.h"

namespace olmo::testing {
namespace {

// An op that fails on the backend (CudaOps logs it; the next Synchronize returns it) fails the
// step that ran it, on that rank: the step must not return what the op's outputs held before
// (the last step's tokens, an old report). one_rank: only the last rank's op fails; its peers
// finish the step here (this executor reports any rank's error). In a worker group the failed
// rank ends the job and the last stage's barrier keeps tp rank 0's result of that step in
// (GroupRunner; tested by tests/mpi/expect_failed_step_abort.sh).
struct OpFault {
  Backend backend;
  int tp;
  const char* op;
  bool one_rank;
};

void PrintTo(const OpFault& f, std::ostream* os) {
  *os << f.op << " at tp " << f.tp << " on backend " << static_cast<int>(f.backend)
      << (f.one_rank ? ", last rank only" : ", every rank");
}

class OpFaultTest : public ::testing::TestWithParam<OpFault> {};

TEST_P(OpFaultTest, FailedOpFailsTheStep) {
  const OpFault f = GetParam();
  PipelineGroup g = LoadPipeline("gqa_bf16", f.tp, 1, 16, 64, f.backend);
  for (const auto& w : g.workers) ASSERT_NE(w, nullptr);
  PipelineExecutor ex(&g);
  engine::Engine engine(&ex, {16, 64, 0});
  for (int i = 0; i < 2; ++i) {
    engine::Request r;
    r.seq_id = i;
    r.prompt_ids = {1 + i, 2, 3, 4, 5};
    r.max_tokens = 8;
    r.ignore_eos = true;
    r.sampling.temperature = i == 0 ? 0.0f : 0.7f;
    r.sampling.top_k = i == 0 ? 0 : 20;
    r.sampling.seed = 3;
    ASSERT_TRUE(engine.Add(r).ok());
  }
  for (int step = 0; step < 2; ++step) {  // the prefill and a decode step run cleanly
    auto u = engine.Step();
    ASSERT_TRUE(u.ok()) << u.status();
  }
  for (int r = f.one_rank ? f.tp - 1 : 0; r < f.tp; ++r) {
    static_cast<DeviceLikeCpuOps*>(g.workers[r]->model->ops())->failing_op = f.op;
  }
  auto u = engine.Step();
  ASSERT_FALSE(u.ok()) << f.op << " failed, yet the step returned " << u->size() << " tokens";
  EXPECT_THAT(std::string(u.status().message()), ::testing::HasSubstr(f.op)) << u.status();
}

INSTANTIATE_TEST_SUITE_P(
    Ops, OpFaultTest,
    ::testing::Values(OpFault{Backend::kDeviceSampling, 1, "Sample", false},
                      OpFault{Backend::kDeviceSampling, 2, "SampleSlice", true},
                      OpFault{Backend::kDeviceGraphs, 1, "Attention", false},
                      OpFault{Backend::kDeviceGraphs, 2, "SampleSlice", true},
                      OpFault{Backend::kDeviceCollectives, 2, "Embedding", true},
                      OpFault{Backend::kDeviceStaged, 2, "Matmul", false}),
    [](const auto& info) {
      return std::string(info.param.op) + "_tp" + std::to_string(info.param.tp) +
             (info.param.one_rank ? "_one_rank" : "_every_rank") + "_backend" +
             std::to_string(static_cast<int>(info.param.backend));
    });

}  // namespace
}  // namespace olmo::testing
