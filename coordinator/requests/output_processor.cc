#include "coordinator/requests/output_processor.h"

namespace olmo::requests {

OutputProcessor::OutputProcessor(const tokenizer::Tokenizer* tokenizer, StopMatcher stops,
                                 int32_t prompt_tokens, bool skip_special)
    : tokenizer_(tokenizer),
      detok_(tokenizer, skip_special),
      stops_(std::move(stops)),
      prompt_tokens_(prompt_tokens) {}

OutputEvent OutputProcessor::Base() const {
  OutputEvent e;
  e.prompt_tokens = prompt_tokens_;
  e.completion_tokens = completion_tokens_;
  return e;
}

OutputEvent OutputProcessor::Apply(const engine::SeqUpdate& u) {
  if (finished()) return Base();  // generated after the end: discarded, not counted
  OutputEvent e;
  if (u.has_token) {
    ++completion_tokens_;
    e.tokens.push_back({u.token_id, u.logprob});
    e.top_logprobs.push_back(u.top_logprobs);
    const bool is_stop_token = u.finish == engine::FinishReason::kStop;
    absl::StatusOr<std::string> delta =
        is_stop_token ? std::string() : detok_.Push(u.token_id);  // the stop token is not text
    e.text = stops_.Feed(delta.ok() ? *delta : std::string());
    if (stops_.matched().has_value()) {
      finish_ = Finish::kStop;
      stopped_by_string_ = u.finish == engine::FinishReason::kNone;
      e.matched_stop = *stops_.matched();
    } else if (is_stop_token) {
      e.text += stops_.Feed(detok_.Finish());
      e.text += stops_.Flush();
      finish_ = Finish::kStop;
      auto t = tokenizer_->Decode({u.token_id});
      e.matched_stop = t.ok() ? *t : std::string();
    }
  }
  if (!finished() && u.finish == engine::FinishReason::kLength) {
    e.text += stops_.Feed(detok_.Finish());
    if (stops_.matched().has_value()) {
      finish_ = Finish::kStop;
      e.matched_stop = *stops_.matched();
    } else {
      e.text += stops_.Flush();
      finish_ = Finish::kLength;
    }
  }
  e.finish = finish_;
  e.prompt_tokens = prompt_tokens_;
  e.completion_tokens = completion_tokens_;
  return e;
}

OutputEvent OutputProcessor::End(Finish reason) {
  OutputEvent e = Base();
  if (finished()) return e;
  e.text = stops_.Feed(detok_.Finish());
  if (stops_.matched().has_value()) {
    finish_ = Finish::kStop;
    e.matched_stop = *stops_.matched();
  } else {
    e.text += stops_.Flush();
    finish_ = reason;
  }
  e.finish = finish_;
  return e;
}

}  // namespace olmo::requests
