// olmo-worker: one rank of a worker group (DESIGN.md §1-2), launched as tp x pp ranks by mpirun
// or `srun --mpi=pmix`. Rank 0 (the leader) dials the coordinator, attaches (version, tp/pp,
// model fingerprint, shared secret), shares the shard plan with every rank, and once all ranks
// have loaded their slice it streams: plans in, results and heartbeats out. See --help.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/parallel_config.h"
#include "nlohmann/json.hpp"
#include "olmo/v1/control.grpc.pb.h"
#include "proto/plan_proto.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "tools/common/device_ops.h"
#include "tools/common/files.h"
#include "tools/common/flag_table.h"
#include "worker/checkpoint/fingerprint.h"
#include "worker/comm/mpi_comm.h"
#include "worker/group/group_runner.h"
#include "worker/step/local_worker.h"
#include "worker/step/null_executor.h"

namespace {

constexpr uint32_t kControlVersion = 1;

struct Args {
  std::string model_dir;
  int64_t tp = 1, pp = 1;
  std::string coordinator, coordinator_file, secret_file, group_name;
  double wait_seconds = 60;
  int64_t kv_cache_mib = 0;
  int64_t threads = 0;
  double term_grace_seconds = 20;
  double heartbeat_seconds = 1;
  double watchdog_seconds = 300;
  bool null_model = false;
  std::string device = "cpu";
  std::string collectives = "auto";
  std::string sampling = "host";
  std::string kv_dtype = "f32";
  bool cuda_graphs = false;
  bool help = false;
};

std::atomic<int64_t> g_term_ns{0};  // steady-clock time of the first SIGTERM/SIGINT, 0 = none

void OnTerm(int) {
  int64_t zero = 0;
  g_term_ns.compare_exchange_strong(zero,
                                    std::chrono::steady_clock::now().time_since_epoch().count());
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "olmo-worker: error: %s\n", message.c_str());
  return 1;
}

