// Tokenizer: the Olmo 3 byte-level BPE tokenizer, loaded from an HF tokenizer.json or from a
// tiktoken rank file plus an added-tokens table. Encode matches added tokens first (leftmost,
// longest) in the raw text, pre-tokenizes the rest with the split regex (PCRE2, UTF + UCP, JIT)
// and BPE-encodes each piece; Decode joins token bytes and decodes UTF-8 lossily.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/bpe.h"

namespace olmo::tokenizer {

enum class AddedTokens {
  kMatch,  // added tokens in the text become their ids (trusted text: chat framing)
  kPlain,  // added-token text is encoded as ordinary text (untrusted message content)
};

enum class InvalidUtf8 {
  kReplace,  // each maximal invalid subsequence becomes U+FFFD
  kReject,   // InvalidArgument
};

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;  // skipped by Decode(skip_special = true)
};

class Tokenizer {
 public:
  ~Tokenizer();

  // `path`: a model directory (its tokenizer.json) or a tokenizer.json file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromTokenizerJson(const std::string& path);
  // A tiktoken rank file plus the added-token table `variant` ("dolma2_base" or
  // "olmo3_instruct") of an olmo3_special_tokens.json file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromTiktoken(const std::string& ranks_path,
                                                                 const std::string& added_path,
                                                                 const std::string& variant);

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              AddedTokens added = AddedTokens::kMatch,
                                              InvalidUtf8 invalid = InvalidUtf8::kReplace) const;
  // Raw bytes of the ids joined (specials dropped when skip_special). Ids outside the vocabulary
  // are an error.
  absl::StatusOr<std::string> DecodeBytes(const std::vector<int32_t>& ids,
                                          bool skip_special = false) const;
  // DecodeBytes followed by lossy UTF-8 decoding.
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids,
                                     bool skip_special = false) const;

  int32_t vocab_size() const { return vocab_size_; }
  bool is_special(int32_t id) const;
  // Bytes of one token (the added token's content for added tokens). id must be valid.
  const std::string& token_bytes(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  // The id of an added token's exact content, or -1.
  int32_t added_token_id(std::string_view content) const;

 private:
  Tokenizer() = default;
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromTokenizerJsonImpl(const std::string& path);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromTiktokenImpl(const std::string& ranks_path,
                                                                     const std::string& added_path,
                                                                     const std::string& variant);
  absl::Status Init(std::unique_ptr<Bpe> bpe, std::vector<AddedToken> added,
                    const std::string& pattern);
  void EncodePlain(std::string_view text, std::vector<int32_t>* out) const;

  std::unique_ptr<Bpe> bpe_;
  std::vector<AddedToken> added_;
  std::vector<std::string> id_bytes_;   // [vocab]: token bytes (added tokens: content)
  std::vector<uint8_t> special_;        // [vocab]
  int32_t vocab_size_ = 0;
  bool ignore_merges_ = true;
  struct Regex;
  std::unique_ptr<Regex> regex_;
};

}  // namespace olmo::tokenizer
