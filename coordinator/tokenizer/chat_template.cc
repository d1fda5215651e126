#include "coordinator/tokenizer/chat_template.h"

#include <openssl/sha.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace olmo::tokenizer {
namespace {

// SHA-256 of the committed Jinja texts (tests/data/tokenizer/chat_templates).
constexpr const char* kInstructSha =
    "1fd2eac6d6f73da1f9e30d9b0511f91a70cc8455ffffe48d20f48e77357f5029";
constexpr const char* kThinkSha =
    "6d549883b5ed12879e191845c256a30c7dfd4eced0a4f160060a3ea0199d9e3a";

constexpr const char* kDefaultSystem =
    "You are OLMo, a helpful function-calling AI assistant built by Ai2. Your date cutoff is "
    "November 2024, and your model weights are available at https://huggingface.co/allenai. You "
    "do not currently have access to any functions. <functions></functions>";

// Builds segments; literal framing text is split at added tokens into token segments.
class Builder {
 public:
  explicit Builder(const Tokenizer& t) : t_(t) {}
  // Framing text from the template (its added tokens are control tokens).
  void Framing(std::string_view s) {
    size_t i = 0, start = 0;
    while (i < s.size()) {
      const AddedToken* best = nullptr;
      for (const AddedToken& a : t_.added_tokens()) {
        if (s.compare(i, a.content.size(), a.content) == 0 &&
            (best == nullptr || a.content.size() > best->content.size())) {
          best = &a;
        }
      }
      if (best == nullptr) {
        ++i;
        continue;
      }
      Text(s.substr(start, i - start));
      out_.push_back({best->content, best->id});
      i += best->content.size();
      start = i;
    }
    Text(s.substr(start));
  }
  // Message text: never control tokens.
  void Text(std::string_view s) {
    if (s.empty()) return;
    if (!out_.empty() && out_.back().token_id < 0) {
      out_.back().text += s;
    } else {
      out_.push_back({std::string(s), -1});
    }
  }
  std::vector<ChatSegment> Take() { return std::move(out_); }

 private:
  const Tokenizer& t_;
  std::vector<ChatSegment> out_;
};

}  // namespace

std::string Sha256Hex(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  std::string hex;
  for (unsigned char b : digest) hex += absl::StrFormat("%02x", b);
  return hex;
}

absl::StatusOr<ChatTemplateKind> SelectChatTemplate(const std::string& template_text,
                                                    const std::string& override_name) {
  if (override_name == "olmo_instruct") return ChatTemplateKind::kOlmoInstruct;
  if (override_name == "olmo_think") return ChatTemplateKind::kOlmoThink;
  if (!override_name.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "chat template '%s' is not built in (olmo_instruct, olmo_think)", override_name));
  }
  std::string sha = Sha256Hex(template_text);
  if (sha == kInstructSha) return ChatTemplateKind::kOlmoInstruct;
  if (sha == kThinkSha) return ChatTemplateKind::kOlmoThink;
  return absl::NotFoundError(absl::StrFormat(
      "the checkpoint's chat_template (sha256 %s) is not one of the built-in renderers; name one "
      "explicitly (olmo_instruct or olmo_think) to use it anyway",
      sha));
}

absl::StatusOr<std::string> ReadChatTemplate(const std::string& model_dir) {
  std::ifstream jinja(model_dir + "/chat_template.jinja", std::ios::binary);
  if (jinja) {
    std::stringstream ss;
    ss << jinja.rdbuf();
    return ss.str();
  }
  std::ifstream cfg(model_dir + "/tokenizer_config.json");
  if (cfg) {
    std::stringstream ss;
    ss << cfg.rdbuf();
    nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string()) {
      return j["chat_template"].get<std::string>();
    }
  }
  return absl::NotFoundError(absl::StrFormat(
      "%s: no chat_template.jinja and no chat_template in tokenizer_config.json", model_dir));
}

absl::StatusOr<std::vector<ChatSegment>> RenderChat(const Tokenizer& tokenizer,
                                                    ChatTemplateKind kind,
                                                    const std::vector<ChatMessage>& messages,
                                                    bool add_generation_prompt) {
  Builder b(tokenizer);
  bool has_system = false;
  for (const ChatMessage& m : messages) has_system = has_system || m.role == "system";
  if (!has_system) b.Framing(std::string("<|im_start|>system\n") + kDefaultSystem + "<|im_end|>\n");
  auto need_content = [](const ChatMessage& m, size_t i) -> absl::Status {
    if (m.content.has_value()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrFormat("messages[%d].content: required for role '%s'", i, m.role));
  };
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool last = i + 1 == messages.size();
    if (m.role == "system") {
      OLMO_RETURN_IF_ERROR(need_content(m, i));
      b.Framing("<|im_start|>system\n");
      b.Text(*m.content);
      if (m.functions.has_value()) {
        b.Framing(" <functions>");
        b.Text(*m.functions);
        b.Framing("</functions><|im_end|>\n");
      } else {
        b.Framing(" You do not currently have access to any functions. <functions></functions>"
                  "<|im_end|>\n");
      }
    } else if (m.role == "user") {
      OLMO_RETURN_IF_ERROR(need_content(m, i));
      b.Framing("<|im_start|>user\n");
      b.Text(*m.content);
      if (m.functions.has_value()) {
        b.Framing("\n<functions>");
        b.Text(*m.functions);
        b.Framing("</functions>");
      }
      b.Framing("<|im_end|>\n");
    } else if (m.role == "assistant") {
      b.Framing("<|im_start|>assistant\n");
      if (m.content.has_value()) b.Text(*m.content);
      if (m.function_calls.has_value()) {
        b.Framing("<function_calls>");
        b.Text(*m.function_calls);
        b.Framing("</function_calls>");
      }
      b.Framing(last ? "<|endoftext|>" : "<|im_end|>\n");
    } else if (m.role == "environment") {
      OLMO_RETURN_IF_ERROR(need_content(m, i));
      b.Framing("<|im_start|>environment\n");
      b.Text(*m.content);
      b.Framing("<|im_end|>\n");
    } else {
      return absl::InvalidArgumentError(absl::StrFormat(
          "messages[%d].role: '%s' is not one of system, user, assistant, environment", i, m.role));
    }
    if (last && add_generation_prompt) {
      b.Framing(kind == ChatTemplateKind::kOlmoThink ? "<|im_start|>assistant\n<think>"
                                                      : "<|im_start|>assistant\n");
    }
  }
  return b.Take();
}

std::string ChatText(const std::vector<ChatSegment>& segments) {
  std::string s;
  for (const ChatSegment& seg : segments) s += seg.text;
  return s;
}

absl::StatusOr<std::vector<int32_t>> EncodeChat(const Tokenizer& tokenizer,
                                                const std::vector<ChatSegment>& segments,
                                                bool allow_special_in_content) {
  std::vector<int32_t> ids;
  const AddedTokens mode = allow_special_in_content ? AddedTokens::kMatch : AddedTokens::kPlain;
  for (const ChatSegment& seg : segments) {
    if (seg.token_id >= 0) {
      ids.push_back(seg.token_id);
      continue;
    }
    OLMO_ASSIGN_OR_RETURN(std::vector<int32_t> part, tokenizer.Encode(seg.text, mode));
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

}  // namespace olmo::tokenizer
