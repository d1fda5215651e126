#include "coordinator/service/coordinator.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_format.h"
#include "common/parallel_config.h"
#include "coordinator/tokenizer/chat_template.h"
#include "spdlog/spdlog.h"
#include "worker/checkpoint/fingerprint.h"

namespace olmo::service {
namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Prefix-affinity key: the salt and the first block-sized run of prompt tokens.
uint64_t AffinityKey(const engine::Request& r, int64_t block_size) {
  uint64_t h = std::hash<std::string>()(r.cache_salt);
  const size_t n = std::min(r.prompt_ids.size(), static_cast<size_t>(block_size));
  for (size_t i = 0; i < n; ++i) h = h * 1000003u ^ static_cast<uint32_t>(r.prompt_ids[i]);
  return h;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(const CoordinatorOptions& o) {
  std::unique_ptr<Coordinator> c(new Coordinator(o));
  if (absl::Status st = c->Init(); !st.ok()) return st;
  return c;
}

absl::Status Coordinator::Init() {
  auto config = ModelConfig::Load(options_.model_dir);
  if (!config.ok()) return config.status();
  config_ = *config;
  auto tok = tokenizer::Tokenizer::FromTokenizerJson(options_.model_dir);
  if (!tok.ok()) return tok.status();
  tokenizer_ = std::move(*tok);
  auto text = tokenizer::ReadChatTemplate(options_.model_dir);
  if (text.ok()) {
    auto kind = tokenizer::SelectChatTemplate(*text, options_.chat_template);
    if (!kind.ok()) return kind.status();
    chat_kind_ = *kind;
  } else if (!options_.chat_template.empty()) {
    auto kind = tokenizer::SelectChatTemplate("", options_.chat_template);
    if (!kind.ok()) return kind.status();
    chat_kind_ = *kind;
  }
  auto fp = checkpoint::ModelFingerprint(options_.model_dir);
  if (!fp.ok()) return fp.status();
  fingerprint_ = *fp;
  max_model_len_ = config_.max_position_embeddings;
  if (options_.max_model_len > 0) max_model_len_ = std::min(max_model_len_, options_.max_model_len);
  for (int i = 0; i < std::max(1, options_.output_threads); ++i) {
    pool_.emplace_back([this] { PoolLoop(); });
  }
  reaper_ = std::thread([this] { ReaperLoop(); });
  return absl::OkStatus();
}

Coordinator::~Coordinator() {
  std::map<int, std::shared_ptr<GroupSession>> groups;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    groups = groups_;
  }
  for (auto& [id, g] : groups) g->Fail(absl::CancelledError("coordinator stopping"));
  for (auto& [id, g] : groups) g->Join();
  stop_cv_.notify_all();
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    pool_cv_.notify_all();
  }
  for (auto& t : pool_) t.join();
  if (reaper_.joinable()) reaper_.join();
}

RequestBuilder Coordinator::builder() const {
  RequestLimits limits;
  {
    std::lock_guard<std::mutex> lock(mu_);
    limits.max_model_len = max_model_len_;
  }
  limits.max_prompt_tokens = options_.max_prompt_tokens;
  return RequestBuilder(tokenizer_.get(), chat_kind_, config_.eos_token_ids, config_.vocab_size,
                        limits);
}

std::string Coordinator::chat_template_name() const {
  return chat_kind_ == tokenizer::ChatTemplateKind::kOlmoThink ? "olmo_think" : "olmo_instruct";
}

