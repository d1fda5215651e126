// RequestBuilder: client requests (olmo.v1 Generate/Chat) -> engine requests, with every check of
// the client API (DESIGN.md §1): bad input is InvalidArgument naming the field, never a crash.
// No gRPC here (protobuf messages only), so it is unit-tested without a server.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/engine/scheduler.h"
#include "coordinator/requests/stop_matcher.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "olmo/v1/inference.pb.h"

namespace olmo::service {

struct RequestLimits {
  int64_t max_model_len = 0;      // prompt + max_tokens at most
  int64_t max_prompt_tokens = 0;  // 0: max_model_len - 1
  int32_t max_logprobs = 20;
  requests::StopLimits stops;
};

// What the coordinator needs to run one request: the engine request (seq_id left to the caller)
// and the stop strings for its OutputProcessor.
struct BuiltRequest {
  engine::Request engine;
  std::vector<std::string> stop_strings;
  bool explicit_max_tokens = false;
};

class RequestBuilder {
 public:
  // tokenizer and chat kind must outlive the builder. stop_token_ids: the model's EOS ids.
  RequestBuilder(const tokenizer::Tokenizer* tokenizer, tokenizer::ChatTemplateKind chat_kind,
                 std::vector<int32_t> stop_token_ids, int64_t vocab_size, RequestLimits limits)
      : tokenizer_(tokenizer),
        chat_kind_(chat_kind),
        stop_token_ids_(std::move(stop_token_ids)),
        vocab_size_(vocab_size),
        limits_(limits) {}

  absl::StatusOr<BuiltRequest> FromGenerate(const v1::GenerateRequest& request) const;
  absl::StatusOr<BuiltRequest> FromChat(const v1::ChatRequest& request) const;

  const RequestLimits& limits() const { return limits_; }
  void set_max_model_len(int64_t n) { limits_.max_model_len = n; }

 private:
  // Sampling checks and defaults; prompt_ids must be set.
  absl::StatusOr<BuiltRequest> Finish(std::vector<int32_t> prompt_ids,
                                      const v1::SamplingParams& sampling, int32_t priority,
                                      const std::string& cache_salt) const;

  const tokenizer::Tokenizer* tokenizer_;
  tokenizer::ChatTemplateKind chat_kind_;
  std::vector<int32_t> stop_token_ids_;
  int64_t vocab_size_;
  RequestLimits limits_;
};

}  // namespace olmo::service
