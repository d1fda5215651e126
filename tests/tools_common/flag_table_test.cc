// FlagTable: flags and JSON config bound to fields; errors name the flag or key.
#include "tools/common/flag_table.h"

#include "gtest/gtest.h"

namespace olmo::tools {
namespace {

struct Opts {
  std::string model;
  int64_t seqs = 256;
  double fraction = 0.9;
  bool cache = true;
};

FlagTable Table(Opts& o) {
  FlagTable t;
  t.Add("model", &o.model, "model dir");
  t.Add("max-seqs", &o.seqs, "sequences");
  t.Add("kv-fraction", &o.fraction, "fraction");
  t.Add("prefix-cache", &o.cache, "cache");
  return t;
}

TEST(FlagTable, FlagsForms) {
  Opts o;
  FlagTable t = Table(o);
  const char* argv[] = {"x", "--model", "/m", "--max-seqs=8", "pos", "--no-prefix-cache",
                        "--kv-fraction", "0.5"};
  auto pos = t.Parse(8, const_cast<char**>(argv));
  ASSERT_TRUE(pos.ok()) << pos.status();
  EXPECT_EQ(*pos, std::vector<std::string>{"pos"});
  EXPECT_EQ(o.model, "/m");
  EXPECT_EQ(o.seqs, 8);
  EXPECT_FALSE(o.cache);
  EXPECT_DOUBLE_EQ(o.fraction, 0.5);
}

// --help after other flags still shows the defaults, not the values just parsed (it did).
TEST(FlagTable, HelpShowsDefaultsNotParsedValues) {
  Opts o;
  FlagTable t = Table(o);
  const char* argv[] = {"x", "--max-seqs", "8", "--no-prefix-cache", "--model", "/m"};
  ASSERT_TRUE(t.Parse(6, const_cast<char**>(argv)).ok());
  const std::string help = t.Help();
  EXPECT_NE(help.find("sequences (default: 256)"), std::string::npos) << help;
  EXPECT_NE(help.find("cache (default: true)"), std::string::npos) << help;
  EXPECT_EQ(help.find("/m"), std::string::npos) << help;
  EXPECT_NE(help.find("fraction (default: 0.9)"), std::string::npos) << help;
}

TEST(FlagTable, ErrorsNameTheFlag) {
  Opts o;
  FlagTable t = Table(o);
  const char* bad_num[] = {"x", "--max-seqs", "many"};
  auto r = t.Parse(3, const_cast<char**>(bad_num));
  EXPECT_NE(r.status().message().find("--max-seqs"), std::string::npos) << r.status();
  const char* unknown[] = {"x", "--bogus"};
  r = t.Parse(2, const_cast<char**>(unknown));
  EXPECT_NE(r.status().message().find("--bogus"), std::string::npos);
  const char* missing[] = {"x", "--model"};
  r = t.Parse(2, const_cast<char**>(missing));
  EXPECT_FALSE(r.ok());
}

TEST(FlagTable, JsonConfigThenFlagsOverride) {
  Opts o;
  FlagTable t = Table(o);
  ASSERT_TRUE(t.ApplyJson(nlohmann::json::parse(R"({"max_seqs": 4, "prefix_cache": false,
                                                    "kv_fraction": 0.25, "model": "/j"})"),
                          "c.json").ok());
  EXPECT_EQ(o.seqs, 4);
  EXPECT_FALSE(o.cache);
  const char* argv[] = {"x", "--max-seqs", "9"};
  ASSERT_TRUE(t.Parse(3, const_cast<char**>(argv)).ok());
  EXPECT_EQ(o.seqs, 9);
  EXPECT_EQ(o.model, "/j");
  auto st = t.ApplyJson(nlohmann::json::parse(R"({"max_seqs": "x"})"), "c.json");
  EXPECT_NE(st.message().find("c.json: max_seqs"), std::string::npos) << st;
  st = t.ApplyJson(nlohmann::json::parse(R"({"nope": 1})"), "c.json");
  EXPECT_NE(st.message().find("nope"), std::string::npos);
  EXPECT_EQ(t.ToJson()["max_seqs"], 9);
}

}  // namespace
}  // namespace olmo::tools
