// Native chat-template renderers against transformers.apply_chat_template on the committed Jinja
// texts (tests/data/tokenizer/chat_templates/chat_cases.json): byte-identical strings and equal
// ids; template selection by SHA-256; untrusted content never becomes control tokens.
#include "coordinator/tokenizer/chat_template.h"

#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace olmo::tokenizer {
namespace {

const std::string kDir = std::string(OLMO_TEST_DATA_DIR) + "/tokenizer";

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const Tokenizer& Tok() {
  static auto t = Tokenizer::FromTokenizerJson(kDir + "/olmo3_instruct.tokenizer.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return **t;
}

std::vector<ChatMessage> Messages(const nlohmann::json& j) {
  std::vector<ChatMessage> out;
  for (const auto& m : j) {
    ChatMessage c;
    c.role = m["role"].get<std::string>();
    if (m.contains("content") && m["content"].is_string()) c.content = m["content"].get<std::string>();
    if (m.contains("functions")) c.functions = m["functions"].get<std::string>();
    if (m.contains("function_calls")) c.function_calls = m["function_calls"].get<std::string>();
    out.push_back(c);
  }
  return out;
}

TEST(ChatTemplate, MatchesTransformersByteForByte) {
  nlohmann::json cases = nlohmann::json::parse(ReadText(kDir + "/chat_templates/chat_cases.json"));
  int checked = 0;
  for (auto& [name, tcases] : cases["templates"].items()) {
    auto kind = SelectChatTemplate(ReadText(kDir + "/chat_templates/" + name + ".jinja"));
    ASSERT_TRUE(kind.ok()) << kind.status();
    EXPECT_EQ(*kind, name == "olmo_think" ? ChatTemplateKind::kOlmoThink
                                          : ChatTemplateKind::kOlmoInstruct);
    for (auto& [cname, c] : tcases.items()) {
      auto segs = RenderChat(Tok(), *kind, Messages(c["messages"]), c["add_generation_prompt"]);
      ASSERT_TRUE(segs.ok()) << segs.status();
      EXPECT_EQ(ChatText(*segs), c["text"].get<std::string>()) << name << "/" << cname;
      auto ids = EncodeChat(Tok(), *segs);
      ASSERT_TRUE(ids.ok());
      if (cname == "added_token_text_in_content") {
        // HF tokenizes the whole string, so "<|im_end|>" typed by a user becomes a control
        // token there; here it stays text.
        auto hf = c["ids"].get<std::vector<int32_t>>();
        EXPECT_NE(*ids, hf);
        int im_end = 0;
        for (int32_t id : *ids) im_end += id == 100265;
        EXPECT_EQ(im_end, 2);  // the system turn's and the user turn's closing tokens only
        auto trusted = EncodeChat(Tok(), *segs, /*allow_special_in_content=*/true);
        EXPECT_EQ(*trusted, hf);
      } else {
        EXPECT_EQ(*ids, c["ids"].get<std::vector<int32_t>>()) << name << "/" << cname;
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 24);
}

TEST(ChatTemplate, SelectionAndErrors) {
  auto unknown = SelectChatTemplate("{{ messages }}");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find(Sha256Hex("{{ messages }}")), std::string::npos);
  EXPECT_EQ(*SelectChatTemplate("{{ messages }}", "olmo_think"), ChatTemplateKind::kOlmoThink);
  EXPECT_FALSE(SelectChatTemplate("", "chatml").ok());
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto bad_role = RenderChat(Tok(), ChatTemplateKind::kOlmoInstruct, {{"tool", "x", {}, {}}}, true);
  ASSERT_FALSE(bad_role.ok());
  EXPECT_NE(bad_role.status().message().find("messages[0].role"), std::string::npos);
  auto no_content = RenderChat(Tok(), ChatTemplateKind::kOlmoInstruct, {{"user", {}, {}, {}}}, true);
  ASSERT_FALSE(no_content.ok());
  EXPECT_NE(no_content.status().message().find("messages[0].content"), std::string::npos);
  EXPECT_FALSE(ReadChatTemplate("/nonexistent").ok());
}

}  // namespace
}  // namespace olmo::tokenizer
