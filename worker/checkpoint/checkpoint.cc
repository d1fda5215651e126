// Memory-mapped safetensors checkpoints: single file or sharded with an index.
#include "worker/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace olmo::checkpoint {

namespace names {
std::string Embedding() { return "model.embed_tokens.weight"; }
std::string FinalNorm() { return "model.norm.weight"; }
std::string LmHead() { return "lm_head.weight"; }
std::string Layer(int64_t layer, const char* leaf) {
  return absl::StrFormat("model.layers.%d.%s", layer, leaf);
}
}  // namespace names

namespace {

namespace fs = std::filesystem;

// A read-only mapping of a whole file.
class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return absl::NotFoundError(absl::StrFormat("%s: cannot open: %s", path, std::strerror(errno)));
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      return absl::InternalError(absl::StrFormat("%s: fstat failed", path));
    }
    auto f = std::unique_ptr<MappedFile>(new MappedFile());
    f->path_ = path;
    f->size_ = static_cast<int64_t>(st.st_size);
    if (f->size_ > 0) {
      void* p = ::mmap(nullptr, static_cast<size_t>(f->size_), PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        return absl::InternalError(absl::StrFormat("%s: mmap failed: %s", path, std::strerror(errno)));
      }
      f->data_ = static_cast<const unsigned char*>(p);
    }
    ::close(fd);
    return f;
  }
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), static_cast<size_t>(size_));
  }
  const unsigned char* data() const { return data_; }
  int64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const unsigned char* data_ = nullptr;
  int64_t size_ = 0;
};

// Validates the framing of a mapped safetensors file and returns its tensors with absolute
// offsets.
absl::StatusOr<std::vector<TensorInfo>> ReadHeader(const MappedFile& f, int file_index) {
  if (f.size() < 8) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: file is %d bytes, too short for a safetensors header", f.path(),
                        f.size()));
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | f.data()[i];
  if (n > static_cast<uint64_t>(f.size() - 8)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: header length %d runs past the end of the file (%d bytes): truncated or corrupt",
        f.path(), n, f.size()));
  }
  std::string_view header(reinterpret_cast<const char*>(f.data() + 8), n);
  int64_t data_start = 8 + static_cast<int64_t>(n);
  OLMO_ASSIGN_OR_RETURN(std::vector<TensorInfo> tensors,
                        ParseSafetensorsHeader(header, f.size() - data_start, f.path()));
  for (auto& t : tensors) {
    t.offset += data_start;
    t.file_index = file_index;
  }
  return tensors;
}

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrFormat("%s: cannot open", path));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrFormat("%s: invalid JSON", path));
  return j;
}

