#include "tools/common/files.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"

namespace olmo::tools {

absl::StatusOr<std::string> ReadTextFile(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(what + ": cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::string> ReadSecret(const std::string& secret_file, const std::string& what) {
  if (secret_file.empty()) {
    const char* env = std::getenv("OLMO_SECRET");
    return std::string(env != nullptr ? env : "");
  }
  absl::StatusOr<std::string> secret = ReadTextFile(secret_file, what);
  if (!secret.ok()) return secret.status();
  while (!secret->empty() && std::isspace(static_cast<unsigned char>(secret->back()))) {
    secret->pop_back();
  }
  return secret;
}

}  // namespace olmo::tools
