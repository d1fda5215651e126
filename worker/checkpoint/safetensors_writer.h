// Writes safetensors files (header padded to 8 bytes with spaces, tensors packed in order) and
// the model.safetensors.index.json of a sharded checkpoint. Used by make-tiny and tests.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/dtype.h"

namespace olmo::checkpoint {

struct TensorEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  int64_t nbytes() const;
};

// Writes `entries` to `path`; fill(i, bytes) writes tensor i's bytes (exactly nbytes()) and is
// called once per tensor, in order, so large checkpoints stream without being held in memory.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorEntry>& entries,
                              const std::function<void(size_t, std::span<unsigned char>)>& fill);

// Writes dir/model.safetensors.index.json: {"metadata": {"total_size": N}, "weight_map": {...}}.
absl::Status WriteShardIndex(const std::string& dir,
                             const std::map<std::string, std::string>& weight_map,
                             int64_t total_size);

}  // namespace olmo::checkpoint
