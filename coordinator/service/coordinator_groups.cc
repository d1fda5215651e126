// Coordinator, the worker-group side: attach and shard plans, group sessions coming and going,
// health, and the ModelInfo / Stats views over every group (coordinator.h).
#include <algorithm>

#include "absl/strings/str_format.h"
#include "common/parallel_config.h"
#include "coordinator/service/coordinator.h"
#include "spdlog/spdlog.h"

namespace olmo::service {

absl::StatusOr<v1::ShardPlan> Coordinator::Attach(const v1::AttachRequest& req) {
  if (!options_.secret.empty() && req.secret() != options_.secret) {
    return absl::PermissionDeniedError("attach: wrong shared secret");
  }
  if (req.control_version() != kControlVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("attach: control protocol version %d, the coordinator speaks %d",
                        req.control_version(), kControlVersion));
  }
  if (req.model_fingerprint() != fingerprint_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "attach: the worker's model fingerprint %s differs from the coordinator's %s "
        "(different checkpoint)",
        req.model_fingerprint(), fingerprint_));
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
