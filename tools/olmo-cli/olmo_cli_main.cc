// olmo-cli: the command-line client of olmo-coordinator's client API. See --help.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "olmo/v1/inference.grpc.pb.h"
#include "tools/common/flag_table.h"

namespace {

struct Args {
  std::string server = "127.0.0.1:50051";
  std::string tls_ca;
  double timeout_s = 0;  // 0: none for generate/chat, 10 s for the others
  bool json = false;
  std::string request_id;
  int64_t max_tokens = 0;
  double temperature = -1, top_p = -1, min_p = -1;
  int64_t top_k = -1, seed = -1, logprobs = 0, min_tokens = 0, priority = 0;
  double repetition_penalty = 0, presence_penalty = 0, frequency_penalty = 0;
  std::string stop, system;
  bool ignore_eos = false, allow_special = false, ids = false;
  bool help = false;
};

const char* kUsage =
    "olmo-cli: client of an olmo-coordinator.\n\n"
    "  olmo-cli [flags] generate TEXT      stream a completion (--ids: TEXT is token ids)\n"
    "  olmo-cli [flags] chat [MESSAGE]     one chat turn, or an interactive chat on stdin\n"
    "  olmo-cli [flags] tokenize TEXT      token ids of TEXT\n"
    "  olmo-cli [flags] detokenize ID...   text of token ids\n"
    "  olmo-cli [flags] health             SERVING (exit 0) or NOT_SERVING (exit 1)\n"
    "  olmo-cli [flags] stats | info       GetStats / GetModelInfo as JSON\n"
    "  olmo-cli [flags] abort REQUEST_ID\n\n"
    "With --json, generate/chat print one JSON object per streamed response:\n"
    "  {request_id, text, token_ids, logprobs, finish_reason, matched_stop, usage}\n\nFlags:\n";

int Error(const std::string& what) {
  std::fprintf(stderr, "olmo-cli: error: %s\n", what.c_str());
  return 2;
}

int RpcError(const char* rpc, const grpc::Status& st) {
  static const char* kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                                 "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
                                 "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  int code = st.error_code();
  std::fprintf(stderr, "olmo-cli: %s failed: %s: %s\n", rpc,
               code >= 0 && code <= 16 ? kNames[code] : "?", st.error_message().c_str());
  return 1;
}

std::string FinishName(olmo::v1::FinishReason f) {
  switch (f) {
    case olmo::v1::FINISH_REASON_STOP: return "stop";
    case olmo::v1::FINISH_REASON_LENGTH: return "length";
    case olmo::v1::FINISH_REASON_ABORT: return "abort";
    case olmo::v1::FINISH_REASON_SHUTDOWN: return "shutdown";
    default: return "";
  }
}

void FillSampling(const Args& a, olmo::v1::SamplingParams* s) {
  if (a.max_tokens > 0) s->set_max_tokens(static_cast<int32_t>(a.max_tokens));
  if (a.temperature >= 0) s->set_temperature(static_cast<float>(a.temperature));
  if (a.top_p >= 0) s->set_top_p(static_cast<float>(a.top_p));
  if (a.min_p >= 0) s->set_min_p(static_cast<float>(a.min_p));
  if (a.top_k >= 0) s->set_top_k(static_cast<int32_t>(a.top_k));
  if (a.seed >= 0) s->set_seed(static_cast<uint64_t>(a.seed));
  if (a.repetition_penalty > 0) s->set_repetition_penalty(static_cast<float>(a.repetition_penalty));
  if (a.presence_penalty != 0) s->set_presence_penalty(static_cast<float>(a.presence_penalty));
  if (a.frequency_penalty != 0) s->set_frequency_penalty(static_cast<float>(a.frequency_penalty));
  s->set_logprobs(static_cast<int32_t>(a.logprobs));
  s->set_min_tokens(static_cast<int32_t>(a.min_tokens));
  if (!a.stop.empty()) s->add_stop(a.stop);
  s->set_ignore_eos(a.ignore_eos);
  s->set_allow_special_tokens(a.allow_special);
}

// Streams one Generate/Chat call; returns the exit code and the full text.
template <typename Reader>
int Stream(const Args& a, Reader* reader, grpc::ClientContext* ctx, std::string* text) {
  olmo::v1::GenerateResponse r;
  while (reader->Read(&r)) {
    *text += r.text();
    if (a.json) {
      nlohmann::ordered_json j;
      j["request_id"] = r.request_id();
      j["text"] = r.text();
      std::vector<int32_t> ids;
      std::vector<float> lps;
      for (const auto& t : r.tokens()) {
        ids.push_back(t.id());
        lps.push_back(t.logprob());
      }
      j["token_ids"] = ids;
      j["logprobs"] = lps;
      j["finish_reason"] = FinishName(r.finish_reason());
      if (r.finish_reason() != olmo::v1::FINISH_REASON_UNSPECIFIED) {
        j["matched_stop"] = r.matched_stop();
        j["usage"] = {{"prompt_tokens", r.usage().prompt_tokens()},
                      {"completion_tokens", r.usage().completion_tokens()}};
      }
      std::cout << j.dump() << std::endl;
    } else {
      std::cout << r.text() << std::flush;
      if (r.finish_reason() != olmo::v1::FINISH_REASON_UNSPECIFIED) {
        std::cout << "\n";
        std::fprintf(stderr, "[%s: finish %s, %d prompt + %d completion tokens]\n",
                     r.request_id().c_str(), FinishName(r.finish_reason()).c_str(),
                     r.usage().prompt_tokens(), r.usage().completion_tokens());
      }
    }
  }
  grpc::Status st = reader->Finish();
  return st.ok() ? 0 : RpcError("Generate", st);
}

void SetDeadline(const Args& a, grpc::ClientContext* ctx, double fallback) {
  const double t = a.timeout_s > 0 ? a.timeout_s : fallback;
  if (t > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(t * 1000)));
  }
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.always_print_primitive_fields = true;
  o.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  olmo::tools::FlagTable f;
  f.Add("server", &a.server, "coordinator client address host:port");
  f.Add("tls-ca", &a.tls_ca, "PEM root certificate: connect with TLS");
  f.Add("timeout-s", &a.timeout_s, "RPC deadline in seconds (0: none for generate/chat)");
  f.Add("json", &a.json, "machine-readable output");
  f.Add("request-id", &a.request_id, "request id (generated by the server when empty)");
  f.Add("max-tokens", &a.max_tokens, "output tokens at most (0: the remaining context)");
  f.Add("temperature", &a.temperature, "0 = greedy (unset: 1)");
  f.Add("top-p", &a.top_p, "nucleus sampling mass in (0, 1]");
  f.Add("top-k", &a.top_k, "keep the k most likely tokens (0: off)");
  f.Add("min-p", &a.min_p, "drop tokens below min_p x the top probability");
  f.Add("seed", &a.seed, "sampling seed (unset: chosen by the server)");
  f.Add("repetition-penalty", &a.repetition_penalty, "HF repetition penalty (> 0)");
  f.Add("presence-penalty", &a.presence_penalty, "OpenAI presence penalty [-2, 2]");
  f.Add("frequency-penalty", &a.frequency_penalty, "OpenAI frequency penalty [-2, 2]");
  f.Add("min-tokens", &a.min_tokens, "no stop before this many tokens");
  f.Add("logprobs", &a.logprobs, "top logprobs per token (<= 20)");
  f.Add("stop", &a.stop, "a stop string");
  f.Add("ignore-eos", &a.ignore_eos, "do not stop at the model's EOS");
  f.Add("allow-special", &a.allow_special, "added-token text in the prompt becomes control tokens");
  f.Add("ids", &a.ids, "generate: TEXT is comma- or space-separated token ids");
  f.Add("system", &a.system, "chat: a system message");
  f.Add("priority", &a.priority, "lower runs first");
  f.Add("help", &a.help, "print this help");
  auto pos = f.Parse(argc, argv);
  if (!pos.ok()) return Error(std::string(pos.status().message()));
  if (a.help || pos->empty()) {
    std::printf("%s%s", kUsage, f.Help().c_str());
    return a.help ? 0 : 2;
  }
  const std::string cmd = (*pos)[0];
  std::vector<std::string> rest(pos->begin() + 1, pos->end());
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!a.tls_ca.empty()) {
    std::ifstream in(a.tls_ca);
    if (!in) return Error("--tls-ca: cannot read " + a.tls_ca);
    std::stringstream ss;
    ss << in.rdbuf();
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ss.str();
    creds = grpc::SslCredentials(o);
  }
  grpc::ChannelArguments cargs;
  cargs.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(a.server, creds, cargs);
  auto stub = olmo::v1::Inference::NewStub(channel);

  if (cmd == "health") {
    auto h = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    SetDeadline(a, &ctx, 5);
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status st = h->Check(&ctx, req, &resp);
    if (!st.ok()) return RpcError("Health.Check", st);
    const bool serving = resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
    std::printf("%s\n", serving ? "SERVING" : "NOT_SERVING");
    return serving ? 0 : 1;
  }
  if (cmd == "stats" || cmd == "info") {
    grpc::ClientContext ctx;
    SetDeadline(a, &ctx, 10);
    grpc::Status st;
    std::string out;
    if (cmd == "stats") {
      olmo::v1::Stats s;
      st = stub->GetStats(&ctx, olmo::v1::GetStatsRequest(), &s);
      out = ToJson(s);
    } else {
      olmo::v1::ModelInfo m;
      st = stub->GetModelInfo(&ctx, olmo::v1::GetModelInfoRequest(), &m);
      out = ToJson(m);
    }
    if (!st.ok()) return RpcError(cmd == "stats" ? "GetStats" : "GetModelInfo", st);
    std::printf("%s", out.c_str());
    return 0;
  }
  if (cmd == "tokenize") {
    if (rest.size() != 1) return Error("tokenize takes one TEXT argument");
    grpc::ClientContext ctx;
    SetDeadline(a, &ctx, 10);
    olmo::v1::TokenizeRequest req;
    req.set_text(rest[0]);
    req.set_allow_special_tokens(a.allow_special);
    olmo::v1::TokenizeResponse resp;
    grpc::Status st = stub->Tokenize(&ctx, req, &resp);
    if (!st.ok()) return RpcError("Tokenize", st);
    std::vector<int32_t> ids(resp.ids().begin(), resp.ids().end());
    std::printf("%s\n", nlohmann::json(ids).dump().c_str());
    return 0;
  }
  if (cmd == "detokenize") {
    olmo::v1::DetokenizeRequest req;
    for (const auto& s : rest) {
      try {
        req.add_ids(std::stoi(s));
      } catch (...) {
        return Error("detokenize: not a token id: " + s);
      }
    }
    grpc::ClientContext ctx;
    SetDeadline(a, &ctx, 10);
    olmo::v1::DetokenizeResponse resp;
    grpc::Status st = stub->Detokenize(&ctx, req, &resp);
    if (!st.ok()) return RpcError("Detokenize", st);
    std::printf("%s\n", resp.text().c_str());
    return 0;
  }
  if (cmd == "abort") {
    if (rest.size() != 1) return Error("abort takes one REQUEST_ID");
    grpc::ClientContext ctx;
    SetDeadline(a, &ctx, 10);
    olmo::v1::AbortRequest req;
    req.set_request_id(rest[0]);
    olmo::v1::AbortResponse resp;
    grpc::Status st = stub->Abort(&ctx, req, &resp);
    if (!st.ok()) return RpcError("Abort", st);
    std::printf("%s\n", resp.found() ? "aborted" : "not found");
    return resp.found() ? 0 : 1;
  }
  if (cmd == "generate") {
    if (rest.size() != 1) return Error("generate takes one TEXT argument (quote it)");
    olmo::v1::GenerateRequest req;
    req.set_request_id(a.request_id);
    if (a.ids) {
      std::string s = rest[0];
      for (char& c : s) {
        if (c == ',') c = ' ';
      }
      std::istringstream in(s);
      std::string tok;
      while (in >> tok) {
        try {
          req.mutable_token_ids()->add_ids(std::stoi(tok));
        } catch (...) {
          return Error("--ids: not a token id: " + tok);
        }
      }
    } else {
      req.set_text(rest[0]);
    }
    req.set_priority(static_cast<int32_t>(a.priority));
    FillSampling(a, req.mutable_sampling());
    grpc::ClientContext ctx;
    SetDeadline(a, &ctx, 0);
    auto reader = stub->Generate(&ctx, req);
    std::string text;
    return Stream(a, reader.get(), &ctx, &text);
  }
  if (cmd == "chat") {
    olmo::v1::ChatRequest req;
    if (!a.system.empty()) {
      auto* m = req.add_messages();
      m->set_role("system");
      m->set_content(a.system);
    }
    FillSampling(a, req.mutable_sampling());
    req.set_priority(static_cast<int32_t>(a.priority));
    const bool interactive = rest.empty();
    std::string line = interactive ? "" : rest[0];
    while (true) {
      if (interactive) {
        std::fprintf(stderr, "> ");
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
      }
      auto* m = req.add_messages();
      m->set_role("user");
      m->set_content(line);
      grpc::ClientContext ctx;
      SetDeadline(a, &ctx, 0);
      auto reader = stub->Chat(&ctx, req);
      std::string text;
      int rc = Stream(a, reader.get(), &ctx, &text);
      if (rc != 0 || !interactive) return rc;
      auto* reply = req.add_messages();
      reply->set_role("assistant");
      reply->set_content(text);
    }
    return 0;
  }
  return Error("unknown command '" + cmd + "' (see --help)");
}
