// GroupSession: one attached worker group as seen by the coordinator (DESIGN.md §1-2): the
// control stream (a StepExecutor over it: plans out, results in, up to pp + 1 steps in flight),
// the group's Engine, run by its own scheduler thread, and the requests it currently runs.
// The scheduler thread only admits, does block math and builds plans; finished work is handed to
// the output pool through the callbacks.
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
#include <vector>

#include "absl/status/statusor.h"
#include "common/step_executor.h"
#include "coordinator/engine/engine.h"
#include "coordinator/service/active_request.h"
#include "olmo/v1/control.pb.h"

namespace olmo::service {

// The coordinator's end of a group's Run stream.
class ControlStream {
 public:
  virtual ~ControlStream() = default;
  // False once the stream is broken.
  virtual bool Write(const v1::CoordinatorMessage& message) = 0;
  // Breaks the stream (the reader sees the end).
  virtual void Cancel() = 0;
};

// StepExecutor over a ControlStream: Submit writes the plan; results arrive through OnResult
// (called by the stream's reader thread); Collect waits for the oldest one, at most
// step_timeout_s (a group that misses it is hung and has failed).
class GrpcExecutor final : public StepExecutor {
 public:
  GrpcExecutor(ControlStream* stream, ExecutorInfo info, int max_in_flight, double step_timeout_s)
      : stream_(stream),
        info_(info),
        max_in_flight_(max_in_flight),
        step_timeout_s_(step_timeout_s) {}
  const ExecutorInfo& info() const override { return info_; }
  int max_in_flight() const override { return max_in_flight_; }
  absl::Status Submit(const StepPlan& plan) override;
  absl::StatusOr<StepResult> Collect() override;
  absl::StatusOr<StepResult> Execute(const StepPlan& plan) override;

  void OnResult(StepResult result);
  // The stream ended or the group was declared lost: every waiting Collect fails.
  void Fail(const absl::Status& status);

 private:
  ControlStream* stream_;
  ExecutorInfo info_;
  int max_in_flight_;
  double step_timeout_s_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StepResult> results_;
  absl::Status failed_;
};

struct GroupSnapshot {
  int64_t waiting = 0, running = 0;
  int64_t used[kNumKvGroups] = {0, 0}, cached[kNumKvGroups] = {0, 0}, free[kNumKvGroups] = {0, 0};
  engine::SchedulerStats scheduler;
  int64_t max_model_len = 0;
};

class GroupSession {
 public:
  struct Callbacks {
    // An update or end for a request: the pool must process it.
    std::function<void(const std::shared_ptr<ActiveRequest>&)> wake;
    // The request finished in the engine (its stream may still be writing).
    std::function<void(const std::shared_ptr<ActiveRequest>&)> finished;
    // The group failed: these requests (unfinished) need another group.
    std::function<void(int group, std::vector<std::shared_ptr<ActiveRequest>>, absl::Status)> lost;
  };

  GroupSession(int id, std::string name, ControlStream* stream, ExecutorInfo info, int pp,
               engine::SchedulerConfig config, double step_timeout_s, Callbacks callbacks);
  ~GroupSession();

  int id() const { return id_; }
  const std::string& name() const { return name_; }
  const ExecutorInfo& info() const { return executor_.info(); }
  int64_t max_model_len() const { return max_model_len_; }

  void Start();
  // Queues a request (any thread). False when the group is no longer alive.
  bool Add(std::shared_ptr<ActiveRequest> request);
  void Abort(int64_t seq_id);
  // Reader thread: a message from the worker.
  void OnMessage(const v1::WorkerMessage& message);
  // The stream ended, or the group is declared lost (hang, missed heartbeats); also how the
  // coordinator stops a group.
  void Fail(const absl::Status& status);
  // Waits for the scheduler thread to end (after Fail).
  void Join();
  // Asks the worker group to shut down after its work (drain end).
  void SendShutdown();
  // The stream is going away (its reader returns): no more writes through it. After Join.
  void DetachStream();

  bool alive() const { return alive_.load(); }
  int64_t load() const { return load_.load(); }
  Clock::time_point last_message() const {
    return Clock::time_point(Clock::duration(last_message_ns_.load()));
  }
  GroupSnapshot Snapshot() const;

 private:
  void Loop();
  void Publish();

  const int id_;
  const std::string name_;
  std::mutex stream_mu_;
  ControlStream* stream_;  // null once detached
  GrpcExecutor executor_;
  engine::Engine engine_;
  const int64_t max_model_len_;
  Callbacks callbacks_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<ActiveRequest>> adds_;
  std::vector<int64_t> aborts_;
  absl::Status failure_;

  std::map<int64_t, std::shared_ptr<ActiveRequest>> running_;  // scheduler thread only
  std::atomic<bool> alive_{true};
  std::atomic<int64_t> load_{0};
  std::atomic<int64_t> last_message_ns_{0};
  mutable std::mutex snapshot_mu_;
  GroupSnapshot snapshot_;
  std::thread thread_;
};

}  // namespace olmo::service
