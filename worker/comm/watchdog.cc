#include "worker/comm/watchdog.h"

#include "absl/strings/str_format.h"

namespace olmo::comm {

std::string FormatHangReport(const HangReport& r) {
  return absl::StrFormat(
      "watchdog: rank %d: %s has run %.1f s (timeout %.1f s); last step_id %d; aborting", r.rank,
      r.what, r.elapsed_s, r.timeout_s, r.step_id);
}

Watchdog::Watchdog(int rank, double poll_interval_s, OnHang on_hang)
    : rank_(rank), poll_interval_(poll_interval_s), on_hang_(std::move(on_hang)) {
  thread_ = std::thread([this] { Run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

int64_t Watchdog::Begin(std::string what, double timeout_s) {
  if (timeout_s <= 0) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  int64_t ticket = next_ticket_++;
  calls_.emplace(ticket, Call{std::move(what), std::chrono::steady_clock::now(), timeout_s});
  return ticket;
}

void Watchdog::End(int64_t ticket) {
  if (ticket == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  calls_.erase(ticket);
}

void Watchdog::SetStepId(int64_t step_id) {
  std::lock_guard<std::mutex> lock(mu_);
  step_id_ = step_id;
}

int64_t Watchdog::step_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return step_id_;
}

bool Watchdog::fired() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fired_;
}

void Watchdog::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, poll_interval_, [this] { return stop_; });
    if (stop_ || fired_) continue;
    auto now = std::chrono::steady_clock::now();
    for (const auto& [ticket, call] : calls_) {
      double elapsed = std::chrono::duration<double>(now - call.start).count();
      if (elapsed <= call.timeout_s) continue;
      fired_ = true;
      HangReport report{rank_, call.what, elapsed, call.timeout_s, step_id_};
      // The callback may never return (MPI_Abort); run it unlocked so End() callers don't wedge.
      lock.unlock();
      on_hang_(report);
      lock.lock();
      break;
    }
  }
}

}  // namespace olmo::comm