absl::StatusOr<std::shared_ptr<ActiveRequest>> Coordinator::Submit(
    BuiltRequest built, std::string request_id, Clock::time_point deadline,
    std::shared_ptr<StreamSink> sink) {
  auto stops = requests::StopMatcher::Create(built.stop_strings);
  if (!stops.ok()) return stops.status();
  std::shared_ptr<ActiveRequest> r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_ || stopping_) return absl::UnavailableError("the service is shutting down");
    if (static_cast<int64_t>(table_.size()) >= options_.max_waiting) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "%d requests are live (the max_waiting limit); retry later", table_.size()));
    }
    if (request_id.empty()) request_id = absl::StrFormat("req-%d", next_request_number_++);
    if (table_.count(request_id)) {
      return absl::AlreadyExistsError(
          absl::StrFormat("request_id: %s is already live", request_id));
    }
    if (built.engine.sampling.seed == 0) {  // unseeded: fixed now, so failover replays it
      static thread_local std::mt19937_64 rng(std::random_device{}());
      built.engine.sampling.seed = rng() | 1;
    }
    const int32_t prompt_tokens = static_cast<int32_t>(built.engine.prompt_ids.size());
    requests::OutputProcessor processor(tokenizer_.get(), std::move(*stops), prompt_tokens);
    r = std::make_shared<ActiveRequest>(request_id, next_seq_id_++, std::move(built.engine),
                                        std::move(processor), deadline);
    r->SetSink(std::move(sink));
    table_[request_id] = r;
  }
  spdlog::info("request {}: admitted, {} prompt tokens, max_tokens {}", r->request_id(),
               r->EngineRequest().prompt_ids.size(), r->EngineRequest().max_tokens);
  Route(r);
  return r;
}

void Coordinator::Route(const std::shared_ptr<ActiveRequest>& r) {
  std::shared_ptr<GroupSession> target;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (r->done()) return;
    int64_t min_load = INT64_MAX;
    for (auto& [id, g] : groups_) {
      if (g->alive()) min_load = std::min(min_load, g->load());
    }
    if (min_load == INT64_MAX) {
      r->group = -1;
      unassigned_.push_back(r);
      return;
    }
    engine::Request er = r->EngineRequest();
    const uint64_t key = AffinityKey(er, options_.block_size);
    auto aff = affinity_.find(key);
    if (aff != affinity_.end()) {
      auto it = groups_.find(aff->second);
      // Prefix affinity unless that group is clearly busier than the least loaded one.
      if (it != groups_.end() && it->second->alive() &&
          it->second->load() <= min_load + std::max<int64_t>(4, options_.max_seqs / 8)) {
        target = it->second;
      }
    }
    if (!target) {
      for (auto& [id, g] : groups_) {
        if (g->alive() && g->load() == min_load) {
          target = g;
          break;
        }
      }
    }
    affinity_[key] = target->id();
    r->group = target->id();
  }
  if (!target->Add(r)) Route(r);  // it died meanwhile
}

void Coordinator::Wake(const std::shared_ptr<ActiveRequest>& r) {
  std::lock_guard<std::mutex> lock(pool_mu_);
  pool_queue_.push_back(r);
  pool_cv_.notify_one();
}

void Coordinator::PoolLoop() {
  while (true) {
    std::shared_ptr<ActiveRequest> r;
    {
      std::unique_lock<std::mutex> lock(pool_mu_);
      pool_cv_.wait(lock, [&] {
        std::lock_guard<std::mutex> l2(mu_);
        return stopping_ || !pool_queue_.empty();
      });
      if (pool_queue_.empty()) return;
      r = std::move(pool_queue_.front());
      pool_queue_.pop_front();
    }
    if (r->Process()) OnStreamDone(r);
  }
}

void Coordinator::OnStreamDone(const std::shared_ptr<ActiveRequest>& r) {
  std::shared_ptr<GroupSession> group;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = table_.find(r->request_id());
    if (it == table_.end() || it->second != r) return;  // already removed
    table_.erase(it);
    unassigned_.erase(std::remove(unassigned_.begin(), unassigned_.end(), r), unassigned_.end());
    auto g = groups_.find(r->group);
    if (g != groups_.end()) group = g->second;
  }
  if (group && !r->engine_finished) group->Abort(r->seq_id());
  const double ttft = r->first_token_time ? Seconds(*r->first_token_time - r->arrival()) : -1;
  spdlog::info("request {}: finished, {} tokens, time to first token {:.3f} s, total {:.3f} s",
               r->request_id(), r->tokens_out, ttft, Seconds(Clock::now() - r->arrival()));
  stop_cv_.notify_all();
}

