// SIGTERM drain over loopback (label e2e): the coordinator turns NOT_SERVING, refuses new requests
// with UNAVAILABLE, lets in-flight requests finish until --drain-seconds, ends the rest with
// finish reason shutdown, shuts the worker group down and exits 0; no process is left behind.
#include <future>

#include "tests/e2e/cluster.h"

namespace olmo::testing {
namespace {

v1::GenerateRequest Long(int max_tokens) {
  v1::GenerateRequest r;
  for (int32_t t : {791, 6864, 315, 9822, 374}) r.mutable_token_ids()->add_ids(t);
  r.mutable_sampling()->set_max_tokens(max_tokens);
  r.mutable_sampling()->set_ignore_eos(true);
  r.mutable_sampling()->set_temperature(0.0f);
  return r;
}

TEST(DrainE2E, SigtermFinishesShortRequestsAndShutsDownLongOnes) {
  Cluster c({"--drain-seconds", "2"});
  ASSERT_TRUE(c.ok()) << c.Logs();
  c.AddGroup(1, 1, "d", {"--threads", "1"});
  ASSERT_TRUE(c.WaitGroups(1)) << c.Logs();
  // One request that ends well inside the drain time, one that cannot (4000 tokens).
  auto short_req = std::async(std::launch::async, [&] { return Generate(c.stub(), Long(20)); });
  grpc::ClientContext long_ctx;
  auto long_reader = c.stub()->Generate(&long_ctx, Long(4000));
  v1::GenerateResponse first;
  ASSERT_TRUE(long_reader->Read(&first));
  kill(c.coordinator().pid, SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(c.Health(), "NOT_SERVING");
  Completion refused = Generate(c.stub(), Long(4), 5);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);

  Completion s = short_req.get();
  EXPECT_TRUE(s.status.ok());
  EXPECT_EQ(s.finish, v1::FINISH_REASON_LENGTH);
  Completion l = Drain(long_reader.get());
  EXPECT_TRUE(l.status.ok()) << l.status.error_message();
  EXPECT_EQ(l.finish, v1::FINISH_REASON_SHUTDOWN);
  EXPECT_EQ(l.finishes, 1);
  EXPECT_EQ(l.completion_tokens, static_cast<int>(l.ids.size()) + first.tokens_size());

  EXPECT_EQ(c.coordinator().Wait(20), 0) << c.Logs();
  EXPECT_EQ(c.group(0).Wait(20), 0) << "the worker group did not shut down\n" << c.Logs();
}

}  // namespace
}  // namespace olmo::testing

namespace olmo::testing {
namespace {

// A request whose client sets no deadline gets the service's --default-deadline-s: it is cancelled
// with DEADLINE_EXCEEDED and its blocks are freed.
TEST(DeadlineE2E, DefaultDeadlineAppliesWithoutAClientDeadline) {
  Cluster c({"--default-deadline-s", "1"});
  ASSERT_TRUE(c.ok()) << c.Logs();
  c.AddGroup(1, 1, "dl");
  ASSERT_TRUE(c.WaitGroups(1)) << c.Logs();
  grpc::ClientContext ctx;  // no deadline
  auto reader = c.stub()->Generate(&ctx, Long(4000));
  Completion got = Drain(reader.get());
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << got.status.error_message();
  EXPECT_GT(got.ids.size(), 0u);
  EXPECT_LT(got.ids.size(), 4000u);
  for (int i = 0; i < 50; ++i) {
    v1::Stats s = c.Stats();
    if (s.running() == 0 && s.groups_size() == 1 && s.groups(0).full().used() == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "blocks still held: " << c.Stats().DebugString();
}

}  // namespace
}  // namespace olmo::testing
