// ActiveRequest: one client request inside the coordinator (the RequestTable's entry, DESIGN.md
// §1). The scheduler thread of the group running it appends engine updates; the output pool turns
// them into stream events through the request's OutputProcessor (one pool task per request at a
// time) and hands them to the request's StreamSink (the gRPC stream). Every token the engine
// produced is recorded here, so a request whose group fails resumes elsewhere after them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/engine/scheduler.h"
#include "coordinator/requests/output_processor.h"

namespace olmo::service {

using Clock = std::chrono::steady_clock;

// Where a request's events go. Push never blocks (the sink buffers and coalesces); Close ends the
// stream with a non-OK status (no more events follow).
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  virtual void Push(const requests::OutputEvent& event) = 0;
  virtual void Close(const absl::Status& status) = 0;
  // Seconds the oldest unfinished write has waited on the client (0 when none waits).
  virtual double stalled_seconds() const { return 0.0; }
};

class ActiveRequest {
 public:
  // One unit of output work: an engine update, or an end without a token.
  using Work = std::variant<engine::SeqUpdate, requests::Finish>;

  ActiveRequest(std::string request_id, int64_t seq_id, engine::Request request,
                requests::OutputProcessor processor, Clock::time_point deadline)
      : request_id_(std::move(request_id)),
        seq_id_(seq_id),
        request_(std::move(request)),
        processor_(std::move(processor)),
        arrival_(Clock::now()),
        deadline_(deadline) {}

  const std::string& request_id() const { return request_id_; }
  int64_t seq_id() const { return seq_id_; }
  Clock::time_point arrival() const { return arrival_; }
  Clock::time_point deadline() const { return deadline_; }

  // The engine request to (re)admit: after a failover it resumes after the recorded tokens.
  engine::Request EngineRequest() const;

  // Scheduler thread: records the update and queues it; true when the pool must be woken.
  bool AddUpdate(const engine::SeqUpdate& update);
  // Any thread: queues an end (abort, shutdown); true when the pool must be woken.
  bool AddEnd(requests::Finish reason);
  // Output pool: applies the queued work. Returns true once the stream has ended.
  bool Process();

  void SetSink(std::shared_ptr<StreamSink> sink);
  // Ends the stream with an error status (no group before the deadline, stalled client...).
  void Fail(const absl::Status& status);

  // Set once the stream is done (finished, failed or cancelled): later work is dropped.
  bool done() const { return done_.load(); }
  // True when a stop string ended the stream while the engine still runs the sequence.
  bool needs_engine_abort() const { return needs_engine_abort_.load(); }

  std::shared_ptr<StreamSink> sink() {
    std::lock_guard<std::mutex> lock(mu_);
    return sink_;
  }
  // Which group runs it (-1: none); the coordinator's bookkeeping, under its lock.
  int group = -1;
  std::atomic<bool> engine_finished{false};  // the engine no longer runs the sequence
  int preemptions_seen = 0;
  std::optional<Clock::time_point> first_token_time;
  int32_t tokens_out = 0;

 private:
  const std::string request_id_;
  const int64_t seq_id_;
  const engine::Request request_;
  requests::OutputProcessor processor_;  // output pool only (serialized by scheduled_)
  const Clock::time_point arrival_;
  const Clock::time_point deadline_;

  mutable std::mutex mu_;
  std::vector<int32_t> generated_;  // every token the engine produced
  std::vector<Work> pending_;
  bool scheduled_ = false;  // a pool task owns Process()
  std::shared_ptr<StreamSink> sink_;
  std::atomic<bool> done_{false};
  std::atomic<bool> needs_engine_abort_{false};
};

}  // namespace olmo::service
