// Watchdog end to end (run by expect_watchdog_abort.sh with 2 ranks): rank 1 sleeps far longer
// than the 2 s watchdog timeout before joining an allreduce, so rank 0's watchdog must log the
// hang (rank, collective, last step id) and MPI_Abort the job. Reaching the end means it did not.
#include <chrono>
#include <cstdio>
#include <thread>

#include "worker/comm/mpi_comm.h"

int main(int argc, char** argv) {
  using namespace olmo::comm;
  auto env = MpiEnvironment::Create(&argc, &argv);
  if (!env.ok()) {
    std::fprintf(stderr, "%s\n", env.status().ToString().c_str());
    return 2;
  }
  const int rank = (*env)->world_rank();
  MpiCommOptions options;
  options.watchdog_timeout_s = 2.0;
  auto g = MakeGroupComms(olmo::ParallelConfig{(*env)->world_size(), 1, rank}, options);
  if (!g.ok()) {
    std::fprintf(stderr, "%s\n", g.status().ToString().c_str());
    return 2;
  }
  g->tp->SetStepId(123);
  float x = 1.0f;
  if (!g->tp->AllReduceSum(&x, 1).ok()) return 2;  // a quick one: must not fire
  std::printf("rank %d: first allreduce done (%g)\n", rank, x);
  std::fflush(stdout);
  g->tp->SetStepId(124);
  if (rank == 1) std::this_thread::sleep_for(std::chrono::seconds(20));
  absl::Status s = g->tp->AllReduceSum(&x, 1);
  std::printf("rank %d: WATCHDOG_DID_NOT_FIRE (%s)\n", rank, s.ToString().c_str());
  return 0;
}
