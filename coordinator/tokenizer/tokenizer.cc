#define PCRE2_CODE_UNIT_WIDTH 8
#include "coordinator/tokenizer/tokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "coordinator/tokenizer/byte_level.h"
#include "coordinator/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace olmo::tokenizer {
namespace {

using nlohmann::json;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrFormat("%s: cannot open", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Unicode White_Space as Rust/Oniguruma define it (PCRE2's UCP \s differs at U+180E).
constexpr const char* kWhiteSpace =
    "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

// Spells out \s and \S of a split pattern with kWhiteSpace.
std::string ExpandWhiteSpace(const std::string& p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char n = p[i + 1];
      if (n == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (n == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else {
        out += c;
        out += n;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) in_class = true;
    else if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

struct Tokenizer::Regex {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Regex() {
    if (code) pcre2_code_free(code);
  }
};

Tokenizer::~Tokenizer() = default;

absl::Status Tokenizer::Init(std::unique_ptr<Bpe> bpe, std::vector<AddedToken> added,
                             const std::string& pattern) {
  bpe_ = std::move(bpe);
  added_ = std::move(added);
  vocab_size_ = bpe_->size();
  for (const AddedToken& t : added_) vocab_size_ = std::max(vocab_size_, t.id + 1);
  id_bytes_.assign(static_cast<size_t>(vocab_size_), "");
  special_.assign(static_cast<size_t>(vocab_size_), 0);
  for (int32_t i = 0; i < bpe_->size(); ++i) id_bytes_[i] = bpe_->bytes(i);
  for (const AddedToken& t : added_) {
    if (t.content.empty()) return absl::InvalidArgumentError("added token with empty content");
    id_bytes_[t.id] = t.content;
    special_[t.id] = t.special;
  }
  for (int b = 0; b < 256; ++b) {
    if (bpe_->Find(std::string(1, static_cast<char>(b))) < 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("vocabulary has no token for byte 0x%02x: not a byte-level BPE", b));
    }
  }
  std::string expanded = ExpandWhiteSpace(pattern);
  int err = 0;
  PCRE2_SIZE offset = 0;
  regex_ = std::make_unique<Regex>();
  regex_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(expanded.c_str()), expanded.size(),
                               PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (regex_->code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    return absl::InvalidArgumentError(absl::StrFormat(
        "pre-tokenizer regex does not compile at offset %d: %s", offset, reinterpret_cast<char*>(msg)));
  }
  // JIT when the platform has it; the interpreter otherwise.
  regex_->jit = pcre2_jit_compile(regex_->code, PCRE2_JIT_COMPLETE) == 0;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromTiktoken(const std::string& ranks_path,
                                                                   const std::string& added_path,
                                                                   const std::string& variant) {
  try {
    return FromTiktokenImpl(ranks_path, added_path, variant);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: malformed: %s", added_path, e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromTiktokenImpl(
    const std::string& ranks_path, const std::string& added_path, const std::string& variant) {
  OLMO_ASSIGN_OR_RETURN(std::string text, ReadFile(ranks_path));
  std::vector<std::string> tokens;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (line.empty()) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
    std::string bytes;
    int64_t rank = -1;
    if (parts.size() != 2 || !absl::Base64Unescape(parts[0], &bytes) ||
        !absl::SimpleAtoi(parts[1], &rank) || rank < 0 || rank > 10'000'000 || bytes.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s line %d: expected '<base64 bytes> <rank>'", ranks_path, line_no));
    }
    if (static_cast<size_t>(rank) >= tokens.size()) tokens.resize(static_cast<size_t>(rank) + 1);
    tokens[rank] = std::move(bytes);
  }
  OLMO_ASSIGN_OR_RETURN(std::string added_text, ReadFile(added_path));
  json j = json::parse(added_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(added_path + ": invalid JSON");
  }
  if (!j.contains("variants") || !j["variants"].contains(variant)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: no added-token variant '%s'", added_path, variant));
  }
  std::vector<AddedToken> added;
  for (const json& t : j["variants"][variant]["added_tokens"]) {
    if (!t.contains("id") || !t.contains("content") || !t["id"].is_number_integer() ||
        !t["content"].is_string()) {
      return absl::InvalidArgumentError(added_path + ": added token needs integer id and content");
    }
    // `special` may be null for unverified entries: not special.
    bool special = t.contains("special") && t["special"].is_boolean() && t["special"].get<bool>();
    added.push_back({t["id"].get<int32_t>(), t["content"].get<std::string>(), special});
  }
  std::string pattern = j.value("pre_tokenizer_regex", "");
  if (pattern.empty()) return absl::InvalidArgumentError(added_path + ": pre_tokenizer_regex missing");
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  OLMO_RETURN_IF_ERROR(tok->Init(std::make_unique<Bpe>(std::move(tokens)), std::move(added), pattern));
  return tok;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromTokenizerJson(const std::string& path) {
  try {
    return FromTokenizerJsonImpl(path);
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong JSON type
    return absl::InvalidArgumentError(absl::StrFormat("%s: malformed tokenizer.json: %s", path, e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromTokenizerJsonImpl(const std::string& path) {
  std::string file = path;
  if (std::ifstream(path + "/tokenizer.json").good()) file = path + "/tokenizer.json";
  OLMO_ASSIGN_OR_RETURN(std::string text, ReadFile(file));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(file + ": invalid JSON");
  auto unsupported = [&](const std::string& what) {
    return absl::UnimplementedError(absl::StrFormat("%s: unsupported tokenizer feature: %s", file, what));
  };
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    return unsupported("normalizer " + j["normalizer"].value("type", std::string("?")));
  }
  // Pre-tokenizer: Sequence[Split(Regex, Isolated), ByteLevel(use_regex = false)].
  std::string pattern;
  const json& pre = j.value("pre_tokenizer", json());
  bool ok = pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
            pre["pretokenizers"].size() == 2;
  if (ok) {
    const json& split = pre["pretokenizers"][0];
    const json& bl = pre["pretokenizers"][1];
    ok = split.value("type", "") == "Split" && split.contains("pattern") &&
         split["pattern"].contains("Regex") && split.value("behavior", "") == "Isolated" &&
         !split.value("invert", false) && bl.value("type", "") == "ByteLevel" &&
         !bl.value("add_prefix_space", false) && !bl.value("use_regex", true);
    if (ok) pattern = split["pattern"]["Regex"].get<std::string>();
  }
  if (!ok) {
    return unsupported("pre_tokenizer " + (pre.is_object() ? pre.dump().substr(0, 120) : "null") +
                       " (only Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)])");
  }
  const json& dec = j.value("decoder", json());
  if (!dec.is_object() || dec.value("type", "") != "ByteLevel") {
    return unsupported("decoder " + (dec.is_object() ? dec.value("type", std::string("?")) : "null") +
                       " (only ByteLevel)");
  }
  const json& post = j.value("post_processor", json());
  if (!post.is_null() && post.value("type", "") != "ByteLevel") {
    return unsupported("post_processor " + post.value("type", std::string("?")) +
                       " (it would add tokens to every encoding)");
  }
  const json& model = j.value("model", json());
  if (!model.is_object() || model.value("type", "") != "BPE") {
    return unsupported("model type " + (model.is_object() ? model.value("type", std::string("?")) : "null"));
  }
  if (model.value("byte_fallback", false)) return unsupported("model.byte_fallback");
  if (model.contains("dropout") && !model["dropout"].is_null()) return unsupported("model.dropout");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(k) && model[k].is_string() && !model[k].get<std::string>().empty()) {
      return unsupported(std::string("model.") + k);
    }
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) return unsupported("model.vocab missing");
  std::vector<std::string> tokens;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer()) return absl::InvalidArgumentError(file + ": vocab ids must be integers");
    int64_t id = it.value().get<int64_t>();
    std::optional<std::string> bytes = ByteLevelDecode(it.key());
    if (id < 0 || id > 10'000'000 || !bytes.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: vocab entry '%s' is not a byte-level token", file, it.key()));
    }
    if (static_cast<size_t>(id) >= tokens.size()) tokens.resize(static_cast<size_t>(id) + 1);
    tokens[id] = std::move(*bytes);
  }
  auto bpe = std::make_unique<Bpe>(tokens);
  int32_t rank = 0;
  for (const json& m : model.value("merges", json::array())) {
    std::string a, b;
    if (m.is_string()) {
      std::string s = m.get<std::string>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos) return absl::InvalidArgumentError(file + ": bad merge '" + s + "'");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(file + ": merges must be strings or string pairs");
    }
    auto ia = model["vocab"].find(a), ib = model["vocab"].find(b);
    if (ia == model["vocab"].end() || ib == model["vocab"].end()) {
      return absl::InvalidArgumentError(file + ": merge of unknown tokens '" + a + "' '" + b + "'");
    }
    bpe->AddMerge(ia->get<int32_t>(), ib->get<int32_t>(), rank++);
  }
  std::vector<AddedToken> added;
  for (const json& t : j.value("added_tokens", json::array())) {
    for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
      if (t.value(flag, false)) return unsupported(std::string("added token ") + flag);
    }
    bool special = t.contains("special") && t["special"].is_boolean() && t["special"].get<bool>();
    added.push_back({t.value("id", -1), t.value("content", std::string()), special});
    if (added.back().id < 0) return absl::InvalidArgumentError(file + ": added token without id");
  }
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  tok->ignore_merges_ = model.value("ignore_merges", false);
  if (rank == 0) tok->ignore_merges_ = true;  // no merges: rank rule over vocab ids
  OLMO_RETURN_IF_ERROR(tok->Init(std::move(bpe), std::move(added), pattern));
  return tok;
}

void Tokenizer::EncodePlain(std::string_view text, std::vector<int32_t>* out) const {
  if (text.empty()) return;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(regex_->code, nullptr);
  size_t pos = 0;
  auto emit = [&](std::string_view piece) {
    if (piece.empty()) return;
    if (ignore_merges_) {
      int32_t id = bpe_->Find(piece);
      if (id >= 0) {
        out->push_back(id);
        return;
      }
    }
    bpe_->Encode(piece, out);
  };
  while (pos < text.size()) {
    int rc = regex_->jit
                 ? pcre2_jit_match(regex_->code, reinterpret_cast<PCRE2_SPTR>(text.data()),
                                   text.size(), pos, 0, md, nullptr)
                 : pcre2_match(regex_->code, reinterpret_cast<PCRE2_SPTR>(text.data()),
                               text.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) {
      emit(text.substr(pos));  // unreachable for the Olmo 3 pattern, which covers every character
      break;
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t start = ov[0], end = ov[1];
    if (start > pos) emit(text.substr(pos, start - pos));
    if (end == start) {  // empty match: step one character
      size_t sub;
      bool trunc;
      size_t len = DecodeOne(text.substr(end), &sub, &trunc);
      emit(text.substr(start, std::max<size_t>(len, 1)));
      pos = start + std::max<size_t>(len, 1);
      continue;
    }
    emit(text.substr(start, end - start));
    pos = end;
  }
  pcre2_match_data_free(md);
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, AddedTokens added,
                                                       InvalidUtf8 invalid) const {
  std::string cleaned;
  if (!IsValidUtf8(text)) {
    if (invalid == InvalidUtf8::kReject) return absl::InvalidArgumentError("text: invalid UTF-8");
    cleaned = LossyUtf8(text);
    text = cleaned;
  }
  std::vector<int32_t> out;
  if (added == AddedTokens::kPlain || added_.empty()) {
    EncodePlain(text, &out);
    return out;
  }
  size_t seg = 0, i = 0;
  while (i < text.size()) {
    const AddedToken* best = nullptr;
    for (const AddedToken& t : added_) {
      if (t.content.size() <= text.size() - i && text.compare(i, t.content.size(), t.content) == 0 &&
          (best == nullptr || t.content.size() > best->content.size())) {
        best = &t;
      }
    }
    if (best == nullptr) {
      ++i;
      continue;
    }
    EncodePlain(text.substr(seg, i - seg), &out);
    out.push_back(best->id);
    i += best->content.size();
    seg = i;
  }
  EncodePlain(text.substr(seg), &out);
  return out;
}

absl::StatusOr<std::string> Tokenizer::DecodeBytes(const std::vector<int32_t>& ids,
                                                   bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_ || id_bytes_[id].empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("token id %d is not in the vocabulary [0, %d)", id, vocab_size_));
    }
    if (skip_special && special_[id]) continue;
    bytes += id_bytes_[id];
  }
  return bytes;
}

absl::StatusOr<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids,
                                              bool skip_special) const {
  OLMO_ASSIGN_OR_RETURN(std::string bytes, DecodeBytes(ids, skip_special));
  return LossyUtf8(bytes);
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size_ && special_[id];
}

const std::string& Tokenizer::token_bytes(int32_t id) const { return id_bytes_[id]; }

int32_t Tokenizer::added_token_id(std::string_view content) const {
  for (const AddedToken& t : added_) {
    if (t.content == content) return t.id;
  }
  return -1;
}

}  // namespace olmo::tokenizer
