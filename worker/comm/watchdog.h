// Watchdog: detects a blocking call that runs past its deadline (DESIGN.md §2 "Hangs").
//
// How a hang is detected: every watched call registers itself (Begin) with its start time and a
// timeout, and unregisters (End) when it returns. A background thread wakes every poll interval
// and looks at the calls still registered; the first one older than its timeout is reported
// once through the OnHang callback with the rank, the call's description and the last step id
// set by SetStepId. MpiComm's callback logs that report and calls MPI_Abort(MPI_COMM_WORLD, 1),
// so a rank stuck in a collective (its peer died, deadlocked or diverged) takes the whole group
// down with a non-zero exit instead of hanging forever; the coordinator then re-queues the
// group's requests. Detection latency is at most timeout + poll interval.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace olmo::comm {

struct HangReport {
  int rank = 0;            // the reporting process's rank (world rank for MpiComm)
  std::string what;        // e.g. "allreduce of 4194304 floats on comm tp[2] rank 1/2"
  double elapsed_s = 0.0;  // how long the call had been running when detected
  double timeout_s = 0.0;
  int64_t step_id = -1;  // last SetStepId value, -1 if never set
};

std::string FormatHangReport(const HangReport& report);

class Watchdog {
 public:
  using OnHang = std::function<void(const HangReport&)>;

  // poll_interval_s > 0. on_hang runs on the watchdog thread, at most once per Watchdog.
  Watchdog(int rank, double poll_interval_s, OnHang on_hang);
  ~Watchdog();  // stops and joins the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Registers a call; timeout_s <= 0 means unwatched (returns 0, End(0) is a no-op).
  int64_t Begin(std::string what, double timeout_s);
  void End(int64_t ticket);

  void SetStepId(int64_t step_id);
  int64_t step_id() const;
  bool fired() const;

 private:
  struct Call {
    std::string what;
    std::chrono::steady_clock::time_point start;
    double timeout_s;
  };
  void Run();

  const int rank_;
  const std::chrono::duration<double> poll_interval_;
  const OnHang on_hang_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool fired_ = false;
  int64_t step_id_ = -1;
  int64_t next_ticket_ = 1;
  std::map<int64_t, Call> calls_;
  std::thread thread_;
};

// Registers a call for the duration of a scope.
class WatchdogScope {
 public:
  WatchdogScope(Watchdog* watchdog, std::string what, double timeout_s)
      : watchdog_(watchdog),
        ticket_(watchdog && timeout_s > 0 ? watchdog->Begin(std::move(what), timeout_s) : 0) {}
  ~WatchdogScope() {
    if (watchdog_ && ticket_ != 0) watchdog_->End(ticket_);
  }
  WatchdogScope(const WatchdogScope&) = delete;
  WatchdogScope& operator=(const WatchdogScope&) = delete;

 private:
  Watchdog* watchdog_;
  int64_t ticket_;
};

}  // namespace olmo::comm
