#include "coordinator/tokenizer/incremental_detokenizer.h"

#include "common/status_macros.h"
#include "coordinator/tokenizer/utf8.h"

namespace olmo::tokenizer {

absl::StatusOr<std::string> IncrementalDetokenizer::Push(int32_t id) {
  OLMO_ASSIGN_OR_RETURN(std::string bytes, tokenizer_->DecodeBytes({id}, skip_special_));
  pending_ += bytes;
  std::string out;
  size_t consumed = AppendLossy(pending_, /*final=*/false, &out);
  pending_.erase(0, consumed);
  return out;
}

std::string IncrementalDetokenizer::Finish() {
  std::string out;
  AppendLossy(pending_, /*final=*/true, &out);
  pending_.clear();
  return out;
}

}  // namespace olmo::tokenizer
