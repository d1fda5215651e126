// Read-only access to an HF safetensors checkpoint (single file or sharded with
// model.safetensors.index.json), memory-mapped. Every header is validated on open; no accessor
// reads outside a mapped file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/model_config.h"

namespace olmo::checkpoint {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  int file_index = 0;      // into Checkpoint::files()
  // Byte offset of the first element: relative to the data buffer from ParseSafetensorsHeader,
  // absolute in the file from Checkpoint::tensors().
  int64_t offset = 0;
  int64_t nbytes = 0;      // prod(shape) * DTypeSize(dtype)
  int64_t numel() const;
};

// A view of tensor bytes inside a mapping (valid while the Checkpoint lives).
struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

// A tensor copied out of the mapping (used for column slices, which are not contiguous).
struct OwnedTensor {
  std::vector<unsigned char> bytes;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  TensorView view() const { return TensorView{bytes.data(), dtype, shape}; }
};

class Checkpoint {
 public:
  virtual ~Checkpoint() = default;

  // Opens `dir/model.safetensors.index.json` if present, else `dir/model.safetensors`. `path`
  // may also name a single .safetensors file directly. Validates every header.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& path);

  virtual const std::vector<std::string>& files() const = 0;
  virtual const std::vector<TensorInfo>& tensors() const = 0;
  // nullptr when absent.
  virtual const TensorInfo* Find(const std::string& name) const = 0;

  // The whole tensor. NotFound names the tensor.
  virtual absl::StatusOr<TensorView> Get(const std::string& name) const = 0;
  // Rows [row_begin, row_end) of a tensor of rank >= 1 (contiguous: no copy). Shape is
  // [row_end - row_begin, rest...].
  virtual absl::StatusOr<TensorView> GetRows(const std::string& name, int64_t row_begin,
                                             int64_t row_end) const = 0;
  // Columns [col_begin, col_end) of a rank-2 tensor, copied. Shape [rows, col_end - col_begin].
  virtual absl::StatusOr<OwnedTensor> ReadColumns(const std::string& name, int64_t col_begin,
                                                  int64_t col_end) const = 0;

  // Checks that every tensor an Olmo 3 model of `config` needs is present with the right shape
  // and a floating dtype (F32, BF16, F16). Unknown extra tensors are ignored.
  virtual absl::Status ValidateFor(const ModelConfig& config) const = 0;
};

// HF tensor names of Olmo 3 (docs/olmo3.md §4.1).
namespace names {
std::string Embedding();                      // model.embed_tokens.weight
std::string FinalNorm();                      // model.norm.weight
std::string LmHead();                         // lm_head.weight
std::string Layer(int64_t layer, const char* leaf);  // model.layers.{i}.{leaf}
}  // namespace names

// Parses one safetensors header (the JSON text after the 8-byte length) for a file whose data
// buffer has `data_size` bytes, checking dtypes, shapes, offsets inside the buffer, sizes and
// overlaps. `file` names the file in errors. Exposed for tests and the fuzzer.
absl::StatusOr<std::vector<TensorInfo>> ParseSafetensorsHeader(std::string_view header_json,
                                                               int64_t data_size,
                                                               const std::string& file);

}  // namespace olmo::checkpoint
