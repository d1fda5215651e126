#include "coordinator/engine/scheduler.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace olmo::engine {

Scheduler::Scheduler(const SchedulerConfig& config, BlockManager* blocks)
    : config_(config), blocks_(blocks) {}

absl::Status Scheduler::Add(const Request& request) {
  if (request.prompt_ids.empty()) return absl::InvalidArgumentError("prompt_ids: empty prompt");
  if (request.max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("max_tokens: must be >= 1, got %d", request.max_tokens));
  }
  if (static_cast<int64_t>(request.resumed_output_ids.size()) >= request.max_tokens) {
    return absl::InvalidArgumentError("resumed_output_ids: already at max_tokens");
  }
  int64_t total = static_cast<int64_t>(request.prompt_ids.size()) + request.max_tokens;
  if (config_.max_model_len > 0 && total > config_.max_model_len) {
    return absl::InvalidArgumentError(
        absl::StrFormat("max_tokens: prompt (%d tokens) + max_tokens (%d) exceeds max_model_len %d",
                        request.prompt_ids.size(), request.max_tokens, config_.max_model_len));
  }
  if (seqs_.count(request.seq_id)) {
    return absl::AlreadyExistsError(absl::StrFormat("seq_id %d already queued", request.seq_id));
  }
  Sequence s;
  s.request = request;
  s.arrival = next_arrival_++;
  s.tokens = request.prompt_ids;
  s.tokens.insert(s.tokens.end(), request.resumed_output_ids.begin(),
                  request.resumed_output_ids.end());
  s.num_output = static_cast<int32_t>(request.resumed_output_ids.size());
  seqs_.emplace(request.seq_id, std::move(s));
  // Keep waiting_ ordered by (priority, arrival): insert after every entry that runs first.
  auto pos = std::find_if(waiting_.begin(), waiting_.end(), [&](int64_t id) {
    return seqs_.at(id).request.priority > request.priority;
  });
  waiting_.insert(pos, request.seq_id);
  return absl::OkStatus();
}

void Scheduler::Finish(int64_t seq_id) {
  blocks_->Free(seq_id);
  running_.erase(std::remove(running_.begin(), running_.end(), seq_id), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), seq_id), waiting_.end());
  pending_free_.push_back(seq_id);
  seqs_.erase(seq_id);
}

void Scheduler::Abort(int64_t seq_id) {
  if (seqs_.count(seq_id)) Finish(seq_id);
}

// Preempts the newest running sequence that is not `exclude_seq_id` and not already part of
// `plan` (recompute: its blocks are freed and it goes back to the waiting queue).
bool Scheduler::Preempt(int64_t exclude_seq_id, StepPlan* plan) {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    int64_t id = *it;
    if (id == exclude_seq_id || seqs_.at(id).in_flight) continue;
    bool planned = std::any_of(plan->seqs.begin(), plan->seqs.end(),
                               [&](const SeqStep& st) { return st.seq_id == id; });
    if (planned) continue;
    Sequence& s = seqs_.at(id);
    blocks_->Free(id);
    s.num_computed = 0;
    s.registered = 0;  // full blocks stay cached; re-registering is a no-op
    s.needs_reset = true;
    ++s.epoch;
    running_.erase(std::next(it).base());
    auto pos = std::find_if(waiting_.begin(), waiting_.end(), [&](int64_t w) {
      const Sequence& o = seqs_.at(w);
      return std::pair(o.request.priority, o.arrival) > std::pair(s.request.priority, s.arrival);
    });
    waiting_.insert(pos, id);
    plan->free_seq_ids.push_back(id);
    ++stats_.preemptions;
    return true;
  }
  return false;
}

