#include "coordinator/service/request_builder.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace olmo::service {
namespace {

// Smallest positive temperature and repetition penalty: dividing logits of |x| < ~1e4 by them
// stays finite in f32 with a wide margin.
constexpr float kMinPositive = 1e-6f;

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

}  // namespace

absl::StatusOr<BuiltRequest> RequestBuilder::FromGenerate(const v1::GenerateRequest& req) const {
  std::vector<int32_t> ids;
  switch (req.input_case()) {
    case v1::GenerateRequest::kText: {
      if (req.text().empty()) return Invalid("text: empty prompt");
      auto encoded =
          tokenizer_->Encode(req.text(),
                             req.sampling().allow_special_tokens() ? tokenizer::AddedTokens::kMatch
                                                                   : tokenizer::AddedTokens::kPlain,
                             tokenizer::InvalidUtf8::kReject);
      if (!encoded.ok()) {
        return Invalid(absl::StrFormat("text: %s", std::string(encoded.status().message())));
      }
      ids = std::move(*encoded);
      break;
    }
    case v1::GenerateRequest::kTokenIds:
      ids.assign(req.token_ids().ids().begin(), req.token_ids().ids().end());
      if (ids.empty()) return Invalid("token_ids: empty prompt");
      for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= vocab_size_) {
          return Invalid(
              absl::StrFormat("token_ids: id %d at index %d is outside the vocabulary "
                              "[0, %d)",
                              ids[i], i, vocab_size_));
        }
      }
      break;
    default:
      return Invalid("input: set text or token_ids");
  }
  return Finish(std::move(ids), req.sampling(), req.priority(), req.cache_salt());
}

absl::StatusOr<BuiltRequest> RequestBuilder::FromChat(const v1::ChatRequest& req) const {
  if (req.messages().empty()) return Invalid("messages: empty conversation");
  std::vector<tokenizer::ChatMessage> messages;
  for (const v1::ChatMessage& m : req.messages()) {
    tokenizer::ChatMessage c;
    c.role = m.role();
    if (m.has_content()) c.content = m.content();
    if (m.has_functions()) c.functions = m.functions();
    if (m.has_function_calls()) c.function_calls = m.function_calls();
    messages.push_back(std::move(c));
  }
  auto segments = tokenizer::RenderChat(*tokenizer_, chat_kind_, messages,
                                        /*add_generation_prompt=*/true);
  if (!segments.ok()) {
    return Invalid(absl::StrFormat("messages: %s", std::string(segments.status().message())));
  }
  auto ids = tokenizer::EncodeChat(*tokenizer_, *segments, req.sampling().allow_special_tokens());
  if (!ids.ok()) {
    return Invalid(absl::StrFormat("messages: %s", std::string(ids.status().message())));
  }
  return Finish(std::move(*ids), req.sampling(), req.priority(), req.cache_salt());
}

