// Status helpers for the comm layer: every error message starts with "file:line: " of the call
// that failed (DESIGN.md convention 4), the file relative to the source tree.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace olmo::comm {

// "worker/comm/mpi_comm.cc" from an absolute __FILE__ (the last "worker/" onwards).
std::string_view SourceRelative(std::string_view file);

// A status of `code` with message "<file>:<line>: <message>".
absl::Status ErrorAt(absl::StatusCode code, const char* file, int line, std::string_view message);

}  // namespace olmo::comm

#define OLMO_COMM_ERROR(code, message) ::olmo::comm::ErrorAt((code), __FILE__, __LINE__, (message))