void Scheduler::HashBlocks(Sequence& s, int64_t blocks) {
  const int64_t bs = blocks_->block_size();
  while (static_cast<int64_t>(s.hashes.size()) < blocks) {
    const int64_t i = static_cast<int64_t>(s.hashes.size());
    BlockHash parent =
        i == 0 ? PrefixSeed(config_.model_fingerprint, s.request.cache_salt) : s.hashes.back();
    s.hashes.push_back(ChainHash(
        parent, std::span<const int32_t>(s.tokens.data() + i * bs, static_cast<size_t>(bs))));
  }
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  plan.step_id = next_step_id_;
  plan.free_seq_ids = std::move(pending_free_);
  pending_free_.clear();
  int64_t budget = config_.max_tokens_per_step;

  auto plan_full = [&] {
    return step_seq_limit_ > 0 && static_cast<int64_t>(plan.seqs.size()) >= step_seq_limit_;
  };
  // Schedules the next chunk of `id`; false when it does not fit (budget, step limit or blocks).
  auto try_schedule = [&](int64_t id) -> bool {
    Sequence& s = seqs_.at(id);
    if (s.in_flight) return false;
    if (plan_full()) return false;
    SeqStep st;
    int64_t hit = 0;
    if (s.needs_reset && s.num_computed == 0 && config_.enable_prefix_cache) {
      // Reuse cached full blocks of the prefix, leaving at least one token to compute.
      const int64_t bs = blocks_->block_size();
      HashBlocks(s, (static_cast<int64_t>(s.tokens.size()) - 1) / bs);
      int64_t usable = (static_cast<int64_t>(s.tokens.size()) - 1) / bs;
      hit = blocks_->AcquireCached(
                id, std::span<const BlockHash>(s.hashes.data(), static_cast<size_t>(usable)),
                st.blocks) *
            bs;
      s.num_computed = hit;
    }
    int64_t remaining = static_cast<int64_t>(s.tokens.size()) - s.num_computed;
    int64_t n = std::min(remaining, budget);
    if (n <= 0 || !blocks_->Grow(id, s.num_computed + n, st.blocks).ok()) {
      if (hit > 0) {  // give the cached blocks back; admission is retried later
        blocks_->Free(id);
        s.num_computed = 0;
      }
      return false;
    }
    stats_.prefix_hit_tokens += hit;
    st.seq_id = id;
    st.epoch = s.epoch;
    st.token_ids.assign(s.tokens.begin() + s.num_computed, s.tokens.begin() + s.num_computed + n);
    st.start_pos = static_cast<int32_t>(s.num_computed);
    st.sample = s.num_computed + n == static_cast<int64_t>(s.tokens.size());
    if (s.needs_reset) {
      for (auto& d : st.blocks) d.reset = true;
      st.sampling = s.request.sampling;
      st.num_prompt_tokens = static_cast<int32_t>(s.request.prompt_ids.size());
      s.needs_reset = false;
    }
    if (!st.sample) ++stats_.chunked_prefills;
    s.in_flight = true;
    budget -= n;
    plan.seqs.push_back(std::move(st));
    return true;
  };

  // 1. Running decodes (one token each), oldest first; preempt the newest others on block
  //    shortage. 2. Continuing prefills.
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<int64_t> order = running_;
    for (int64_t id : order) {
      if (!seqs_.count(id)) continue;
      if (std::find(running_.begin(), running_.end(), id) == running_.end()) continue;
      const Sequence& s = seqs_.at(id);
      if (s.in_flight) continue;
      bool is_decode = static_cast<int64_t>(s.tokens.size()) - s.num_computed == 1;
      if (is_decode != (pass == 0)) continue;
      if (budget <= 0 || plan_full()) break;
      while (!try_schedule(id)) {
        if (budget <= 0 || !Preempt(id, &plan)) break;
      }
    }
  }
  // 3. Admissions, FCFS; a request that does not fit blocks the queue (no overtaking).
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int64_t>(running_.size()) < config_.max_seqs) {
    int64_t id = waiting_.front();
    if (!try_schedule(id)) break;
    waiting_.pop_front();
    running_.push_back(id);
  }
  if (IsEmpty(plan)) return plan;
  ++next_step_id_;
  stats_.scheduled_tokens += config_.max_tokens_per_step - budget;
  ++stats_.steps;
  return plan;
}

std::vector<SeqUpdate> Scheduler::OnResult(const StepPlan& plan, const StepResult& result) {
  std::vector<SeqUpdate> updates;
  size_t r = 0;
  for (const SeqStep& st : plan.seqs) {
    const SeqResult* res = nullptr;
    if (st.sample) {
      if (r < result.seqs.size()) res = &result.seqs[r];
      ++r;
    }
    auto it = seqs_.find(st.seq_id);
    if (it == seqs_.end() || it->second.epoch != st.epoch) continue;  // aborted or preempted
    Sequence& s = it->second;
    s.in_flight = false;
    s.num_computed += static_cast<int64_t>(st.token_ids.size());
    if (config_.enable_prefix_cache) {  // newly full blocks join the prefix cache
      const int64_t full = s.num_computed / blocks_->block_size();
      HashBlocks(s, full);
      for (; s.registered < full; ++s.registered) {
        blocks_->Register(st.seq_id, s.registered, s.hashes[s.registered]);
      }
    }
    if (!st.sample || res == nullptr) continue;
    s.tokens.push_back(res->token_id);
    ++s.num_output;
    SeqUpdate u;
    u.seq_id = st.seq_id;
    u.has_token = true;
    u.token_id = res->token_id;
    u.logprob = res->logprob;
    u.top_logprobs = res->top_logprobs;
    const auto& stops = s.request.sampling.stop_token_ids;
    bool is_stop = std::find(stops.begin(), stops.end(), res->token_id) != stops.end();
    if (is_stop && !s.request.ignore_eos) {
      u.finish = FinishReason::kStop;
    } else if (s.num_output >= s.request.max_tokens ||
               (config_.max_model_len > 0 &&
                static_cast<int64_t>(s.tokens.size()) >= config_.max_model_len)) {
      u.finish = FinishReason::kLength;
    }
    updates.push_back(std::move(u));
    if (updates.back().finish != FinishReason::kNone) Finish(st.seq_id);
  }
  return updates;
}

}  // namespace olmo::engine
