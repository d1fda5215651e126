// Failover over loopback (label e2e): two worker groups (tp 2 each) attached; (a) one rank of a
// group is killed with SIGKILL, (b) a whole group is SIGSTOPped (a hang, caught by missed
// heartbeats), (c) one rank fails a step alone (an injected error: the group must end itself at
// once, not when its watchdog catches the other rank waiting in the step). Every request completes,
// each stream is continuous (one finish, usage equal to the tokens received) and greedy outputs
// equal olmo-generate offline: the lost group's requests were recomputed elsewhere and resumed
// after the tokens already streamed.
#include <future>
#include <random>

#include "tests/e2e/cluster.h"

namespace olmo::testing {
namespace {

// Signals mpirun (the group's process) and its children (the ranks).
void SignalGroup(Process& group, int sig, bool only_one_rank) {
  std::string cmd = "pgrep -P " + std::to_string(group.pid);
  FILE* p = popen(cmd.c_str(), "r");
  std::vector<pid_t> children;
  int pid = 0;
  while (p != nullptr && fscanf(p, "%d", &pid) == 1) children.push_back(pid);
  if (p != nullptr) pclose(p);
  ASSERT_FALSE(children.empty()) << "no ranks under mpirun " << group.pid;
  if (only_one_rank) {
    kill(children.back(), sig);
    return;
  }
  kill(group.pid, sig);
  for (pid_t c : children) kill(c, sig);
}

enum class Strike { kKillRank, kHangGroup, kStepErrorOnRank, kStepErrorOnLeader };

void RunFailover(Strike strike) {
  const bool hang = strike == Strike::kHangGroup;
  Cluster c({"--heartbeat-timeout-s", "2", "--step-timeout-s", "10"});
  ASSERT_TRUE(c.ok()) << c.Logs();
  // The injected error: world rank 1 (a follower) or 0 (the leader, which talks to the
  // coordinator) fails the group's step 30, mid-decode. Only the victim's processes get it.
  const bool step_error =
      strike == Strike::kStepErrorOnRank || strike == Strike::kStepErrorOnLeader;
  const int fault_rank = strike == Strike::kStepErrorOnLeader ? 0 : 1;
  std::vector<std::string> env;
  if (step_error) env.push_back("OLMO_FAULT_STEP_ERROR=" + std::to_string(fault_rank) + ":30");
  c.AddGroup(2, 1, "victim", {"--heartbeat-seconds", "0.2", "--watchdog-seconds", "120"}, env);
  ASSERT_TRUE(c.WaitGroups(1)) << c.Logs();  // the victim attaches first: g0
  c.AddGroup(2, 1, "survivor", {"--heartbeat-seconds", "0.2"});
  ASSERT_TRUE(c.WaitGroups(2)) << c.Logs();

  std::mt19937 rng(5);
  std::vector<v1::GenerateRequest> reqs;
  std::vector<nlohmann::json> batch;
  for (int i = 0; i < 12; ++i) {
    std::vector<int32_t> prompt(8 + rng() % 24);
    for (auto& t : prompt) t = static_cast<int32_t>(rng() % 100000);
    v1::GenerateRequest r;
    r.set_request_id("fo-" + std::to_string(i));
    for (int32_t t : prompt) r.mutable_token_ids()->add_ids(t);
    r.mutable_sampling()->set_temperature(0.0f);
    r.mutable_sampling()->set_max_tokens(160);
    reqs.push_back(r);
    batch.push_back({{"prompt_ids", prompt}, {"max_tokens", 160}, {"temperature", 0.0}});
  }
  std::vector<std::future<Completion>> futures;
  for (const auto& r : reqs) {
    futures.push_back(
        std::async(std::launch::async, [&c, r] { return Generate(c.stub(), r, 180); }));
  }
  // Strike once both groups are decoding.
  for (int i = 0; i < 100; ++i) {
    v1::Stats s = c.Stats();
    if (s.running() >= 8) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto struck = std::chrono::steady_clock::now();
  if (!step_error) {
    SignalGroup(c.group(0), hang ? SIGSTOP : SIGKILL, /*only_one_rank=*/!hang);
  }

  std::vector<Completion> got;
  for (auto& f : futures) got.push_back(f.get());
  const auto ref = Reference(batch);
  ASSERT_EQ(ref.size(), reqs.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << i << ": " << got[i].status.error_message() << "\n"
                                    << c.Logs();
    EXPECT_EQ(got[i].finishes, 1);
    EXPECT_EQ(got[i].completion_tokens, static_cast<int>(got[i].ids.size()));
    ExpectGreedyMatch(ref[i], got[i].ids, "request " + std::to_string(i));
  }
  v1::Stats s = c.Stats();
  EXPECT_GT(s.migrations(), 0) << "the victim group ran no request when it failed";
  ASSERT_EQ(s.groups_size(), 1) << s.DebugString();
  EXPECT_EQ(s.groups(0).group_id(), "g1");
  EXPECT_EQ(c.Health(), "SERVING");
  if (hang) SignalGroup(c.group(0), SIGKILL, false);
  if (step_error) {
    // The failed rank aborts the job: mpirun exits non-zero long before the 120 s watchdog.
    const int rc = c.group(0).Wait(30);
    const double s_after =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - struck).count();
    EXPECT_GT(rc, 0) << "victim group still running (or killed by a signal) " << s_after
                     << " s after the strike\n"
                     << c.Logs();
    EXPECT_LT(s_after, 60.0);
    const std::string fault = "rank " + std::to_string(fault_rank) + ": injected fault at step 30";
    EXPECT_NE(c.group(0).Tail().find(fault), std::string::npos) << c.Logs();
  }
}

TEST(FailoverE2E, KilledRankRequestsCompleteElsewhere) { RunFailover(Strike::kKillRank); }
TEST(FailoverE2E, HungGroupRequestsCompleteElsewhere) { RunFailover(Strike::kHangGroup); }
TEST(FailoverE2E, StepErrorOnOneRankEndsGroupRequestsCompleteElsewhere) {
  RunFailover(Strike::kStepErrorOnRank);
}
TEST(FailoverE2E, StepErrorOnLeaderEndsGroupRequestsCompleteElsewhere) {
  RunFailover(Strike::kStepErrorOnLeader);
}

TEST(FailoverE2E, RequestsWaitForAGroupThenUnavailableAtDeadline) {
  Cluster c;
  ASSERT_TRUE(c.ok()) << c.Logs();
  v1::GenerateRequest r;
  r.set_text("Hello");
  r.mutable_sampling()->set_max_tokens(4);
  Completion lonely = Generate(c.stub(), r, 1.0);
  EXPECT_TRUE(lonely.status.error_code() == grpc::StatusCode::UNAVAILABLE ||
              lonely.status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
      << lonely.status.error_message();
  // A request that arrives first and a group that attaches later: it waits, then runs.
  auto pending = std::async(std::launch::async, [&] { return Generate(c.stub(), r, 60); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  c.AddGroup(1, 1, "late");
  Completion done = pending.get();
  EXPECT_TRUE(done.status.ok()) << done.status.error_message() << c.Logs();
  EXPECT_EQ(done.ids.size(), 4u);
}

}  // namespace
}  // namespace olmo::testing
