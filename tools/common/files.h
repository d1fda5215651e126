// Small file helpers shared by the service binaries.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace olmo::tools {

// The whole file. NotFound "<what>: cannot read <path>".
absl::StatusOr<std::string> ReadTextFile(const std::string& path, const std::string& what);

// The coordinator/worker shared secret: the file's contents without trailing whitespace when
// `secret_file` is set (flag name `what` in errors), else $OLMO_SECRET, else empty (no check).
absl::StatusOr<std::string> ReadSecret(const std::string& secret_file, const std::string& what);

}  // namespace olmo::tools
