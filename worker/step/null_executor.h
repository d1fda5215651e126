// NullExecutor: a StepExecutor with no model. Every sampled sequence gets a deterministic token
// (a function of seq_id and position); used to measure the scheduler and the coordinator<->group
// round trip without model time (olmo-worker --null-model, olmo-bench-scheduler). Submit and
// Collect may be called from different threads.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>

#include "common/step_executor.h"

namespace olmo::step {

class NullExecutor final : public StepExecutor {
 public:
  explicit NullExecutor(const ExecutorInfo& info, int max_in_flight = 1)
      : info_(info), max_in_flight_(max_in_flight) {}
  const ExecutorInfo& info() const override { return info_; }
  absl::StatusOr<StepResult> Execute(const StepPlan& plan) override {
    StepResult r;
    r.step_id = plan.step_id;
    for (const SeqStep& s : plan.seqs) {
      if (!s.sample) continue;
      SeqResult x;
      x.seq_id = s.seq_id;
      x.epoch = s.epoch;
      const int64_t pos = s.start_pos + static_cast<int64_t>(s.token_ids.size());
      x.token_id = static_cast<int32_t>((s.seq_id * 7919 + pos * 104729) % info_.vocab_size);
      x.logprob = -1.0f;
      r.seqs.push_back(x);
    }
    return r;
  }
  int max_in_flight() const override { return max_in_flight_; }
  absl::Status Submit(const StepPlan& plan) override {
    absl::StatusOr<StepResult> r = Execute(plan);
    std::lock_guard<std::mutex> lock(mu_);
    done_.push_back(std::move(*r));
    cv_.notify_all();
    return absl::OkStatus();
  }
  absl::StatusOr<StepResult> Collect() override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !done_.empty(); });
    StepResult r = std::move(done_.front());
    done_.pop_front();
    return r;
  }

 private:
  ExecutorInfo info_;
  int max_in_flight_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StepResult> done_;
};

}  // namespace olmo::step