// The coordinator's control address: --coordinator, or the "control" field of the address file
// the coordinator writes, waiting up to --wait-seconds for it to appear.
absl::StatusOr<std::string> ControlAddress(const Args& a) {
  if (!a.coordinator.empty()) return a.coordinator;
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(a.wait_seconds * 1000));
  while (true) {
    auto text = olmo::tools::ReadTextFile(a.coordinator_file, "--coordinator-file");
    if (text.ok()) {
      nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
      if (!j.is_discarded() && j.contains("control") && j["control"].is_string()) {
        return j["control"].get<std::string>();
      }
    }
    if (std::chrono::steady_clock::now() > until) {
      return absl::DeadlineExceededError(
          absl::StrFormat("--coordinator-file %s: no coordinator address after %.0f s",
                          a.coordinator_file, a.wait_seconds));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// Leader: attach. Returns the shard plan (serialized, to broadcast) or the refusal.
absl::StatusOr<olmo::v1::ShardPlan> AttachToCoordinator(const Args& a,
                                                        olmo::v1::WorkerControl::Stub* stub) {
  auto fp = olmo::checkpoint::ModelFingerprint(a.model_dir);
  if (!fp.ok()) return fp.status();
  olmo::v1::AttachRequest req;
  req.set_control_version(kControlVersion);
  req.set_build_id(__DATE__ " " __TIME__);
  req.set_model_fingerprint(*fp);
  req.set_tp(static_cast<int32_t>(a.tp));
  req.set_pp(static_cast<int32_t>(a.pp));
  int64_t memory = 0;
  req.set_device_kind(olmo::tools::DeviceDescription(a.device, olmo::tools::LocalRank(), &memory));
  req.set_device_memory_bytes(memory);
  req.set_group_name(a.group_name);
  absl::StatusOr<std::string> secret = olmo::tools::ReadSecret(a.secret_file, "--secret-file");
  if (!secret.ok()) return secret.status();
  req.set_secret(*secret);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  ctx.set_wait_for_ready(true);
  olmo::v1::ShardPlan plan;
  grpc::Status st = stub->Attach(&ctx, req, &plan);
  if (!st.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                        "attach refused: " + st.error_message());
  }
  return plan;
}

// Leader: the Run stream until Shutdown, a broken stream, or the SIGTERM grace deadline.
// Returns 0 on Shutdown.
int Lead(const Args& a, olmo::v1::WorkerControl::Stub* stub, const std::string& group_id,
         olmo::StepExecutor* executor, const olmo::ExecutorInfo& info) {
  grpc::ClientContext ctx;
  auto stream = stub->Run(&ctx);
  std::mutex write_mu;
  auto write = [&](const olmo::v1::WorkerMessage& m) {
    std::lock_guard<std::mutex> lock(write_mu);
    return stream->Write(m);
  };
  {
    olmo::v1::WorkerMessage ready;
    ready.mutable_ready()->set_group_id(group_id);
    ready.mutable_ready()->set_full_blocks(info.num_blocks[olmo::kKvGroupFull]);
    ready.mutable_ready()->set_sliding_blocks(info.num_blocks[olmo::kKvGroupSliding]);
    if (!write(ready)) return Fail("the coordinator closed the control stream before Ready");
  }
  spdlog::info("group {} ready: serving steps", group_id);
  std::mutex mu;
  std::condition_variable cv;
  int64_t submitted = 0, collected = 0, last_step = -1;
  bool stop = false;
  // Results go back in step order from their own thread, so the next plan's stage 0 runs while
  // later stages work on earlier steps.
  std::thread collector([&] {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return collected < submitted || stop; });
        if (collected >= submitted) return;
      }
      absl::StatusOr<olmo::StepResult> r = executor->Collect();
      const absl::Status step_status = r.ok() ? r->status : r.status();
      if (!step_status.ok()) spdlog::error("step failed: {}", step_status.ToString());
      olmo::v1::WorkerMessage m;
      if (r.ok()) {
        olmo::server::ToProto(*r, m.mutable_result());
      } else {
        m.mutable_result()->set_status_code(static_cast<int32_t>(r.status().code()));
        m.mutable_result()->set_status_message(std::string(r.status().message()));
      }
      write(m);
      std::lock_guard<std::mutex> lock(mu);
      ++collected;
      if (r.ok()) last_step = r->step_id;
      cv.notify_all();
    }
  });
  std::thread heartbeat([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (!stop) {
      cv.wait_for(lock, std::chrono::milliseconds(static_cast<int64_t>(a.heartbeat_seconds * 1000)),
                  [&] { return stop; });
      if (stop) break;
      const int64_t term = g_term_ns.load();
      if (term != 0 && std::chrono::steady_clock::now().time_since_epoch().count() - term >
                           static_cast<int64_t>(a.term_grace_seconds * 1e9)) {
        spdlog::warn("SIGTERM grace of {:.0f} s passed without Shutdown: leaving",
                     a.term_grace_seconds);
        ctx.TryCancel();
        break;
      }
      olmo::v1::WorkerMessage m;
      m.mutable_heartbeat()->set_last_step_id(last_step);
      lock.unlock();
      write(m);
      lock.lock();
    }
  });
  bool shutdown = false;
  olmo::v1::CoordinatorMessage msg;
  while (stream->Read(&msg)) {
    if (msg.has_shutdown()) {
      shutdown = true;
      break;
    }
    if (!msg.has_plan()) continue;  // Drain: the coordinator stops sending plans itself
    auto plan = olmo::server::FromProto(msg.plan());
    absl::Status st = plan.ok() ? executor->Submit(*plan) : plan.status();
    if (!st.ok()) {
      spdlog::error("step failed: {}", st.ToString());
      break;
    }
    std::lock_guard<std::mutex> lock(mu);
    ++submitted;
    cv.notify_all();
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
    cv.notify_all();
  }
  collector.join();
  heartbeat.join();
  {
    std::lock_guard<std::mutex> lock(write_mu);
    stream->WritesDone();
  }
  if (!shutdown) ctx.TryCancel();
  grpc::Status st = stream->Finish();
  if (shutdown) {
    spdlog::info("shutdown by the coordinator");
    return 0;
  }
  return Fail("control stream ended: " + (st.ok() ? std::string("closed") : st.error_message()));
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("olmo"));
  Args a;
  olmo::tools::FlagTable flags;
  flags.Add("model", &a.model_dir, "model directory (the coordinator checks its fingerprint)");
  flags.Add("tp", &a.tp, "tensor-parallel ranks (inside a node)");
  flags.Add("pp", &a.pp, "pipeline stages (across nodes); world size must be tp * pp");
  flags.Add("coordinator", &a.coordinator, "the coordinator's control address host:port");
  flags.Add("coordinator-file", &a.coordinator_file,
            "or: the coordinator's --address-file (its \"control\" field)");
  flags.Add("wait-seconds", &a.wait_seconds, "how long to wait for --coordinator-file");
  flags.Add("secret-file", &a.secret_file, "shared secret (else $OLMO_SECRET)");
  flags.Add("group-name", &a.group_name, "a name for logs and stats");
  flags.Add("kv-cache-mib", &a.kv_cache_mib, "KV cache MiB per rank (0: the coordinator's plan)");
  flags.Add("cuda-graphs", &a.cuda_graphs,
            "run decode steps as CUDA graphs (--device cuda; tp 1 or NCCL collectives)");
  flags.Add("kv-dtype", &a.kv_dtype,
            "KV cache element type: f32, or bf16 (twice the tokens in the same memory)");
  flags.Add("threads", &a.threads, "compute threads per rank (0: cores / local ranks)");
  flags.Add("term-grace-seconds", &a.term_grace_seconds,
            "after SIGTERM, keep serving until Shutdown or this long");
  flags.Add("heartbeat-seconds", &a.heartbeat_seconds, "heartbeat period");
  flags.Add("watchdog-seconds", &a.watchdog_seconds,
            "abort the group when a collective inside a step takes longer (0: off)");
  flags.Add("device", &a.device, "compute backend: cpu, or cuda (the GPU of the local rank)");
  flags.Add("sampling", &a.sampling,
            "where tokens are drawn: host (logits copied back) or device (the Sample op on the "
            "GPU; --device cuda only)");
  flags.Add("collectives", &a.collectives,
            "TP collectives: auto (NCCL when every TP rank has its own GPU, else MPI), nccl, or "
            "host (MPI, device buffers staged through host memory)");
  flags.Add("null-model", &a.null_model,
            "benchmark only: no model, deterministic tokens (one rank, no MPI)");
  flags.Add("help", &a.help, "print this help");
  auto parsed = flags.Parse(argc, argv);
  if (!parsed.ok()) return Fail(std::string(parsed.status().message()));
  if (a.help) {
    std::printf(
        "olmo-worker: one rank of an Olmo Serve worker group.\n\n"
        "  mpirun -n TP*PP olmo-worker --model DIR --tp TP --pp PP --coordinator H:P\n"
        "  srun --mpi=pmix -n TP*PP olmo-worker ... --coordinator-file FILE\n\n"
        "SIGTERM is deferred: the group serves until the coordinator's Shutdown or\n"
        "--term-grace-seconds.\n\nFlags:\n%s",
        flags.Help().c_str());
    return 0;
  }
  if (a.model_dir.empty()) return Fail("--model is required (see --help)");
  if (a.coordinator.empty() && a.coordinator_file.empty()) {
    return Fail("--coordinator or --coordinator-file is required");
  }
  std::signal(SIGTERM, OnTerm);
  std::signal(SIGINT, OnTerm);

  auto config = olmo::ModelConfig::Load(a.model_dir);
  if (!config.ok()) return Fail(std::string(config.status().message()));
  if (a.null_model) {  // the coordinator<->group round trip without model time
    if (a.tp * a.pp != 1) return Fail("--null-model runs one rank: --tp 1 --pp 1");
    auto address = ControlAddress(a);
    if (!address.ok()) return Fail(std::string(address.status().message()));
    auto stub = olmo::v1::WorkerControl::NewStub(
        grpc::CreateChannel(*address, grpc::InsecureChannelCredentials()));
    auto plan = AttachToCoordinator(a, stub.get());
    if (!plan.ok()) return Fail(std::string(plan.status().message()));
    olmo::ExecutorInfo info;
    info.num_blocks[0] = info.num_blocks[1] = 1 << 20;
    info.block_size = plan->block_size();
    info.vocab_size = config->vocab_size;
    olmo::step::NullExecutor executor(info);
    return Lead(a, stub.get(), plan->group_id(), &executor, info);
  }
  auto env = olmo::comm::MpiEnvironment::Create(&argc, &argv);
  if (!env.ok()) return Fail(std::string(env.status().message()));
  const int rank = (*env)->world_rank();
  auto pc = olmo::ParallelConfig::Make(static_cast<int>(a.tp), static_cast<int>(a.pp), rank,
                                       (*env)->world_size(), *config);
  if (!pc.ok()) return rank == 0 ? Fail(std::string(pc.status().message())) : 1;
  olmo::comm::MpiCommOptions copts;
  copts.watchdog_timeout_s = a.watchdog_seconds;
  auto comms = olmo::comm::MakeGroupComms(*pc, copts);
  if (!comms.ok()) return Fail(std::string(comms.status().message()));
  // Tensor parallelism stays inside a node (DESIGN.md §2): every rank of this TP group must run
  // on the same host. On GPUs that is required (NCCL over NVLink); on CPUs it is only slow.
  {
    char host[64] = {};
    gethostname(host, sizeof(host) - 1);
    std::vector<char> hosts(sizeof(host) * static_cast<size_t>(pc->tp));
    if (auto st = comms->tp->AllGather(host, sizeof(host), hosts.data()); !st.ok()) {
      return Fail(std::string(st.message()));
    }
    for (int r = 0; r < pc->tp; ++r) {
      const std::string other(hosts.data() + r * sizeof(host));
      if (other == host) continue;
      const std::string msg = absl::StrFormat(
          "the tensor-parallel group of rank %d spans nodes (%s and %s): keep tp inside a node",
          rank, host, other);
      if (a.device == "cuda") return Fail(msg);
      spdlog::warn("{}", msg);
      break;
    }
  }
  spdlog::set_pattern(absl::StrFormat("[%%H:%%M:%%S.%%e] [worker %s rank %d pp %d tp %d] [%%l] %%v",
                                      a.group_name.empty() ? "-" : a.group_name, rank,
                                      pc->pp_rank(), pc->tp_rank()));

  // The leader attaches; every rank receives the plan (or the refusal) as bytes.
  std::unique_ptr<olmo::v1::WorkerControl::Stub> stub;
  std::string plan_bytes;
  int64_t plan_size = 0;
  if (rank == 0) {
    auto address = ControlAddress(a);
    olmo::v1::ShardPlan plan;
    absl::Status st = address.status();
    if (address.ok()) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(64 << 20);
      auto channel = grpc::CreateCustomChannel(*address, grpc::InsecureChannelCredentials(), args);
      stub = olmo::v1::WorkerControl::NewStub(channel);
      spdlog::info("attaching to {} as tp {} x pp {}", *address, a.tp, a.pp);
      auto p = AttachToCoordinator(a, stub.get());
      st = p.status();
      if (p.ok()) plan = *p;
    }
    if (!st.ok()) {
      Fail(std::string(st.message()));
      plan_size = -1;
    } else {
      plan_bytes = plan.SerializeAsString();
      plan_size = static_cast<int64_t>(plan_bytes.size());
    }
  }
  if (auto st = comms->world->Broadcast(&plan_size, sizeof(plan_size), 0); !st.ok()) {
    return Fail(std::string(st.message()));
  }
  if (plan_size < 0) return 1;
  plan_bytes.resize(static_cast<size_t>(plan_size));
  if (auto st = comms->world->Broadcast(plan_bytes.data(), plan_size, 0); !st.ok()) {
    return Fail(std::string(st.message()));
  }
  olmo::v1::ShardPlan plan;
  plan.ParseFromString(plan_bytes);

  olmo::step::LocalWorkerOptions o;
  o.block_size = plan.block_size();
  o.kv_cache_bytes = a.kv_cache_mib > 0 ? (a.kv_cache_mib << 20) : plan.kv_memory_bytes();
  // GPUs size the KV cache from free device memory (the shard plan's fraction) unless
  // --kv-cache-mib fixes it; CPU ranks share host memory and take explicit bytes.
  if (a.kv_cache_mib == 0) o.kv_memory_fraction = plan.kv_memory_fraction();
  o.max_tokens_per_step = plan.max_tokens_per_step();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.ops.num_threads =
      a.threads > 0 ? static_cast<int>(a.threads) : std::max(1, cores / pc->world_size());
  auto factory = olmo::tools::MakeOpsFactory(a.device, olmo::tools::LocalRank());
  if (factory.ok()) {
    o.make_ops = *factory;
  } else {  // every rank reports through the load check below
    o.make_ops = [st = factory.status()]() -> absl::StatusOr<std::unique_ptr<olmo::kernels::Ops>> {
      return st;
    };
  }
  o.model.tp = pc->tp;
  o.model.tp_rank = pc->tp_rank();
  o.model.collectives = comms->tp.get();
  auto collectives = olmo::tools::MakeCollectivesFactory(a.collectives, a.device, comms->tp.get());
  if (!collectives.ok()) return rank == 0 ? Fail(std::string(collectives.status().message())) : 1;
  o.make_collectives = *collectives;
  if (a.sampling != "host" && a.sampling != "device") {
    return rank == 0 ? Fail("--sampling: expected host or device, got '" + a.sampling + "'") : 1;
  }
  o.device_sampling = a.sampling == "device";
  auto kv_dtype = olmo::tools::ParseKvDtype(a.kv_dtype);
  if (!kv_dtype.ok()) return rank == 0 ? Fail(std::string(kv_dtype.status().message())) : 1;
  o.kv_dtype = *kv_dtype;
  o.model.graphs = a.cuda_graphs;
  const auto stages = olmo::ParallelConfig::SplitStages(*config, static_cast<int>(a.pp));
  o.model.layer_begin = stages[pc->pp_rank()].layer_begin;
  o.model.layer_end = stages[pc->pp_rank()].layer_end;
  auto worker = olmo::step::LoadLocalWorker(a.model_dir, o);
  if (worker.ok()) {
    spdlog::info("loaded layers {}-{}: {:.1f} MiB of weights", o.model.layer_begin,
                 o.model.layer_end - 1, (*worker)->model->weight_bytes() / 1048576.0);
  }
  // Every rank learns whether every rank loaded, and the smallest KV pool (block ids must exist
  // on every rank).
  struct Loaded {
    int64_t ok, full, sliding;
  } mine{worker.ok() ? 1 : 0, 0, 0};
  if (worker.ok()) {
    mine.full = (*worker)->runner->info().num_blocks[olmo::kKvGroupFull];
    mine.sliding = (*worker)->runner->info().num_blocks[olmo::kKvGroupSliding];
  }
  std::vector<Loaded> all(static_cast<size_t>(pc->world_size()));
  if (auto st = comms->world->AllGather(&mine, sizeof(mine), all.data()); !st.ok()) {
    return Fail(std::string(st.message()));
  }
  olmo::ExecutorInfo info;
  for (int r = 0; r < pc->world_size(); ++r) {
    if (all[r].ok == 0) return r == rank ? Fail(std::string(worker.status().message())) : 1;
    info.num_blocks[0] = r == 0 ? all[r].full : std::min(info.num_blocks[0], all[r].full);
    info.num_blocks[1] = r == 0 ? all[r].sliding : std::min(info.num_blocks[1], all[r].sliding);
  }
  info.block_size = o.block_size;
  info.vocab_size = config->vocab_size;
  olmo::step::GroupRunner group((*worker)->runner.get(), *pc, comms->world.get(), comms->tp.get(),
                                comms->pp.get(), config->hidden_size, a.watchdog_seconds);
  if (rank != 0) {
    absl::Status st = group.Serve();
    if (!st.ok() && group.step_failed()) olmo::comm::AbortWorld(st.ToString());
    return st.ok() ? 0 : Fail(std::string(st.message()));
  }
  olmo::step::GroupExecutor executor(&group, info, pc->pp);
  int rc = Lead(a, stub.get(), plan.group_id(), &executor, info);
  // The coordinator already has the failed step's status (Lead sent it); end the group now.
  if (group.step_failed() && pc->world_size() > 1) {
    olmo::comm::AbortWorld("a step failed on the leader; the other ranks may be inside it");
  }
  absl::Status st = group.Shutdown();
  if (!st.ok() && rc == 0) return Fail(std::string(st.message()));
  return rc;
}
