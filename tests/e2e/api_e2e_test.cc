// Client API behaviour over loopback (label e2e) on one coordinator and a one-rank group: bad
// requests get INVALID_ARGUMENT naming the field and the service keeps serving (invalid UTF-8
// cannot reach the service: proto3 strings are checked by protobuf; RequestBuilder tests cover
// it in memory); stop strings
// across token boundaries; stop ids and min_tokens; deadline expiry, cancellation during prefill
// and decode, Abort, and a client that stops reading — each frees its KV blocks.
#include <future>
#include <sstream>

#include "tests/e2e/cluster.h"

namespace olmo::testing {
namespace {

class ApiE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new Cluster({"--stall-timeout-s", "1"});
    ASSERT_TRUE(cluster_->ok()) << cluster_->Logs();
    cluster_->AddGroup(1, 1, "api");
    ASSERT_TRUE(cluster_->WaitGroups(1)) << cluster_->Logs();
  }
  static void TearDownTestSuite() { delete cluster_; }

  static v1::GenerateRequest Ids(std::vector<int32_t> ids, int max_tokens) {
    v1::GenerateRequest r;
    for (int32_t t : ids) r.mutable_token_ids()->add_ids(t);
    r.mutable_sampling()->set_max_tokens(max_tokens);
    r.mutable_sampling()->set_temperature(0.0f);
    return r;
  }
  std::string Detokenize(int32_t id) {
    grpc::ClientContext ctx;
    v1::DetokenizeRequest req;
    req.add_ids(id);
    v1::DetokenizeResponse resp;
    EXPECT_TRUE(cluster_->stub()->Detokenize(&ctx, req, &resp).ok());
    return resp.text();
  }
  // Waits until no request runs and no KV block is referenced.
  void ExpectAllReleased() {
    v1::Stats s;
    for (int i = 0; i < 100; ++i) {
      s = cluster_->Stats();
      if (s.running() == 0 && s.waiting() == 0 && s.groups_size() == 1 &&
          s.groups(0).full().used() == 0 && s.groups(0).sliding().used() == 0) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "blocks still held: " << s.DebugString();
  }
  static Cluster* cluster_;
};
Cluster* ApiE2E::cluster_ = nullptr;

const std::vector<int32_t> kPrompt = {791, 6864, 315, 9822, 374, 12366, 13, 578, 6864, 315};

TEST_F(ApiE2E, BadRequestsNameTheFieldAndTheServiceKeepsServing) {
  struct Bad {
    std::string field;
    std::function<void(v1::GenerateRequest*)> edit;
  };
  const std::vector<Bad> cases = {
      {"text", [](v1::GenerateRequest* r) { r->set_text(""); }},
      {"token_ids", [](v1::GenerateRequest* r) { r->mutable_token_ids()->clear_ids(); }},
      {"token_ids", [](v1::GenerateRequest* r) { r->mutable_token_ids()->add_ids(100278); }},
      {"token_ids", [](v1::GenerateRequest* r) { r->mutable_token_ids()->add_ids(-3); }},
      {"max_tokens", [](v1::GenerateRequest* r) { r->mutable_sampling()->set_max_tokens(-1); }},
      {"max_tokens", [](v1::GenerateRequest* r) { r->mutable_sampling()->set_max_tokens(0); }},
      {"max_tokens",
       [](v1::GenerateRequest* r) { r->mutable_sampling()->set_max_tokens(1 << 30); }},
      {"max_tokens",
       [](v1::GenerateRequest* r) { r->mutable_sampling()->set_max_tokens(4096 - 4); }},
      {"temperature",
       [](v1::GenerateRequest* r) { r->mutable_sampling()->set_temperature(-0.5f); }},
      {"top_p", [](v1::GenerateRequest* r) { r->mutable_sampling()->set_top_p(0.0f); }},
      {"top_p", [](v1::GenerateRequest* r) { r->mutable_sampling()->set_top_p(1.5f); }},
      {"logprobs", [](v1::GenerateRequest* r) { r->mutable_sampling()->set_logprobs(21); }},
      {"min_p", [](v1::GenerateRequest* r) { r->mutable_sampling()->set_min_p(2.0f); }},
      {"stop",
       [](v1::GenerateRequest* r) {
         for (int i = 0; i < 17; ++i) r->mutable_sampling()->add_stop("s" + std::to_string(i));
       }},
      {"stop",
       [](v1::GenerateRequest* r) { r->mutable_sampling()->add_stop(std::string(300, 'x')); }},
      {"stop", [](v1::GenerateRequest* r) { r->mutable_sampling()->add_stop(""); }},
      {"stop_token_ids",
       [](v1::GenerateRequest* r) { r->mutable_sampling()->add_stop_token_ids(1 << 20); }},
      {"input", [](v1::GenerateRequest* r) { r->clear_input(); }},
  };
  for (const Bad& b : cases) {
    v1::GenerateRequest r = Ids({1, 2, 3, 4, 5}, 4);
    b.edit(&r);
    Completion c = Generate(cluster_->stub(), r, 10);
    EXPECT_EQ(c.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << b.field << ": " << c.status.error_message();
    EXPECT_NE(c.status.error_message().find(b.field), std::string::npos)
        << "message does not name " << b.field << ": " << c.status.error_message();
    EXPECT_EQ(c.responses, 0);
  }
  Completion ok = Generate(cluster_->stub(), Ids({1, 2, 3, 4, 5}, 4));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.ids.size(), 4u);
  EXPECT_EQ(cluster_->Health(), "SERVING");
}

TEST_F(ApiE2E, StopStringSpanningTwoTokensIsExcludedAndEndsTheStream) {
  Completion full = Generate(cluster_->stub(), Ids(kPrompt, 40));
  ASSERT_TRUE(full.status.ok());
  // A stop string made of the end of token k's text and the start of token k+1's.
  for (size_t k = 2; k + 1 < full.ids.size(); ++k) {
    std::string a = Detokenize(full.ids[k]), b = Detokenize(full.ids[k + 1]);
    auto printable = [](const std::string& s) {
      if (s.size() < 2) return false;
      for (unsigned char ch : s) {
        if (ch < 0x21 || ch > 0x7e) return false;
      }
      return true;
    };
    if (!printable(a) || !printable(b)) continue;
    const std::string stop = a.substr(a.size() - 2) + b.substr(0, 2);
    const size_t at = full.text.find(stop);
    ASSERT_NE(at, std::string::npos);
    v1::GenerateRequest r = Ids(kPrompt, 40);
    r.mutable_sampling()->add_stop(stop);
    Completion c = Generate(cluster_->stub(), r);
    ASSERT_TRUE(c.status.ok());
    EXPECT_EQ(c.finish, v1::FINISH_REASON_STOP);
    EXPECT_EQ(c.matched_stop, stop);
    EXPECT_EQ(c.text, full.text.substr(0, at));
    EXPECT_LE(c.ids.size(), k + 2);
    EXPECT_EQ(c.completion_tokens, static_cast<int>(c.ids.size()));
    ExpectAllReleased();
    return;
  }
  GTEST_SKIP() << "no two consecutive printable tokens in the output";
}

TEST_F(ApiE2E, StopTokenIdsMinTokensAndIgnoreEos) {
  Completion full = Generate(cluster_->stub(), Ids(kPrompt, 12));
  ASSERT_TRUE(full.status.ok());
  ASSERT_EQ(full.ids.size(), 12u);
  const int32_t stop_id = full.ids[2];
  size_t first = 0;
  while (full.ids[first] != stop_id) ++first;
  v1::GenerateRequest r = Ids(kPrompt, 12);
  r.mutable_sampling()->add_stop_token_ids(stop_id);
  Completion stopped = Generate(cluster_->stub(), r);
  ASSERT_TRUE(stopped.status.ok());
  EXPECT_EQ(stopped.finish, v1::FINISH_REASON_STOP);
  EXPECT_EQ(stopped.ids.size(), first + 1);  // the stop token is reported, not in the text
  EXPECT_EQ(stopped.matched_stop, Detokenize(stop_id));
  // min_tokens bans the stop id until that many tokens exist.
  r.mutable_sampling()->set_min_tokens(6);
  Completion banned = Generate(cluster_->stub(), r);
  ASSERT_TRUE(banned.status.ok());
  EXPECT_GE(banned.ids.size(), 6u);
  for (size_t i = 0; i + 1 < std::min<size_t>(6, banned.ids.size()); ++i) {
    EXPECT_NE(banned.ids[i], stop_id) << i;
  }
  // ignore_eos keeps the request's own stop ids.
  r.mutable_sampling()->set_min_tokens(0);
  r.mutable_sampling()->set_ignore_eos(true);
  Completion ignore = Generate(cluster_->stub(), r);
  ASSERT_TRUE(ignore.status.ok());
  EXPECT_EQ(ignore.ids.size(), first + 1);
  ExpectAllReleased();
}

TEST_F(ApiE2E, DeadlineExpiryFreesBlocks) {
  v1::GenerateRequest r = Ids(kPrompt, 3000);
  r.mutable_sampling()->set_ignore_eos(true);
  Completion c = Generate(cluster_->stub(), r, 0.5);
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ExpectAllReleased();
}

TEST_F(ApiE2E, CancelDuringPrefillAndDecodeFreesBlocks) {
  // Decode: cancel after the first response.
  {
    grpc::ClientContext ctx;
    v1::GenerateRequest r = Ids(kPrompt, 3000);
    r.mutable_sampling()->set_ignore_eos(true);
    auto reader = cluster_->stub()->Generate(&ctx, r);
    v1::GenerateResponse resp;
    ASSERT_TRUE(reader->Read(&resp));
    ctx.TryCancel();
    while (reader->Read(&resp)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  ExpectAllReleased();
  // Prefill: a 3000-token prompt, cancelled right away.
  {
    grpc::ClientContext ctx;
    std::vector<int32_t> ids(3000);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919) % 100000);
    auto reader = cluster_->stub()->Generate(&ctx, Ids(ids, 8));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ctx.TryCancel();
    v1::GenerateResponse resp;
    while (reader->Read(&resp)) {
    }
    reader->Finish();
  }
  ExpectAllReleased();
}

TEST_F(ApiE2E, AbortEndsTheStreamWithFinishReasonAbort) {
  grpc::ClientContext ctx;
  v1::GenerateRequest r = Ids(kPrompt, 3000);
  r.set_request_id("abort-me");
  r.mutable_sampling()->set_ignore_eos(true);
  auto reader = cluster_->stub()->Generate(&ctx, r);
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.request_id(), "abort-me");
  {
    grpc::ClientContext actx;
    v1::AbortRequest a;
    a.set_request_id("abort-me");
    v1::AbortResponse ar;
    ASSERT_TRUE(cluster_->stub()->Abort(&actx, a, &ar).ok());
    EXPECT_TRUE(ar.found());
  }
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  while (reader->Read(&resp)) finish = resp.finish_reason();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(finish, v1::FINISH_REASON_ABORT);
  ExpectAllReleased();
}

