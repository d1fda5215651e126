// Parsing and validation of one safetensors header (docs/olmo3.md §4.3).
#include <algorithm>
#include <limits>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "worker/checkpoint/checkpoint.h"

namespace olmo::checkpoint {

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::vector<TensorInfo>> ParseSafetensorsHeader(std::string_view header_json,
                                                               int64_t data_size,
                                                               const std::string& file) {
  using nlohmann::json;
  auto err = [&](const std::string& tensor, const std::string& why) {
    return absl::InvalidArgumentError(
        tensor.empty() ? absl::StrFormat("%s: %s", file, why)
                       : absl::StrFormat("%s: tensor '%s': %s", file, tensor, why));
  };
  json h = json::parse(header_json.begin(), header_json.end(), nullptr, /*allow_exceptions=*/false);
  if (h.is_discarded()) return err("", "header is not valid JSON");
  if (!h.is_object()) return err("", "header is not a JSON object");
  std::vector<TensorInfo> out;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& t = it.value();
    if (name == "__metadata__") {
      if (!t.is_object()) return err("", "__metadata__ is not an object");
      for (const auto& m : t) {
        if (!m.is_string()) return err("", "__metadata__ values must be strings");
      }
      continue;
    }
    if (!t.is_object()) return err(name, "entry is not an object");
    if (!t.contains("dtype") || !t["dtype"].is_string()) return err(name, "dtype missing");
    std::string dtype_name = t["dtype"].get<std::string>();
    std::optional<DType> dtype = ParseDType(dtype_name);
    if (!dtype.has_value()) return err(name, "unsupported dtype " + dtype_name);
    if (!t.contains("shape") || !t["shape"].is_array()) return err(name, "shape missing");
    TensorInfo info;
    info.name = name;
    info.dtype = *dtype;
    int64_t numel = 1;
    for (const json& d : t["shape"]) {
      if (!d.is_number_unsigned()) return err(name, "shape entries must be non-negative integers");
      uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return err(name, "shape entry too large");
      }
      int64_t dim = static_cast<int64_t>(v);
      if (dim != 0 && numel > std::numeric_limits<int64_t>::max() / 8 / dim) {
        return err(name, "shape overflows");
      }
      numel *= dim;
      info.shape.push_back(dim);
    }
    if (!t.contains("data_offsets") || !t["data_offsets"].is_array() ||
        t["data_offsets"].size() != 2 || !t["data_offsets"][0].is_number_unsigned() ||
        !t["data_offsets"][1].is_number_unsigned()) {
      return err(name, "data_offsets must be two non-negative integers");
    }
    uint64_t b = t["data_offsets"][0].get<uint64_t>();
    uint64_t e = t["data_offsets"][1].get<uint64_t>();
    if (b > e || e > static_cast<uint64_t>(data_size)) {
      return err(name, absl::StrFormat("data_offsets [%d, %d] outside the data buffer of %d bytes",
                                       b, e, data_size));
    }
    int64_t nbytes = numel * DTypeSize(*dtype);
    if (static_cast<int64_t>(e - b) != nbytes) {
      return err(name, absl::StrFormat("size %d bytes does not match shape x dtype (%d bytes)",
                                       e - b, nbytes));
    }
    info.offset = static_cast<int64_t>(b);
    info.nbytes = nbytes;
    out.push_back(std::move(info));
  }
  std::vector<const TensorInfo*> sorted;
  for (const auto& t : out) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->offset < b->offset || (a->offset == b->offset && a->nbytes < b->nbytes);
  });
  for (size_t i = 1; i < sorted.size(); ++i) {
    const TensorInfo* prev = sorted[i - 1];
    if (prev->nbytes > 0 && sorted[i]->offset < prev->offset + prev->nbytes) {
      return err(sorted[i]->name, "overlaps tensor '" + prev->name + "'");
    }
  }
  return out;
}

}  // namespace olmo::checkpoint
