// Scheduler: FCFS continuous batching under a per-step token budget with chunked prefill
// (DESIGN.md §1-2). It owns sequence progress and KV block math for one worker group and builds
// StepPlans; it never touches tensors. This is the one scheduler: olmo-generate and the
// coordinator both drive it.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/plan.h"
#include "common/sampling_params.h"
#include "coordinator/engine/block_manager.h"

namespace olmo::engine {

struct SchedulerConfig {
  int64_t max_tokens_per_step = 512;  // token budget of one step (prefill chunks + decodes)
  int64_t max_seqs = 256;             // running sequences at most
  int64_t max_model_len = 0;          // prompt + output tokens at most per sequence
  bool enable_prefix_cache = true;
  std::string model_fingerprint;  // seeds the prefix-cache hash chain
};

struct Request {
  int64_t seq_id = 0;  // unique, chosen by the caller
  std::vector<int32_t> prompt_ids;
  SamplingParams sampling;  // sampling.stop_token_ids = ids that end the sequence
  int32_t max_tokens = 16;  // output tokens at most
  bool ignore_eos = false;  // do not stop at stop ids
  int32_t priority = 0;     // lower value runs first; FCFS inside a priority
  std::string cache_salt;   // requests share cached prefixes only with the same salt
  // Output tokens already generated elsewhere (failover to another group): the sequence resumes
  // after them, recomputing prompt + resumed tokens as its prefill; they count toward max_tokens.
  std::vector<int32_t> resumed_output_ids;
};

enum class FinishReason { kNone, kStop, kLength, kAbort };

// One generated token (or a finish without a token, for aborts).
struct SeqUpdate {
  int64_t seq_id = 0;
  bool has_token = false;
  int32_t token_id = 0;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top_logprobs;
  FinishReason finish = FinishReason::kNone;
};

struct SchedulerStats {
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t chunked_prefills = 0;  // prefill chunks that did not finish their prompt
  int64_t scheduled_tokens = 0;
  int64_t prefix_hit_tokens = 0;  // prompt tokens not recomputed thanks to the prefix cache
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, BlockManager* blocks);

  // Queues a request. InvalidArgument for an empty prompt, max_tokens < 1, or a prompt +
  // max_tokens beyond max_model_len (the field is named); AlreadyExists for a reused seq_id.
  absl::Status Add(const Request& request);
  // Drops a request wherever it is; its blocks are freed and its worker state dropped next step.
  void Abort(int64_t seq_id);

  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }

  // The next step: running decodes first, then continuing prefills, then admissions (FCFS by
  // priority and arrival), all under the token budget. Sequences of steps still in flight are
  // skipped (a pipeline runs disjoint sequences concurrently). Preempts the newest running
  // sequence that is not in flight (recompute) when blocks run out. An empty plan (no sequences,
  // nothing to free) consumes no step id and must not be executed.
  StepPlan Schedule();
  static bool IsEmpty(const StepPlan& plan) {
    return plan.seqs.empty() && plan.free_seq_ids.empty();
  }
  // At most this many sequences in one step (0: no limit). A pipeline of pp stages splits the
  // running sequences into ~pp micro-batches so every stage has work.
  void set_step_seq_limit(int64_t n) { step_seq_limit_ = n; }

  // Applies a step's results; returns one update per sampled token, plus finishes.
  std::vector<SeqUpdate> OnResult(const StepPlan& plan, const StepResult& result);

  const SchedulerStats& stats() const { return stats_; }

 private:
  struct Sequence {
    Request request;
    int64_t arrival = 0;
    int32_t epoch = 0;
    std::vector<int32_t> tokens;  // prompt + output so far
    int64_t num_computed = 0;     // tokens whose KV is in the cache
    int32_t num_output = 0;
    bool needs_reset = true;        // next step is the first since (re)admission
    bool in_flight = false;         // part of a submitted step whose result has not come back
    std::vector<BlockHash> hashes;  // prefix-cache hash of each full block of `tokens`
    int64_t registered = 0;         // full blocks registered in the prefix cache
  };
  // Extends s.hashes to cover the first `blocks` full blocks of s.tokens.
  void HashBlocks(Sequence& s, int64_t blocks);

  bool Preempt(int64_t exclude_seq_id, StepPlan* plan);
  void Finish(int64_t seq_id);

  SchedulerConfig config_;
  BlockManager* blocks_;
  int64_t next_step_id_ = 0;
  int64_t next_arrival_ = 0;
  std::map<int64_t, Sequence> seqs_;
  std::deque<int64_t> waiting_;   // ordered by (priority, arrival)
  std::vector<int64_t> running_;  // ordered by admission
  std::vector<int64_t> pending_free_;
  int64_t step_seq_limit_ = 0;
  SchedulerStats stats_;
};

}  // namespace olmo::engine