class SafetensorsCheckpoint final : public Checkpoint {
 public:
  absl::Status AddFile(const std::string& path, const std::vector<std::string>* only) {
    OLMO_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> f, MappedFile::Open(path));
    int index = static_cast<int>(mapped_.size());
    OLMO_ASSIGN_OR_RETURN(std::vector<TensorInfo> tensors, ReadHeader(*f, index));
    std::unordered_map<std::string, size_t> in_file;
    for (size_t i = 0; i < tensors.size(); ++i) in_file[tensors[i].name] = i;
    if (only != nullptr) {
      for (const std::string& name : *only) {
        if (!in_file.count(name)) {
          return absl::NotFoundError(absl::StrFormat(
              "%s: tensor '%s' is listed in the index for this shard but missing from it", path,
              name));
        }
      }
    }
    for (auto& t : tensors) {
      if (by_name_.count(t.name)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: tensor '%s' also appears in %s", path, t.name,
                            files_[tensors_[by_name_[t.name]].file_index]));
      }
      by_name_[t.name] = tensors_.size();
      tensors_.push_back(std::move(t));
    }
    files_.push_back(path);
    mapped_.push_back(std::move(f));
    return absl::OkStatus();
  }

  const std::vector<std::string>& files() const override { return files_; }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const TensorInfo* Find(const std::string& name) const override {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
  }

  absl::StatusOr<TensorView> Get(const std::string& name) const override {
    OLMO_ASSIGN_OR_RETURN(const TensorInfo* t, Require(name));
    return TensorView{mapped_[t->file_index]->data() + t->offset, t->dtype, t->shape};
  }

  absl::StatusOr<TensorView> GetRows(const std::string& name, int64_t row_begin,
                                     int64_t row_end) const override {
    OLMO_ASSIGN_OR_RETURN(const TensorInfo* t, Require(name));
    if (t->shape.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("tensor '%s': rank 0 has no rows", name));
    }
    if (row_begin < 0 || row_begin > row_end || row_end > t->shape[0]) {
      return absl::OutOfRangeError(absl::StrFormat("tensor '%s': rows [%d, %d) outside [0, %d)",
                                                   name, row_begin, row_end, t->shape[0]));
    }
    int64_t row_bytes = t->shape[0] == 0 ? 0 : t->nbytes / t->shape[0];
    TensorView v{mapped_[t->file_index]->data() + t->offset + row_begin * row_bytes, t->dtype,
                 t->shape};
    v.shape[0] = row_end - row_begin;
    return v;
  }

  absl::StatusOr<OwnedTensor> ReadColumns(const std::string& name, int64_t col_begin,
                                          int64_t col_end) const override {
    OLMO_ASSIGN_OR_RETURN(const TensorInfo* t, Require(name));
    if (t->shape.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrFormat("tensor '%s': column slices need rank 2, got rank %d", name,
                          t->shape.size()));
    }
    int64_t rows = t->shape[0], cols = t->shape[1];
    if (col_begin < 0 || col_begin > col_end || col_end > cols) {
      return absl::OutOfRangeError(absl::StrFormat("tensor '%s': columns [%d, %d) outside [0, %d)",
                                                   name, col_begin, col_end, cols));
    }
    int64_t es = DTypeSize(t->dtype), width = col_end - col_begin;
    OwnedTensor out;
    out.dtype = t->dtype;
    out.shape = {rows, width};
    out.bytes.resize(static_cast<size_t>(rows * width * es));
    const unsigned char* base = mapped_[t->file_index]->data() + t->offset;
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(out.bytes.data() + r * width * es, base + (r * cols + col_begin) * es,
                  static_cast<size_t>(width * es));
    }
    return out;
  }

  absl::Status ValidateFor(const ModelConfig& c) const override {
    std::vector<std::pair<std::string, std::vector<int64_t>>> want = {
        {names::Embedding(), {c.vocab_size, c.hidden_size}},
        {names::FinalNorm(), {c.hidden_size}},
        {names::LmHead(), {c.vocab_size, c.hidden_size}}};
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      auto n = [&](const char* leaf) { return names::Layer(l, leaf); };
      want.push_back({n("self_attn.q_proj.weight"), {c.q_width(), c.hidden_size}});
      want.push_back({n("self_attn.k_proj.weight"), {c.kv_width(), c.hidden_size}});
      want.push_back({n("self_attn.v_proj.weight"), {c.kv_width(), c.hidden_size}});
      want.push_back({n("self_attn.o_proj.weight"), {c.hidden_size, c.q_width()}});
      want.push_back({n("self_attn.q_norm.weight"), {c.q_width()}});
      want.push_back({n("self_attn.k_norm.weight"), {c.kv_width()}});
      want.push_back({n("mlp.gate_proj.weight"), {c.intermediate_size, c.hidden_size}});
      want.push_back({n("mlp.up_proj.weight"), {c.intermediate_size, c.hidden_size}});
      want.push_back({n("mlp.down_proj.weight"), {c.hidden_size, c.intermediate_size}});
      want.push_back({n("post_attention_layernorm.weight"), {c.hidden_size}});
      want.push_back({n("post_feedforward_layernorm.weight"), {c.hidden_size}});
    }
    auto shape_str = [](const std::vector<int64_t>& s) {
      std::string out = "[";
      for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
      return out + "]";
    };
    for (const auto& [name, shape] : want) {
      const TensorInfo* t = Find(name);
      if (t == nullptr) {
        return absl::NotFoundError(absl::StrFormat(
            "checkpoint %s: tensor '%s' is missing", files_.empty() ? "" : files_[0], name));
      }
      if (t->shape != shape) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: tensor '%s' has shape %s, the config needs %s", files_[t->file_index], name,
            shape_str(t->shape), shape_str(shape)));
      }
      if (t->dtype != DType::kF32 && t->dtype != DType::kBF16 && t->dtype != DType::kF16) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: tensor '%s' has dtype %s, weights must be F32, BF16 or F16",
            files_[t->file_index], name, DTypeName(t->dtype)));
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<const TensorInfo*> Require(const std::string& name) const {
    const TensorInfo* t = Find(name);
    if (t == nullptr) {
      return absl::NotFoundError(absl::StrFormat("checkpoint: tensor '%s' not found", name));
    }
    return t;
  }

  std::vector<std::string> files_;
  std::vector<std::unique_ptr<MappedFile>> mapped_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& path) {
  auto ckpt = std::make_unique<SafetensorsCheckpoint>();
  if (!fs::is_directory(path)) {
    if (!fs::exists(path)) return absl::NotFoundError(absl::StrFormat("%s: no such file", path));
    OLMO_RETURN_IF_ERROR(ckpt->AddFile(path, nullptr));
    return ckpt;
  }
  fs::path dir(path);
  fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index)) {
    OLMO_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(index.string()));
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: 'weight_map' missing or not an object", index.string()));
    }
    std::map<std::string, std::vector<std::string>> by_file;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: weight_map entry for '%s' is not a file name", index.string(), it.key()));
      }
      std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos || file == ".." || file.empty()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: shard name '%s' must be a plain file name", index.string(), file));
      }
      by_file[file].push_back(it.key());
    }
    int done = 0;
    for (const auto& [file, tensors] : by_file) {
      fs::path shard = dir / file;
      if (!fs::exists(shard)) {
        return absl::NotFoundError(absl::StrFormat("%s: shard %s listed in %s is missing",
                                                   shard.string(), file, index.string()));
      }
      OLMO_RETURN_IF_ERROR(ckpt->AddFile(shard.string(), &tensors));
      spdlog::debug("mapped shard {}/{}: {}", ++done, by_file.size(), file);
    }
    return ckpt;
  }
  fs::path single = dir / "model.safetensors";
  if (!fs::exists(single)) {
    return absl::NotFoundError(absl::StrFormat(
        "%s: neither model.safetensors nor model.safetensors.index.json found", path));
  }
  OLMO_RETURN_IF_ERROR(ckpt->AddFile(single.string(), nullptr));
  return ckpt;
}

}  // namespace olmo::checkpoint
