// olmo-coordinator: the gRPC front door (DESIGN.md §1). Serves the client API and the worker
// control API; worker groups (olmo-worker under mpirun or srun) dial in and attach. See --help.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_format.h"
#include "coordinator/server/control_service.h"
#include "coordinator/server/inference_service.h"
#include "coordinator/service/coordinator.h"
#include "nlohmann/json.hpp"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "tools/common/files.h"
#include "tools/common/flag_table.h"

namespace {

struct Args {
  olmo::service::CoordinatorOptions o;
  std::string config_file;
  std::string listen = "127.0.0.1:50051";
  std::string control_listen = "127.0.0.1:50052";
  std::string address_file;
  std::string secret_file;
  std::string tls_cert, tls_key;
  double drain_seconds = 30;
  int64_t max_message_mib = 64;
  std::string log_level = "info";
  bool help = false;
};

olmo::tools::FlagTable MakeFlags(Args& a) {
  olmo::tools::FlagTable t;
  t.Add("model", &a.o.model_dir, "model directory (config.json, tokenizer.json, safetensors)");
  t.Add("config", &a.config_file, "JSON file of these settings (keys with '_'); flags override");
  t.Add("listen", &a.listen, "client API address; port 0 picks a free port");
  t.Add("control-listen", &a.control_listen, "worker control API address; port 0 picks one");
  t.Add("address-file", &a.address_file,
        "write {\"client\": host:port, \"control\": host:port} here once listening");
  t.Add("secret-file", &a.secret_file, "shared secret workers must present (else $OLMO_SECRET)");
  t.Add("tls-cert", &a.tls_cert, "PEM certificate chain: serve the client API over TLS");
  t.Add("tls-key", &a.tls_key, "PEM private key for --tls-cert");
  t.Add("block-size", &a.o.block_size, "KV block size in tokens");
  t.Add("kv-cache-mib", &a.o.kv_cache_mib, "CPU workers: KV cache MiB per rank");
  t.Add("kv-memory-fraction", &a.o.kv_memory_fraction,
        "GPU workers: fraction of free memory for KV blocks");
  t.Add("max-tokens-per-step", &a.o.max_tokens_per_step, "token budget of one engine step");
  t.Add("max-seqs", &a.o.max_seqs, "running sequences per group at most");
  t.Add("max-model-len", &a.o.max_model_len,
        "prompt + output tokens at most (0: the model's limit, capped by KV capacity)");
  t.Add("max-waiting", &a.o.max_waiting, "live requests at most; more get RESOURCE_EXHAUSTED");
  t.Add("max-prompt-tokens", &a.o.max_prompt_tokens, "prompt tokens at most (0: max_model_len-1)");
  t.Add("max-message-mib", &a.max_message_mib, "largest gRPC message accepted");
  t.Add("default-deadline-s", &a.o.default_deadline_s,
        "deadline of requests whose client sets none");
  t.Add("stall-timeout-s", &a.o.stall_timeout_s,
        "cancel a stream (RESOURCE_EXHAUSTED) whose client stops reading this long");
  t.Add("step-timeout-s", &a.o.step_timeout_s, "a step without result this long: group hung");
  t.Add("heartbeat-timeout-s", &a.o.heartbeat_timeout_s,
        "a group silent this long is declared lost");
  t.Add("output-threads", &a.o.output_threads, "output pool threads (detokenize, stream writes)");
  t.Add("prefix-cache", &a.o.enable_prefix_cache, "share KV blocks of common prompt prefixes");
  t.Add("chat-template", &a.o.chat_template, "built-in chat renderer override");
  t.Add("drain-seconds", &a.drain_seconds, "on SIGTERM, let requests finish this long");
  t.Add("log-level", &a.log_level, "trace, debug, info, warn, error");
  t.Add("help", &a.help, "print this help");
  return t;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "olmo-coordinator: error: %s\n", message.c_str());
  return 1;
}

// Writes the bound addresses atomically (tmp + rename): a reader never sees half a file.
absl::Status WriteAddressFile(const std::string& path, const std::string& client,
                              const std::string& control) {
  nlohmann::ordered_json j{{"client", client}, {"control", control}};
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp);
    out << j.dump() << "\n";
    if (!out) return absl::InternalError("--address-file: cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError("--address-file: " + ec.message());
  return absl::OkStatus();
}

