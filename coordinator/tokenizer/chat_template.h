// Native renderers of the Olmo chat templates (tests/data/tokenizer/chat_templates: Jinja text
// and provenance). A template is chosen by the SHA-256 of the checkpoint's chat_template, or
// named by the operator. Rendering keeps framing and content apart: framing added tokens become
// ids; everything else (framing text and message content) is encoded with added tokens as plain
// text, so untrusted content never becomes control tokens (DESIGN.md §7.9).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace olmo::tokenizer {

enum class ChatTemplateKind { kOlmoInstruct, kOlmoThink };

struct ChatMessage {
  std::string role;  // system, user, assistant, environment
  std::optional<std::string> content;         // absent: an assistant turn with only function calls
  std::optional<std::string> functions;       // system/user: function signatures (JSON text)
  std::optional<std::string> function_calls;  // assistant
};

// One piece of a rendered conversation: framing text, message text, or a framing added token.
struct ChatSegment {
  std::string text;
  int32_t token_id = -1;  // >= 0: a framing added token (text holds its content)
};

// Hex SHA-256 of a template's text.
std::string Sha256Hex(std::string_view text);

// The built-in renderer for a chat_template text; NotFound (naming the SHA-256) for an unknown
// template unless `override_name` ("olmo_instruct" or "olmo_think") names one.
absl::StatusOr<ChatTemplateKind> SelectChatTemplate(const std::string& template_text,
                                                    const std::string& override_name = "");
// The chat_template of a model directory: chat_template.jinja, else tokenizer_config.json's
// "chat_template"; NotFound when neither exists.
absl::StatusOr<std::string> ReadChatTemplate(const std::string& model_dir);

// Renders like transformers.apply_chat_template with the committed Jinja text. InvalidArgument
// for an unknown role or a missing content where the template needs one.
absl::StatusOr<std::vector<ChatSegment>> RenderChat(const Tokenizer& tokenizer,
                                                    ChatTemplateKind kind,
                                                    const std::vector<ChatMessage>& messages,
                                                    bool add_generation_prompt);
// The rendered string (segments joined).
std::string ChatText(const std::vector<ChatSegment>& segments);
// Token ids: framing tokens as ids, all text with added tokens as plain text (or matched, when
// allow_special_in_content is set by a trusted caller).
absl::StatusOr<std::vector<int32_t>> EncodeChat(const Tokenizer& tokenizer,
                                                const std::vector<ChatSegment>& segments,
                                                bool allow_special_in_content = false);

}  // namespace olmo::tokenizer