absl::StatusOr<BuiltRequest> RequestBuilder::Finish(std::vector<int32_t> prompt_ids,
                                                    const v1::SamplingParams& s, int32_t priority,
                                                    const std::string& cache_salt) const {
  const int64_t n = static_cast<int64_t>(prompt_ids.size());
  const int64_t max_len = limits_.max_model_len;
  const int64_t max_prompt =
      limits_.max_prompt_tokens > 0 ? limits_.max_prompt_tokens : max_len - 1;
  if (n > max_prompt) {
    return Invalid(absl::StrFormat("prompt: %d tokens, more than the limit of %d", n, max_prompt));
  }
  BuiltRequest out;
  engine::Request& r = out.engine;
  r.prompt_ids = std::move(prompt_ids);
  r.priority = priority;
  r.cache_salt = cache_salt;
  SamplingParams& p = r.sampling;
  if (s.has_temperature()) {
    if (!(s.temperature() >= 0.0f) || !std::isfinite(s.temperature())) {
      return Invalid(absl::StrFormat("temperature: must be >= 0, got %g", s.temperature()));
    }
    // logit / temperature must stay finite: an infinite processed logit makes every
    // probability NaN (use 0 for greedy).
    if (s.temperature() > 0.0f && s.temperature() < kMinPositive) {
      return Invalid(absl::StrFormat("temperature: 0 (greedy) or at least %g, got %g",
                                     kMinPositive, s.temperature()));
    }
    p.temperature = s.temperature();
  }
  if (s.has_top_k()) {
    if (s.top_k() < 0) return Invalid(absl::StrFormat("top_k: must be >= 0, got %d", s.top_k()));
    p.top_k = s.top_k();
  }
  if (s.has_top_p()) {
    if (!(s.top_p() > 0.0f && s.top_p() <= 1.0f)) {
      return Invalid(absl::StrFormat("top_p: must be in (0, 1], got %g", s.top_p()));
    }
    p.top_p = s.top_p();
  }
  if (s.has_min_p()) {
    if (!(s.min_p() >= 0.0f && s.min_p() <= 1.0f)) {
      return Invalid(absl::StrFormat("min_p: must be in [0, 1], got %g", s.min_p()));
    }
    p.min_p = s.min_p();
  }
  if (s.has_repetition_penalty()) {
    if (!(s.repetition_penalty() >= kMinPositive) || !std::isfinite(s.repetition_penalty())) {
      return Invalid(absl::StrFormat("repetition_penalty: must be at least %g, got %g",
                                     kMinPositive, s.repetition_penalty()));
    }
    p.repetition_penalty = s.repetition_penalty();
  }
  for (auto [name, has, v] :
       {std::tuple{"presence_penalty", s.has_presence_penalty(), s.presence_penalty()},
        std::tuple{"frequency_penalty", s.has_frequency_penalty(), s.frequency_penalty()}}) {
    if (has && !(v >= -2.0f && v <= 2.0f)) {
      return Invalid(absl::StrFormat("%s: must be in [-2, 2], got %g", name, v));
    }
  }
  p.presence_penalty = s.presence_penalty();
  p.frequency_penalty = s.frequency_penalty();
  if (s.logprobs() < 0 || s.logprobs() > limits_.max_logprobs) {
    return Invalid(absl::StrFormat("logprobs: must be in [0, %d], got %d", limits_.max_logprobs,
                                   s.logprobs()));
  }
  p.logprobs = s.logprobs();
  if (s.has_seed()) p.seed = s.seed();
  const int64_t remaining = max_len - n;
  if (s.has_max_tokens()) {
    if (s.max_tokens() < 1) {
      return Invalid(absl::StrFormat("max_tokens: must be >= 1, got %d", s.max_tokens()));
    }
    if (s.max_tokens() > remaining) {
      return Invalid(absl::StrFormat(
          "max_tokens: prompt (%d tokens) + max_tokens (%d) exceeds max_model_len %d", n,
          s.max_tokens(), max_len));
    }
    r.max_tokens = s.max_tokens();
    out.explicit_max_tokens = true;
  } else {
    r.max_tokens = static_cast<int32_t>(remaining);
  }
  if (s.min_tokens() < 0 || s.min_tokens() > r.max_tokens) {
    return Invalid(absl::StrFormat("min_tokens: must be in [0, max_tokens = %d], got %d",
                                   r.max_tokens, s.min_tokens()));
  }
  p.min_tokens = s.min_tokens();
  p.stop_token_ids = stop_token_ids_;
  for (int32_t id : s.stop_token_ids()) {
    if (id < 0 || id >= vocab_size_) {
      return Invalid(absl::StrFormat("stop_token_ids: id %d is outside the vocabulary [0, %d)", id,
                                     vocab_size_));
    }
    if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), id) == p.stop_token_ids.end()) {
      p.stop_token_ids.push_back(id);
    }
  }
  if (s.ignore_eos()) {  // the request's own stop ids still end it; the model's EOS does not
    p.stop_token_ids.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
    r.ignore_eos = false;
  }
  out.stop_strings.assign(s.stop().begin(), s.stop().end());
  auto matcher = requests::StopMatcher::Create(out.stop_strings, limits_.stops);
  if (!matcher.ok()) return matcher.status();
  return out;
}

}  // namespace olmo::service
