// Coordinator: the service core without gRPC (DESIGN.md §1). Owns the RequestTable (every live
// request), the attached worker groups (a GroupSession and scheduler thread each), the Router over
// them, the output pool, and the reaper that enforces deadlines, heartbeats and stalled clients.
// A group that fails hands its requests back to the router, which resumes them elsewhere by
// recompute (same seed, same positions: the stream continues with no token lost or repeated).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "coordinator/service/active_request.h"
#include "coordinator/service/group_session.h"
#include "coordinator/service/request_builder.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "olmo/v1/control.pb.h"
#include "olmo/v1/inference.pb.h"

namespace olmo::service {

inline constexpr uint32_t kControlVersion = 1;

struct CoordinatorOptions {
  std::string model_dir;
  std::string secret;               // shared with the workers; empty: no check
  std::string chat_template;        // built-in renderer override ("olmo_instruct", "olmo_think")
  int64_t block_size = 16;          // tokens per KV block
  double kv_cache_mib = 256;        // CPU workers: KV MiB per rank
  double kv_memory_fraction = 0.9;  // GPU workers: of the memory left after weights + workspace
  int64_t max_tokens_per_step = 512;
  int64_t max_seqs = 256;
  int64_t max_model_len = 0;        // 0: max_position_embeddings (then capped by KV capacity)
  int64_t max_waiting = 4096;       // live requests at most; more are RESOURCE_EXHAUSTED
  int64_t max_prompt_tokens = 0;    // 0: max_model_len - 1
  double default_deadline_s = 600;  // for requests without a client deadline
  double stall_timeout_s = 30;      // a client not reading for this long is cancelled
  double step_timeout_s = 120;      // a step without result for this long: the group is hung
  double heartbeat_timeout_s = 10;  // no message from a group for this long: it is lost
  int output_threads = 2;
  bool enable_prefix_cache = true;
};

class Coordinator {
 public:
  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(const CoordinatorOptions& options);
  ~Coordinator();

  // Client API ---------------------------------------------------------------------------
  // A builder with the current limits (max_model_len follows the attached groups' capacity).
  RequestBuilder builder() const;
  // Admits a built request; its events go to `sink`. UNAVAILABLE while draining,
  // RESOURCE_EXHAUSTED when max_waiting requests are live, ALREADY_EXISTS for a live request_id.
  absl::StatusOr<std::shared_ptr<ActiveRequest>> Submit(BuiltRequest built, std::string request_id,
                                                        Clock::time_point deadline,
                                                        std::shared_ptr<StreamSink> sink);
  // The client went away (cancel, deadline): drop the request and free its blocks.
  void Cancel(const std::shared_ptr<ActiveRequest>& request, const absl::Status& status);
  // Abort RPC: ends the stream with finish reason abort. False when no such live request.
  bool Abort(const std::string& request_id);

  // The deadline of a request whose client set none (CoordinatorOptions::default_deadline_s).
  Clock::time_point DefaultDeadline() const {
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(options_.default_deadline_s));
  }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  const ModelConfig& config() const { return config_; }
  const std::string& fingerprint() const { return fingerprint_; }
  std::string chat_template_name() const;
  v1::ModelInfo ModelInfo() const;
  v1::Stats Stats() const;
  bool serving() const;
  // Called with the new health whenever it changes.
  void set_health_callback(std::function<void(bool serving)> cb);

  // Control API --------------------------------------------------------------------------
  absl::StatusOr<v1::ShardPlan> Attach(const v1::AttachRequest& request);
  // The group's Ready arrived on `stream`: its scheduler starts and waiting requests route to it.
  absl::StatusOr<std::shared_ptr<GroupSession>> AddGroup(ControlStream* stream,
                                                         const v1::Ready& ready);
  // The group's stream ended (reader thread): the group is failed if it was not already, and its
  // scheduler thread is joined.
  void RemoveGroup(const std::shared_ptr<GroupSession>& group, const absl::Status& why);

  // Shutdown -----------------------------------------------------------------------------
  // Stops admitting (health NOT_SERVING), lets live requests finish until `deadline`, ends the
  // rest with finish reason shutdown, then tells every group to shut down.
  void Drain(Clock::time_point deadline);
  int64_t live_requests() const;

 private:
  explicit Coordinator(const CoordinatorOptions& options) : options_(options) {}
  absl::Status Init();
  // Picks a group (least loaded, prefix affinity) or parks the request until one attaches.
  void Route(const std::shared_ptr<ActiveRequest>& request);
  void Wake(const std::shared_ptr<ActiveRequest>& request);
  void OnStreamDone(const std::shared_ptr<ActiveRequest>& request);
  void OnGroupLost(int group, std::vector<std::shared_ptr<ActiveRequest>> lost,
                   const absl::Status& why);
  void PoolLoop();
  void ReaperLoop();
  void UpdateHealth();

  CoordinatorOptions options_;
  ModelConfig config_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  tokenizer::ChatTemplateKind chat_kind_ = tokenizer::ChatTemplateKind::kOlmoInstruct;
  std::string fingerprint_;

  mutable std::mutex mu_;
  int64_t max_model_len_ = 0;
  int64_t next_seq_id_ = 1;
  int64_t next_request_number_ = 1;
  int next_group_id_ = 0;
  bool draining_ = false;
  bool stopping_ = false;
  std::unordered_map<std::string, std::shared_ptr<ActiveRequest>> table_;
  std::deque<std::shared_ptr<ActiveRequest>> unassigned_;  // no live group yet
  std::map<int, std::shared_ptr<GroupSession>> groups_;
  std::map<std::string, int> pending_attach_;   // group_id -> pp
  std::unordered_map<uint64_t, int> affinity_;  // prompt-prefix key -> group
  int64_t migrations_ = 0;
  std::function<void(bool)> health_cb_;
  bool last_health_ = false;

  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::deque<std::shared_ptr<ActiveRequest>> pool_queue_;
  std::vector<std::thread> pool_;
  std::thread reaper_;
  std::condition_variable stop_cv_;
};

}  // namespace olmo::service
