// StopMatcher: stop strings over a stream of text deltas (DESIGN.md §1 output processing). Text
// is released only when it can no longer be the start of a stop string: the longest suffix that
// is a prefix of some stop string is held back. When a stop string completes, the text before it
// is released, the stop string itself is not, and the match is reported.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace olmo::requests {

struct StopLimits {
  int max_stop_strings = 16;
  int max_stop_bytes = 256;  // per stop string
};

class StopMatcher {
 public:
  // InvalidArgument (naming "stop") for an empty string or one over the limits.
  static absl::StatusOr<StopMatcher> Create(std::vector<std::string> stops,
                                            const StopLimits& limits = {});

  // Feeds a text delta. Returns the text that is now final (may be empty). After a match, every
  // later call returns "" and matched() stays set.
  std::string Feed(std::string_view delta);
  // End of stream: releases what was held back (no stop can complete any more).
  std::string Flush();
  // The stop string that ended the stream, if any.
  const std::optional<std::string>& matched() const { return matched_; }

 private:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Length of the longest suffix of held_ that is a proper prefix of some stop string.
  size_t PartialSuffix() const;

  std::vector<std::string> stops_;
  std::string held_;
  std::optional<std::string> matched_;
};

}  // namespace olmo::requests
