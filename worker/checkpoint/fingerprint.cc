#include "worker/checkpoint/fingerprint.h"

#include <openssl/sha.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_format.h"

namespace olmo::checkpoint {

absl::StatusOr<std::string> ModelFingerprint(const std::string& model_dir,
                                             const Checkpoint& checkpoint) {
  std::ifstream in(model_dir + "/config.json", std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrFormat("%s/config.json: cannot open", model_dir));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string buf = ss.str();
  std::vector<const TensorInfo*> tensors;
  for (const TensorInfo& t : checkpoint.tensors()) tensors.push_back(&t);
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->name < b->name; });
  for (const TensorInfo* t : tensors) {
    absl::StrAppendFormat(&buf, "\n%s %s", t->name, DTypeName(t->dtype));
    for (int64_t d : t->shape) absl::StrAppendFormat(&buf, " %d", d);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(buf.data()), buf.size(), digest);
  std::string hex;
  for (unsigned char b : digest) absl::StrAppendFormat(&hex, "%02x", b);
  return hex;
}

absl::StatusOr<std::string> ModelFingerprint(const std::string& model_dir) {
  auto checkpoint = Checkpoint::Open(model_dir);
  if (!checkpoint.ok()) return checkpoint.status();
  return ModelFingerprint(model_dir, **checkpoint);
}

}  // namespace olmo::checkpoint
