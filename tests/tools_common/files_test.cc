// ReadSecret: the file's contents without trailing whitespace, else $OLMO_SECRET; a missing file
// names the flag.
#include "tools/common/files.h"

#include <cstdlib>
#include <fstream>

#include "gtest/gtest.h"

namespace olmo::tools {
namespace {

TEST(Files, SecretFromFileTrimmedElseEnvironment) {
  const std::string path = ::testing::TempDir() + "/olmo_secret_test";
  std::ofstream(path) << "s3cret \n\n";
  auto s = ReadSecret(path, "--secret-file");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s, "s3cret");
  setenv("OLMO_SECRET", "from-env", 1);
  EXPECT_EQ(*ReadSecret("", "--secret-file"), "from-env");
  unsetenv("OLMO_SECRET");
  EXPECT_EQ(*ReadSecret("", "--secret-file"), "");
  auto missing = ReadSecret(path + ".missing", "--secret-file");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("--secret-file"), std::string::npos);
}

}  // namespace
}  // namespace olmo::tools
