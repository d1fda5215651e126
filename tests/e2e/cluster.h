// Test cluster on loopback: an olmo-coordinator and worker groups (olmo-worker under mpirun, each
// in its own process group so a test can kill or stop it), plus gRPC client helpers. Processes
// log to files under a private temp dir; a failing test prints their tails.
#pragma once

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "olmo/v1/inference.grpc.pb.h"

extern char** environ;

namespace olmo::testing {

inline const std::string kBin = std::string(OLMO_BINARY_DIR) + "/tools/";

// A spawned process in its own process group.
struct Process {
  pid_t pid = -1;
  std::string log;
  bool Alive() const { return pid > 0 && kill(pid, 0) == 0; }
  // Waits up to `seconds` for exit; returns the exit code (-1 if still running or signalled).
  int Wait(double seconds) {
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    while (pid > 0) {
      int status = 0;
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      if (std::chrono::steady_clock::now() > until) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
  void KillGroup(int sig = SIGKILL) {
    if (pid > 0) kill(-pid, sig);
  }
  std::string Tail(size_t bytes = 3000) const {
    std::ifstream in(log);
    std::string s((std::istreambuf_iterator<char>(in)), {});
    return s.size() > bytes ? s.substr(s.size() - bytes) : s;
  }
};

// extra_env: "NAME=value" entries added to this process's environment for the child only.
inline Process Spawn(const std::vector<std::string>& argv, const std::string& log,
                     const std::vector<std::string>& extra_env = {}) {
  Process p;
  p.log = log;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  for (const auto& e : extra_env) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  if (posix_spawn(&p.pid, args[0], &fa, &attr, args.data(), env.data()) != 0) p.pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return p;
}

// The tiny demo checkpoint (random weights, real Olmo 3 tokenizer), made once per test binary.
inline const std::string& DemoModel() {
  static const std::string dir = [] {
    std::string d = ::testing::TempDir() + "/olmo_e2e_model_XXXXXX";
    if (mkdtemp(d.data()) == nullptr) return std::string();
    std::string cmd =
        kBin + "make-tiny/make-tiny --preset tiny-demo --out " + d + " --tokenizer " +
        OLMO_TEST_DATA_DIR + "/tokenizer/olmo3_instruct.tokenizer.json --chat-template " +
        OLMO_TEST_DATA_DIR + "/tokenizer/chat_templates/olmo_instruct.jinja" + " > /dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return d;
  }();
  return dir;
}

class Cluster {
 public:
  explicit Cluster(std::vector<std::string> coordinator_flags = {}) {
    // A fresh directory per cluster: PIDs are reused within a CI run, so a name made from the
    // PID could find a stale address file of an earlier test (and its coordinator's ports).
    std::string pattern = ::testing::TempDir() + "/olmo_e2e_XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) return;
    dir_ = pattern;
    const std::string addr = dir_ + "/address.json";
    std::vector<std::string> argv = {kBin + "olmo-coordinator/olmo-coordinator",
                                     "--model",
                                     DemoModel(),
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--control-listen",
                                     "127.0.0.1:0",
                                     "--address-file",
                                     addr};
    argv.insert(argv.end(), coordinator_flags.begin(), coordinator_flags.end());
    coordinator_ = Spawn(argv, dir_ + "/coordinator.log");
    for (int i = 0; i < 200 && !std::filesystem::exists(addr); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::ifstream in(addr);
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_discarded()) {
      client_ = j["client"].get<std::string>();
      control_ = j["control"].get<std::string>();
    }
    channel_ = grpc::CreateChannel(client_, grpc::InsecureChannelCredentials());
    stub_ = v1::Inference::NewStub(channel_);
  }
  ~Cluster() {
    coordinator_.KillGroup(SIGKILL);
    coordinator_.Wait(5);
    for (auto& g : groups_) {
      g.KillGroup(SIGKILL);
      g.Wait(5);
    }
    // Logs stay for a failed test (their tails are printed, the rest can be read there).
    if (!dir_.empty() && !::testing::Test::HasFailure()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  bool ok() const { return !client_.empty(); }
  // Starts a worker group of tp x pp ranks; returns its index.
  // env: "NAME=value" entries for the group's processes only.
  int AddGroup(int tp, int pp, const std::string& name, std::vector<std::string> extra = {},
               const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {"/bin/bash",
                                     std::string(OLMO_SOURCE_DIR) + "/deploy/local/mpirun.sh",
                                     std::to_string(tp * pp),
                                     kBin + "olmo-worker/olmo-worker",
                                     "--model",
                                     DemoModel(),
                                     "--tp",
                                     std::to_string(tp),
                                     "--pp",
                                     std::to_string(pp),
                                     "--coordinator",
                                     control_,
                                     "--group-name",
                                     name,
                                     "--threads",
                                     "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    groups_.push_back(Spawn(argv, dir_ + "/group_" + name + ".log", env));
    return static_cast<int>(groups_.size()) - 1;
  }
  // Waits until `n` groups are attached and the service is SERVING.
  bool WaitGroups(int n, double seconds = 60) {
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    while (std::chrono::steady_clock::now() < until) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      v1::ModelInfo info;
      if (stub_->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).ok() && info.kv_size() >= n) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  std::string Logs() const {
    std::string s = "--- coordinator ---\n" + coordinator_.Tail();
    for (const auto& g : groups_) s += "\n--- group ---\n" + g.Tail();
    return s;
  }

  v1::Inference::Stub* stub() { return stub_.get(); }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  Process& coordinator() { return coordinator_; }
  Process& group(int i) { return groups_[i]; }
  const std::string& client_address() const { return client_; }

  v1::Stats Stats() {
    grpc::ClientContext ctx;
    v1::Stats s;
    EXPECT_TRUE(stub_->GetStats(&ctx, v1::GetStatsRequest(), &s).ok());
    return s;
  }
  std::string Health() {
    auto h = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status st = h->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp);
    if (!st.ok()) return "ERROR " + st.error_message();
    return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
  }

 private:
  std::string dir_, client_, control_;
  Process coordinator_;
  std::vector<Process> groups_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

// The whole of one streamed request.
struct Completion {
  grpc::Status status;
  std::string request_id;
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
  std::string text;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  std::string matched_stop;
  int32_t prompt_tokens = 0, completion_tokens = 0;
  int responses = 0;
  int finishes = 0;  // responses carrying a finish reason (must be exactly 1)
};

inline Completion Drain(grpc::ClientReader<v1::GenerateResponse>* reader) {
  Completion c;
  v1::GenerateResponse r;
  while (reader->Read(&r)) {
    ++c.responses;
    c.request_id = r.request_id();
    for (const auto& t : r.tokens()) {
      c.ids.push_back(t.id());
      c.logprobs.push_back(t.logprob());
    }
    c.text += r.text();
    if (r.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      ++c.finishes;
      c.finish = r.finish_reason();
      c.matched_stop = r.matched_stop();
      c.prompt_tokens = r.usage().prompt_tokens();
      c.completion_tokens = r.usage().completion_tokens();
    }
  }
  c.status = reader->Finish();
  return c;
}

inline Completion Generate(v1::Inference::Stub* stub, const v1::GenerateRequest& req,
                           double timeout_s = 120) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  auto reader = stub->Generate(&ctx, req);
  return Drain(reader.get());
}

// olmo-generate on the same checkpoint (one process): the offline reference. Each line of
// `batch` is a JSON object as olmo-generate --batch takes it; returns its JSON outputs.
inline std::vector<nlohmann::json> Reference(const std::vector<nlohmann::json>& batch,
                                             const std::string& extra_flags = "") {
  const std::string in =
      ::testing::TempDir() + "/olmo_e2e_ref_" + std::to_string(getpid()) + ".jsonl";
  {
    std::ofstream out(in);
    for (const auto& j : batch) out << j.dump() << "\n";
  }
  std::string cmd = kBin + "olmo-generate/olmo-generate --model " + DemoModel() + " --batch " + in +
                    " --logprobs 2 " + extra_flags + " 2>/dev/null";
  std::vector<nlohmann::json> outs;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return outs;
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) text.append(buf, n);
  pclose(p);
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty()) outs.push_back(nlohmann::json::parse(line));
  }
  return outs;
}

// DESIGN.md §5 margin rule: tokens must match up to the first position where the reference's
// top-2 logprob margin is below 1e-4 (a near tie the two sides may break differently).
inline void ExpectGreedyMatch(const nlohmann::json& ref, const std::vector<int32_t>& got,
                              const std::string& what) {
  const auto& ids = ref["token_ids"];
  const auto& tops = ref["top_logprobs"];
  size_t n = std::min(ids.size(), got.size());
  for (size_t i = 0; i < n; ++i) {
    if (tops[i].size() >= 2) {
      double margin = tops[i][0]["logprob"].get<double>() - tops[i][1]["logprob"].get<double>();
      if (margin < 1e-4) return;  // a tie: later tokens may legitimately differ
    }
    ASSERT_EQ(ids[i].get<int32_t>(), got[i]) << what << ": token " << i;
  }
  EXPECT_EQ(ids.size(), got.size()) << what << ": output length";
}

}  // namespace olmo::testing
