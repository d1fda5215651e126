// olmo-tokenize: encode text to Olmo 3 token ids or decode ids to text (see --help).
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace {

const char* kUsage = R"(olmo-tokenize: Olmo 3 tokenizer on the command line.

  olmo-tokenize --tokenizer PATH [--added-tokens match|plain] [--decode] [--skip-special] [--jsonl]

  --tokenizer PATH       a model directory (its tokenizer.json), a tokenizer.json, or a
                         .tiktoken rank file (then also --added-tokens-file and --variant)
  --added-tokens-file F  added-token tables JSON (olmo3_special_tokens.json format)
  --variant V            dolma2_base or olmo3_instruct (with a .tiktoken file)
  --added-tokens MODE    match (default): added-token text becomes its id;
                         plain: it is encoded as ordinary text (for untrusted text)
  --decode               ids to text instead of text to ids
  --skip-special         with --decode: drop special tokens
  --jsonl                one request per stdin line: {"text": ...} or {"utf8_hex": ...} gives
                         {"ids": [...]}; with --decode {"ids": [...]} gives
                         {"text": ..., "utf8_hex": ...}
Without --jsonl, all of stdin is one text (or, with --decode, whitespace/comma separated ids).
Invalid UTF-8 input is replaced by U+FFFD per maximal invalid subsequence.
)";

int Fail(const std::string& msg) {
  std::fprintf(stderr, "olmo-tokenize: error: %s\n", msg.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path, added_file, variant, mode = "match";
  bool decode = false, jsonl = false, skip = false;
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        Fail(f + ": missing value");
        std::exit(1);
      }
      return argv[++i];
    };
    if (f == "--help" || f == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (f == "--tokenizer") path = value();
    else if (f == "--added-tokens-file") added_file = value();
    else if (f == "--variant") variant = value();
    else if (f == "--added-tokens") mode = value();
    else if (f == "--decode") decode = true;
    else if (f == "--skip-special") skip = true;
    else if (f == "--jsonl") jsonl = true;
    else return Fail("unknown flag " + f + " (see --help)");
  }
  if (path.empty()) return Fail("--tokenizer: required");
  if (mode != "match" && mode != "plain") return Fail("--added-tokens: expected match or plain");
  absl::StatusOr<std::unique_ptr<olmo::tokenizer::Tokenizer>> tok;
  if (path.size() > 9 && path.substr(path.size() - 9) == ".tiktoken") {
    if (added_file.empty() || variant.empty()) {
      return Fail("a .tiktoken file needs --added-tokens-file and --variant");
    }
    tok = olmo::tokenizer::Tokenizer::FromTiktoken(path, added_file, variant);
  } else {
    tok = olmo::tokenizer::Tokenizer::FromTokenizerJson(path);
  }
  if (!tok.ok()) return Fail(std::string(tok.status().message()));
  const auto added = mode == "match" ? olmo::tokenizer::AddedTokens::kMatch
                                     : olmo::tokenizer::AddedTokens::kPlain;

  auto encode = [&](const std::string& text) -> absl::StatusOr<nlohmann::json> {
    auto ids = (*tok)->Encode(text, added);
    if (!ids.ok()) return ids.status();
    return nlohmann::json{{"ids", *ids}};
  };
  auto decode_ids = [&](const std::vector<int32_t>& ids) -> absl::StatusOr<nlohmann::json> {
    auto bytes = (*tok)->DecodeBytes(ids, skip);
    if (!bytes.ok()) return bytes.status();
    auto text = (*tok)->Decode(ids, skip);
    return nlohmann::json{{"text", *text}, {"utf8_hex", absl::BytesToHexString(*bytes)}};
  };

  if (!jsonl) {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    std::string input = ss.str();
    absl::StatusOr<nlohmann::json> out;
    if (decode) {
      std::vector<int32_t> ids;
      for (absl::string_view p : absl::StrSplit(input, absl::ByAnyChar(" \t\n\r,"), absl::SkipEmpty())) {
        int32_t id;
        if (!absl::SimpleAtoi(p, &id)) return Fail("not a token id: '" + std::string(p) + "'");
        ids.push_back(id);
      }
      out = decode_ids(ids);
    } else {
      out = encode(input);
    }
    if (!out.ok()) return Fail(std::string(out.status().message()));
    std::cout << out->dump() << "\n";
    return 0;
  }
  std::string line;
  int line_no = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json req = nlohmann::json::parse(line, nullptr, false);
    auto bad = [&](const std::string& why) {
      return Fail("line " + std::to_string(line_no) + ": " + why);
    };
    if (req.is_discarded() || !req.is_object()) return bad("not a JSON object");
    absl::StatusOr<nlohmann::json> out;
    if (decode) {
      if (!req.contains("ids") || !req["ids"].is_array()) return bad("expected {\"ids\": [...]}");
      std::vector<int32_t> ids;
      for (const auto& v : req["ids"]) {
        if (!v.is_number_integer()) return bad("ids must be integers");
        ids.push_back(v.get<int32_t>());
      }
      out = decode_ids(ids);
    } else if (req.contains("text") && req["text"].is_string()) {
      out = encode(req["text"].get<std::string>());
    } else if (req.contains("utf8_hex") && req["utf8_hex"].is_string()) {
      std::string hex = req["utf8_hex"].get<std::string>();
      if (hex.size() % 2 != 0 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
        return bad("utf8_hex: not a hex string");
      }
      out = encode(absl::HexStringToBytes(hex));
    } else {
      return bad("expected {\"text\": ...} or {\"utf8_hex\": ...}");
    }
    if (!out.ok()) return bad(std::string(out.status().message()));
    std::cout << out->dump() << "\n";
  }
  return 0;
}
