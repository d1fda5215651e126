// Model fingerprint (DESIGN.md §2 attach checks, prefix-cache seed): hex SHA-256 over the bytes
// of config.json and the checkpoint's tensor index (name, dtype, shape of every tensor, sorted by
// name). Two directories with the same config and tensor layout share a fingerprint; the weights'
// bytes are not read (a fingerprint must be cheap for 64 GB checkpoints).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "worker/checkpoint/checkpoint.h"

namespace olmo::checkpoint {

absl::StatusOr<std::string> ModelFingerprint(const std::string& model_dir,
                                             const Checkpoint& checkpoint);
// Opens (maps) the checkpoint of `model_dir` for its tensor index; no weight bytes are read.
absl::StatusOr<std::string> ModelFingerprint(const std::string& model_dir);

}  // namespace olmo::checkpoint