void Coordinator::Cancel(const std::shared_ptr<ActiveRequest>& r, const absl::Status& status) {
  r->Fail(status);
  spdlog::info("request {}: ended: {}", r->request_id(), status.ToString());
  OnStreamDone(r);
}

bool Coordinator::Abort(const std::string& request_id) {
  std::shared_ptr<ActiveRequest> r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = table_.find(request_id);
    if (it == table_.end()) return false;
    r = it->second;
  }
  if (r->AddEnd(requests::Finish::kAbort)) Wake(r);
  return true;
}

void Coordinator::OnGroupLost(int group, std::vector<std::shared_ptr<ActiveRequest>> lost,
                              const absl::Status& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    migrations_ += static_cast<int64_t>(lost.size());
  }
  UpdateHealth();
  for (auto& r : lost) {
    spdlog::warn("request {}: group {} lost ({}), resuming elsewhere", r->request_id(), group,
                 std::string(why.message()));
    Route(r);
  }
}

absl::StatusOr<v1::ShardPlan> Coordinator::Attach(const v1::AttachRequest& req) {
  if (!options_.secret.empty() && req.secret() != options_.secret) {
    return absl::PermissionDeniedError("attach: wrong shared secret");
  }
  if (req.control_version() != kControlVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "attach: control protocol version %d, the coordinator speaks %d", req.control_version(),
        kControlVersion));
  }
  if (req.model_fingerprint() != fingerprint_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "attach: the worker's model fingerprint %s differs from the coordinator's %s "
        "(different checkpoint)", req.model_fingerprint(), fingerprint_));
  }
  auto pc = ParallelConfig::Make(req.tp(), req.pp(), 0, req.tp() * req.pp(), config_);
  if (!pc.ok()) return pc.status();
  v1::ShardPlan plan;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_ || stopping_) return absl::UnavailableError("the coordinator is shutting down");
    plan.set_group_id(absl::StrFormat("g%d", next_group_id_++));
    pending_attach_[plan.group_id()] = req.pp();
  }
  plan.set_model_path(options_.model_dir);
  plan.set_dtype("checkpoint");
  for (const auto& s : ParallelConfig::SplitStages(config_, req.pp())) {
    auto* st = plan.add_stages();
    st->set_layer_begin(s.layer_begin);
    st->set_layer_end(s.layer_end);
  }
  plan.set_block_size(options_.block_size);
  plan.set_kv_memory_fraction(options_.kv_memory_fraction);
  plan.set_kv_memory_bytes(static_cast<int64_t>(options_.kv_cache_mib * 1048576.0));
  plan.set_max_tokens_per_step(options_.max_tokens_per_step);
  plan.set_max_seqs(options_.max_seqs);
  plan.set_max_model_len(max_model_len_);
  spdlog::info("group {} ({}) attaching: tp {} x pp {} on {}", plan.group_id(), req.group_name(),
               req.tp(), req.pp(), req.device_kind());
  return plan;
}

