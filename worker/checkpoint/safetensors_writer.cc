#include "worker/checkpoint/safetensors_writer.h"

#include <cstdio>
#include <memory>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace olmo::checkpoint {

int64_t TensorEntry::nbytes() const {
  int64_t n = DTypeSize(dtype);
  for (int64_t d : shape) n *= d;
  return n;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorEntry>& entries,
                              const std::function<void(size_t, std::span<unsigned char>)>& fill) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  int64_t offset = 0;
  for (const TensorEntry& e : entries) {
    header[e.name] = {{"dtype", std::string(DTypeName(e.dtype))},
                      {"shape", e.shape},
                      {"data_offsets", {offset, offset + e.nbytes()}}};
    offset += e.nbytes();
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return absl::PermissionDeniedError(absl::StrFormat("%s: cannot create", path));
  unsigned char len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f.get()) == 8 &&
            std::fwrite(text.data(), 1, text.size(), f.get()) == text.size();
  std::vector<unsigned char> buf;
  for (size_t i = 0; ok && i < entries.size(); ++i) {
    buf.assign(static_cast<size_t>(entries[i].nbytes()), 0);
    fill(i, buf);
    ok = std::fwrite(buf.data(), 1, buf.size(), f.get()) == buf.size();
  }
  if (!ok || std::fflush(f.get()) != 0) {
    return absl::DataLossError(absl::StrFormat("%s: write failed (disk full?)", path));
  }
  return absl::OkStatus();
}

absl::Status WriteShardIndex(const std::string& dir,
                             const std::map<std::string, std::string>& weight_map,
                             int64_t total_size) {
  nlohmann::ordered_json j;
  j["metadata"] = {{"total_size", total_size}};
  j["weight_map"] = weight_map;
  std::string path = dir + "/model.safetensors.index.json";
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return absl::PermissionDeniedError(absl::StrFormat("%s: cannot create", path));
  std::string text = j.dump(2);
  if (std::fwrite(text.data(), 1, text.size(), f.get()) != text.size()) {
    return absl::DataLossError(absl::StrFormat("%s: write failed", path));
  }
  return absl::OkStatus();
}

}  // namespace olmo::checkpoint
