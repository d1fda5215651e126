// OutputProcessor: turns one request's engine updates into stream events (DESIGN.md §1 output
// pool): incremental detokenization (never half a UTF-8 character), stop strings across token
// boundaries (the matched stop is excluded from the text), usage counts. After a stop string
// matches, later tokens (lookahead, pipeline) are discarded and not counted, and the caller
// aborts the sequence in the engine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/plan.h"
#include "coordinator/engine/scheduler.h"
#include "coordinator/requests/stop_matcher.h"
#include "coordinator/tokenizer/incremental_detokenizer.h"

namespace olmo::requests {

enum class Finish { kNone, kStop, kLength, kAbort, kShutdown };

struct OutputEvent {
  std::vector<TokenLogprob> tokens;  // id + logprob of each new token
  std::vector<std::vector<TokenLogprob>> top_logprobs;
  std::string text;                  // text delta
  Finish finish = Finish::kNone;     // set on the final event
  std::string matched_stop;          // stop string, or the stop token's text
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;     // counted so far
};

class OutputProcessor {
 public:
  OutputProcessor(const tokenizer::Tokenizer* tokenizer, StopMatcher stops, int32_t prompt_tokens,
                  bool skip_special = true);

  // Applies one update. Once finished(), further updates return an empty event.
  OutputEvent Apply(const engine::SeqUpdate& update);
  // Ends the stream without a token (abort, deadline, shutdown); releases held-back text.
  OutputEvent End(Finish reason);
  bool finished() const { return finish_ != Finish::kNone; }
  // True when a stop string (not a stop token) ended the stream: the engine still runs the
  // sequence and must abort it.
  bool needs_abort() const { return stopped_by_string_; }

 private:
  OutputEvent Base() const;
  const tokenizer::Tokenizer* tokenizer_;
  tokenizer::IncrementalDetokenizer detok_;
  StopMatcher stops_;
  int32_t prompt_tokens_;
  int32_t completion_tokens_ = 0;
  Finish finish_ = Finish::kNone;
  bool stopped_by_string_ = false;
};

}  // namespace olmo::requests