absl::StatusOr<std::shared_ptr<GroupSession>> Coordinator::AddGroup(ControlStream* stream,
                                                                    const v1::Ready& ready) {
  int pp = 0, id = 0;
  engine::SchedulerConfig sc;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_attach_.find(ready.group_id());
    if (it == pending_attach_.end()) {
      return absl::FailedPreconditionError(
          absl::StrFormat("ready: unknown group_id '%s' (attach first)", ready.group_id()));
    }
    pp = it->second;
    pending_attach_.erase(it);
    id = std::stoi(ready.group_id().substr(1));
    sc.max_model_len = max_model_len_;
  }
  if (ready.full_blocks() < 1 || ready.sliding_blocks() < 1) {
    return absl::InvalidArgumentError("ready: the group has no KV blocks");
  }
  ExecutorInfo info;
  info.num_blocks[kKvGroupFull] = ready.full_blocks();
  info.num_blocks[kKvGroupSliding] = ready.sliding_blocks();
  info.block_size = options_.block_size;
  info.vocab_size = config_.vocab_size;
  sc.max_tokens_per_step = options_.max_tokens_per_step;
  sc.max_seqs = options_.max_seqs;
  sc.enable_prefix_cache = options_.enable_prefix_cache;
  sc.model_fingerprint = fingerprint_;
  GroupSession::Callbacks cb;
  cb.wake = [this](const std::shared_ptr<ActiveRequest>& r) { Wake(r); };
  cb.finished = [](const std::shared_ptr<ActiveRequest>& r) { r->engine_finished = true; };
  cb.lost = [this](int g, std::vector<std::shared_ptr<ActiveRequest>> lost, absl::Status why) {
    OnGroupLost(g, std::move(lost), why);
  };
  // Up to pp steps in flight over disjoint micro-batches (one per pipeline stage).
  auto group = std::make_shared<GroupSession>(id, ready.group_id(), stream, info, pp, sc,
                                              options_.step_timeout_s, std::move(cb));
  std::deque<std::shared_ptr<ActiveRequest>> parked;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("the coordinator is stopping");
    groups_[id] = group;
    // The service's limit follows the smallest attached KV capacity.
    max_model_len_ = std::min(max_model_len_, group->max_model_len());
    parked.swap(unassigned_);
  }
  group->Start();
  spdlog::info("group {} ready: {} full + {} sliding KV blocks of {} tokens; max_model_len {}",
               ready.group_id(), ready.full_blocks(), ready.sliding_blocks(), options_.block_size,
               group->max_model_len());
  UpdateHealth();
  for (auto& r : parked) Route(r);
  return group;
}

void Coordinator::RemoveGroup(const std::shared_ptr<GroupSession>& group, const absl::Status& why) {
  group->Fail(why);
  group->Join();
  group->DetachStream();
  {
    std::lock_guard<std::mutex> lock(mu_);
    groups_.erase(group->id());
  }
  UpdateHealth();
}

std::shared_ptr<GroupSession> Coordinator::FindGroup(int id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = groups_.find(id);
  return it == groups_.end() ? nullptr : it->second;
}

bool Coordinator::serving() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (draining_ || stopping_) return false;
  return std::any_of(groups_.begin(), groups_.end(), [](auto& g) { return g.second->alive(); });
}

void Coordinator::set_health_callback(std::function<void(bool)> cb) {
  const bool now = serving();
  {
    std::lock_guard<std::mutex> lock(mu_);
    health_cb_ = cb;
    last_health_ = now;
  }
  cb(now);
}

void Coordinator::UpdateHealth() {
  const bool now = serving();
  std::function<void(bool)> cb;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (now == last_health_) return;
    last_health_ = now;
    cb = health_cb_;
  }
  if (cb) cb(now);
  spdlog::info("health: {}", now ? "SERVING" : "NOT_SERVING");
}

int64_t Coordinator::live_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(table_.size());
}

void Coordinator::Drain(Clock::time_point deadline) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
  }
  UpdateHealth();
  spdlog::info("draining: {} live requests, up to {:.1f} s", live_requests(),
               Seconds(deadline - Clock::now()));
  {
    std::unique_lock<std::mutex> lock(mu_);
    stop_cv_.wait_until(lock, deadline, [&] { return table_.empty(); });
  }
  std::vector<std::shared_ptr<ActiveRequest>> rest;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, r] : table_) rest.push_back(r);
  }
  for (auto& r : rest) {
    if (r->AddEnd(requests::Finish::kShutdown)) Wake(r);
  }
  {  // let the last events reach their streams
    std::unique_lock<std::mutex> lock(mu_);
    stop_cv_.wait_for(lock, std::chrono::seconds(2), [&] { return table_.empty(); });
  }
  std::map<int, std::shared_ptr<GroupSession>> groups;
  {
    std::lock_guard<std::mutex> lock(mu_);
    groups = groups_;
  }
  for (auto& [id, g] : groups) g->SendShutdown();
  spdlog::info("drained; {} requests ended with finish reason shutdown", rest.size());
}