TEST_F(ApiE2E, ClientThatStopsReadingIsCancelledWithResourceExhausted) {
  // Without BDP probing the client's transport grows no window while the application does not
  // read, so the server's writes really wait on this client.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto channel = grpc::CreateCustomChannel(cluster_->client_address(),
                                           grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Inference::NewStub(channel);
  grpc::ClientContext ctx;
  v1::GenerateRequest r = Ids(kPrompt, 4000);
  r.mutable_sampling()->set_ignore_eos(true);
  r.mutable_sampling()->set_logprobs(20);  // big responses fill the flow-control window fast
  auto reader = stub->Generate(&ctx, r);
  std::this_thread::sleep_for(std::chrono::seconds(8));  // not reading
  v1::GenerateResponse resp;
  while (reader->Read(&resp)) {
  }
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  ExpectAllReleased();
}

}  // namespace
}  // namespace olmo::testing

namespace olmo::testing {
namespace {

std::string RunCli(const std::string& server, const std::string& args, int* rc) {
  const std::string cmd = kBin + "olmo-cli/olmo-cli --server " + server + " " + args + " 2>&1";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// olmo-cli against the service: health, tokenize (equal to the Tokenize RPC), a streamed
// generate --json equal to the same greedy request over gRPC, stats as JSON, and a bad request's
// status and field on stderr with a non-zero exit.
TEST_F(ApiE2E, CliCommands) {
  const std::string server = cluster_->client_address();
  int rc = -1;
  EXPECT_EQ(RunCli(server, "health", &rc), "SERVING\n");
  EXPECT_EQ(rc, 0);

  std::string out = RunCli(server, "tokenize 'The capital of France is'", &rc);
  ASSERT_EQ(rc, 0) << out;
  grpc::ClientContext ctx;
  v1::TokenizeRequest treq;
  treq.set_text("The capital of France is");
  v1::TokenizeResponse tresp;
  ASSERT_TRUE(cluster_->stub()->Tokenize(&ctx, treq, &tresp).ok());
  EXPECT_EQ(nlohmann::json::parse(out).get<std::vector<int32_t>>(),
            std::vector<int32_t>(tresp.ids().begin(), tresp.ids().end()));

  out = RunCli(server, "--json generate 'The capital of France is' --max-tokens 6 --temperature 0",
               &rc);
  ASSERT_EQ(rc, 0) << out;
  std::vector<int32_t> ids;
  std::string finish;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    for (int32_t id : j["token_ids"]) ids.push_back(id);
    finish = j["finish_reason"];
  }
  v1::GenerateRequest greq;
  greq.set_text("The capital of France is");
  greq.mutable_sampling()->set_max_tokens(6);
  greq.mutable_sampling()->set_temperature(0.0f);
  Completion want = Generate(cluster_->stub(), greq);
  EXPECT_EQ(ids, want.ids);
  EXPECT_EQ(finish, "length");

  out = RunCli(server, "stats", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(nlohmann::json::parse(out).contains("groups")) << out;

  out = RunCli(server, "generate hi --top-p 1.5 --max-tokens 4", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("INVALID_ARGUMENT"), std::string::npos) << out;
  EXPECT_NE(out.find("top_p"), std::string::npos) << out;
}

}  // namespace
}  // namespace olmo::testing