std::string HostOf(const std::string& address) {
  size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("olmo"));
  Args a;
  olmo::tools::FlagTable flags = MakeFlags(a);
  // A first pass finds --config; the file applies, then the flags again override it.
  auto parsed = flags.Parse(argc, argv);
  if (!parsed.ok()) return Fail(std::string(parsed.status().message()));
  if (a.help) {
    std::printf(
        "olmo-coordinator: serves Olmo 3 over gRPC; worker groups attach to it.\n\n"
        "  olmo-coordinator --model DIR [flags]\n\n"
        "Client API: olmo.v1.Inference, grpc.health.v1.Health and server reflection on --listen.\n"
        "Worker control API: olmo.v1.WorkerControl on --control-listen.\n"
        "SIGTERM/SIGINT: stop admitting, drain up to --drain-seconds, end the rest with finish\n"
        "reason shutdown, shut the worker groups down, exit 0.\n\nFlags:\n%s",
        flags.Help().c_str());
    return 0;
  }
  if (!a.config_file.empty()) {
    auto text = olmo::tools::ReadTextFile(a.config_file, "--config");
    if (!text.ok()) return Fail(std::string(text.status().message()));
    nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Fail("--config: " + a.config_file + " is not valid JSON");
    if (auto st = flags.ApplyJson(j, a.config_file); !st.ok()) {
      return Fail(std::string(st.message()));
    }
    (void)flags.Parse(argc, argv);
  }
  if (!parsed->empty()) return Fail("unexpected argument '" + parsed->front() + "'");
  if (a.o.model_dir.empty()) return Fail("--model is required (see --help)");
  spdlog::set_level(spdlog::level::from_str(a.log_level));
  {
    auto secret = olmo::tools::ReadSecret(a.secret_file, "--secret-file");
    if (!secret.ok()) return Fail(std::string(secret.status().message()));
    a.o.secret = *secret;
  }
  if (a.o.secret.empty() && HostOf(a.control_listen) != "127.0.0.1" &&
      HostOf(a.control_listen) != "localhost") {
    spdlog::warn("the control API listens on {} without a shared secret", a.control_listen);
  }
  {
    nlohmann::ordered_json eff = flags.ToJson();
    eff.erase("help");
    spdlog::info("effective config: {}", eff.dump());
  }

  // Signals are taken by sigwait in main; every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto coordinator = olmo::service::Coordinator::Create(a.o);
  if (!coordinator.ok()) return Fail(std::string(coordinator.status().message()));
  olmo::service::Coordinator* coord = coordinator->get();
  spdlog::info("model {} (fingerprint {}), vocab {}, chat template {}", a.o.model_dir,
               coord->fingerprint().substr(0, 16), coord->config().vocab_size,
               coord->chat_template_name());

  const int max_message = static_cast<int>(a.max_message_mib << 20);
  olmo::server::ControlService control(coord);
  grpc::ServerBuilder cb;
  int control_port = 0;
  cb.AddListeningPort(a.control_listen, grpc::InsecureServerCredentials(), &control_port);
  cb.RegisterService(&control);
  cb.SetMaxReceiveMessageSize(max_message);
  cb.SetMaxSendMessageSize(max_message);
  std::unique_ptr<grpc::Server> control_server = cb.BuildAndStart();
  if (!control_server || control_port == 0) {
    return Fail("cannot listen on --control-listen " + a.control_listen);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  olmo::server::InferenceService inference(coord);
  grpc::ServerBuilder ib;
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!a.tls_cert.empty() || !a.tls_key.empty()) {
    auto cert = olmo::tools::ReadTextFile(a.tls_cert, "--tls-cert");
    auto key = olmo::tools::ReadTextFile(a.tls_key, "--tls-key");
    if (!cert.ok()) return Fail(std::string(cert.status().message()));
    if (!key.ok()) return Fail(std::string(key.status().message()));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(ssl);
  }
  int client_port = 0;
  ib.AddListeningPort(a.listen, creds, &client_port);
  ib.RegisterService(&inference);
  ib.SetMaxReceiveMessageSize(max_message);
  ib.SetMaxSendMessageSize(max_message);
  std::unique_ptr<grpc::Server> client_server = ib.BuildAndStart();
  if (!client_server || client_port == 0) return Fail("cannot listen on --listen " + a.listen);
  grpc::HealthCheckServiceInterface* health = client_server->GetHealthCheckService();
  coord->set_health_callback([health](bool serving) {
    if (health == nullptr) return;
    health->SetServingStatus(serving);
    health->SetServingStatus("olmo.v1.Inference", serving);
  });

  const std::string client_addr = HostOf(a.listen) + ":" + std::to_string(client_port);
  const std::string control_addr = HostOf(a.control_listen) + ":" + std::to_string(control_port);
  if (!a.address_file.empty()) {
    if (auto st = WriteAddressFile(a.address_file, client_addr, control_addr); !st.ok()) {
      return Fail(std::string(st.message()));
    }
  }
  spdlog::info("client API on {}, worker control on {}; waiting for worker groups", client_addr,
               control_addr);
  std::printf("olmo-coordinator listening: client %s control %s\n", client_addr.c_str(),
              control_addr.c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("signal {}: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  coord->Drain(olmo::service::Clock::now() +
               std::chrono::milliseconds(static_cast<int64_t>(a.drain_seconds * 1000)));
  const auto grace = std::chrono::system_clock::now() + std::chrono::seconds(2);
  client_server->Shutdown(grace);
  control_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
  coordinator->reset();
  spdlog::info("stopped");
  return 0;
}
