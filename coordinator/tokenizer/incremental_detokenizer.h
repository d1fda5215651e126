// Streaming detokenization: ids fed one by one give text deltas whose concatenation (plus Finish)
// equals Tokenizer::Decode of all ids; no delta ends inside a UTF-8 character. An incomplete tail
// is held back until it completes, and Finish() turns a dangling one into U+FFFD.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace olmo::tokenizer {

class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer* tokenizer, bool skip_special)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}

  // The text that became final with this token (may be empty).
  absl::StatusOr<std::string> Push(int32_t id);
  // Text for a dangling incomplete tail (U+FFFD per maximal subpart), then resets.
  std::string Finish();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace olmo::tokenizer
