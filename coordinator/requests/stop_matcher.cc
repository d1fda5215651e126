#include "coordinator/requests/stop_matcher.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace olmo::requests {

absl::StatusOr<StopMatcher> StopMatcher::Create(std::vector<std::string> stops,
                                                const StopLimits& limits) {
  if (static_cast<int>(stops.size()) > limits.max_stop_strings) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "stop: %d stop strings, at most %d allowed", stops.size(), limits.max_stop_strings));
  }
  for (size_t i = 0; i < stops.size(); ++i) {
    if (stops[i].empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("stop[%d]: empty stop string", i));
    }
    if (static_cast<int>(stops[i].size()) > limits.max_stop_bytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "stop[%d]: %d bytes, at most %d allowed", i, stops[i].size(), limits.max_stop_bytes));
    }
  }
  return StopMatcher(std::move(stops));
}

size_t StopMatcher::PartialSuffix() const {
  size_t best = 0;
  for (const std::string& s : stops_) {
    // Longest k < |s| with held_ ending in s[0, k).
    for (size_t k = std::min(held_.size(), s.size() - 1); k > best; --k) {
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        best = k;
        break;
      }
    }
  }
  return best;
}

std::string StopMatcher::Feed(std::string_view delta) {
  if (matched_.has_value()) return "";
  held_.append(delta);
  // The earliest complete stop string wins (ties: the longer one).
  size_t best_pos = std::string::npos;
  const std::string* best = nullptr;
  for (const std::string& s : stops_) {
    size_t pos = held_.find(s);
    if (pos != std::string::npos &&
        (pos < best_pos || (pos == best_pos && s.size() > best->size()))) {
      best_pos = pos;
      best = &s;
    }
  }
  if (best != nullptr) {
    matched_ = *best;
    std::string out = held_.substr(0, best_pos);
    held_.clear();
    return out;
  }
  size_t keep = PartialSuffix();
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::Flush() {
  std::string out = matched_.has_value() ? "" : held_;
  held_.clear();
  return out;
}

}  // namespace olmo::requests
