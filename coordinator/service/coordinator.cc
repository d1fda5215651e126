#include "coordinator/service/coordinator.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_format.h"
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
          cancel.emplace_back(
              r, r->group < 0 ? absl::UnavailableError("no worker group was attached before the "
                                                       "request's deadline")
                              : absl::DeadlineExceededError("the request's deadline passed"));
          continue;
        }
        auto sink = r->sink();
        if (sink && sink->stalled_seconds() > options_.stall_timeout_s) {
          cancel.emplace_back(
              r, absl::ResourceExhaustedError(absl::StrFormat(
                     "the client did not read its stream for %.0f s", options_.stall_timeout_s)));
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
      g->Fail(absl::DeadlineExceededError(
          absl::StrFormat("group %s sent nothing (no heartbeat) for %.1f s", g->name(),
                          options_.heartbeat_timeout_s)));
    }
  }
}

}  // namespace olmo::service