void Coordinator::ReaperLoop() {
  while (true) {
    std::vector<std::pair<std::shared_ptr<ActiveRequest>, absl::Status>> cancel;
    std::vector<std::shared_ptr<GroupSession>> hung;
    {
      std::unique_lock<std::mutex> lock(mu_);
      stop_cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping_; });
      if (stopping_) return;
      const auto now = Clock::now();
      for (auto& [id, r] : table_) {
        if (r->done()) continue;
        if (now > r->deadline()) {
          cancel.emplace_back(r, r->group < 0 ? absl::UnavailableError(
                                                    "no worker group was attached before the "
                                                    "request's deadline")
                                              : absl::DeadlineExceededError(
                                                    "the request's deadline passed"));
          continue;
        }
        auto sink = r->sink();
        if (sink && sink->stalled_seconds() > options_.stall_timeout_s) {
          cancel.emplace_back(r, absl::ResourceExhaustedError(absl::StrFormat(
                                     "the client did not read its stream for %.0f s",
                                     options_.stall_timeout_s)));
        }
      }
      for (auto& [id, g] : groups_) {
        if (g->alive() && Seconds(now - g->last_message()) > options_.heartbeat_timeout_s) {
          hung.push_back(g);
        }
      }
    }
    for (auto& [r, st] : cancel) Cancel(r, st);
    for (auto& g : hung) {
      g->Fail(absl::DeadlineExceededError(absl::StrFormat(
          "group %s sent nothing (no heartbeat) for %.1f s", g->name(),
          options_.heartbeat_timeout_s)));
    }
  }
}

v1::ModelInfo Coordinator::ModelInfo() const {
  v1::ModelInfo info;
  info.set_model(options_.model_dir);
  info.set_fingerprint(fingerprint_);
  info.set_vocab_size(config_.vocab_size);
  for (int32_t id : config_.eos_token_ids) info.add_stop_token_ids(id);
  info.set_chat_template(chat_template_name());
  std::lock_guard<std::mutex> lock(mu_);
  info.set_max_model_len(max_model_len_);
  for (auto& [id, g] : groups_) {
    auto* kv = info.add_kv();
    kv->set_group_id(g->name());
    kv->set_block_size(g->info().block_size);
    kv->set_full_blocks(g->info().num_blocks[kKvGroupFull]);
    kv->set_sliding_blocks(g->info().num_blocks[kKvGroupSliding]);
  }
  return info;
}

v1::Stats Coordinator::Stats() const {
  v1::Stats s;
  std::lock_guard<std::mutex> lock(mu_);
  s.set_waiting(static_cast<int64_t>(unassigned_.size()));
  s.set_migrations(migrations_);
  for (auto& [id, g] : groups_) {
    GroupSnapshot snap = g->Snapshot();
    s.set_waiting(s.waiting() + snap.waiting);
    s.set_running(s.running() + snap.running);
    s.set_preemptions(s.preemptions() + snap.scheduler.preemptions);
    s.set_prefix_hit_tokens(s.prefix_hit_tokens() + snap.scheduler.prefix_hit_tokens);
    s.set_chunked_prefills(s.chunked_prefills() + snap.scheduler.chunked_prefills);
    auto* gs = s.add_groups();
    gs->set_group_id(g->name());
    for (int k = 0; k < kNumKvGroups; ++k) {
      auto* u = k == kKvGroupFull ? gs->mutable_full() : gs->mutable_sliding();
      u->set_used(snap.used[k]);
      u->set_cached(snap.cached[k]);
      u->set_free(snap.free[k]);
    }
  }
  return s;
}

}  // namespace olmo::service
