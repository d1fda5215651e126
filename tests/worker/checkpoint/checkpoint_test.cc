// Checkpoint reader: good files read back exactly (single, sharded; F32/BF16/F16; row and column
// slices), and every kind of bad file fails with a message naming the file and the tensor.
#include "worker/checkpoint/checkpoint.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/checkpoint/safetensors_writer.h"

namespace olmo::checkpoint {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  std::string d = ::testing::TempDir() + "/ckpt_" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Writes raw bytes: 8-byte length, header text, `data_bytes` bytes of data.
void WriteRaw(const std::string& path, const std::string& header, size_t data_bytes,
              uint64_t declared_len = 0) {
  std::ofstream f(path, std::ios::binary);
  uint64_t n = declared_len ? declared_len : header.size();
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>(n >> (8 * i)));
  f << header;
  f << std::string(data_bytes, '\0');
}

std::string ErrorOf(const std::string& path) {
  auto c = Checkpoint::Open(path);
  EXPECT_FALSE(c.ok()) << path;
  return c.ok() ? "" : std::string(c.status().message());
}

void ExpectContains(const std::string& msg, std::initializer_list<std::string> parts) {
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

TEST(Checkpoint, ReadsEveryDtypeExactly) {
  std::string dir = TempDir("dtypes");
  std::vector<float> f32 = {1.5f, -2.25f, 3.0e-8f, 65504.0f, -0.0f, 7.0f};
  std::vector<TensorEntry> e = {{"a", DType::kF32, {2, 3}}, {"b", DType::kBF16, {2, 3}},
                                {"c", DType::kF16, {6}}};
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", e, [&](size_t i, std::span<unsigned char> b) {
    for (size_t j = 0; j < 6; ++j) {
      if (i == 0) std::memcpy(b.data() + 4 * j, &f32[j], 4);
      uint16_t h = i == 1 ? F32ToBf16(f32[j]) : F32ToF16(f32[j]);
      if (i > 0) std::memcpy(b.data() + 2 * j, &h, 2);
    }
  }).ok());
  auto c = Checkpoint::Open(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  for (const char* name : {"a", "b", "c"}) {
    auto t = (*c)->Get(name);
    ASSERT_TRUE(t.ok());
    std::vector<float> got(6);
    ConvertToF32(t->data, t->dtype, 6, got.data());
    for (size_t j = 0; j < 6; ++j) {
      float want = name[0] == 'a' ? f32[j]
                   : name[0] == 'b' ? Bf16ToF32(F32ToBf16(f32[j]))
                                    : F16ToF32(F32ToF16(f32[j]));
      EXPECT_EQ(got[j], want) << name << j;
    }
  }
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.5f)), 1.5f);
  EXPECT_EQ(F16ToF32(F32ToF16(65504.0f)), 65504.0f);
  // Row and column slices.
  auto rows = (*c)->GetRows("a", 1, 2);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->shape, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(static_cast<const float*>(rows->data)[0], f32[3]);
  auto cols = (*c)->ReadColumns("a", 1, 3);
  ASSERT_TRUE(cols.ok());
  const float* cv = reinterpret_cast<const float*>(cols->bytes.data());
  EXPECT_EQ(cols->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(cv[0], f32[1]);
  EXPECT_EQ(cv[3], f32[5]);
  EXPECT_FALSE((*c)->GetRows("a", 1, 3).ok());
  EXPECT_FALSE((*c)->ReadColumns("c", 0, 1).ok());  // rank 1
  EXPECT_EQ((*c)->Get("zzz").status().code(), absl::StatusCode::kNotFound);
}

TEST(Checkpoint, ShardedModelsLoadAndValidate) {
  const std::string models = std::string(OLMO_TEST_DATA_DIR) + "/models";
  auto c = Checkpoint::Open(models + "/sharded3_gqa_5layers");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->files().size(), 3u);
  auto config = ModelConfig::Load(models + "/sharded3_gqa_5layers");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE((*c)->ValidateFor(*config).ok());
}

TEST(Checkpoint, BadFilesNameFileAndTensor) {
  std::string dir = TempDir("bad");
  const std::string good = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  struct Case {
    std::string name, header;
    size_t data;
    uint64_t declared;
    std::vector<std::string> expect;
  };
  std::vector<Case> cases = {
      {"truncated", good, 8, 0, {"truncated", "'w'", "outside the data buffer"}},
      {"header_past_end", good, 16, 100000, {"header_past_end", "runs past the end"}},
      {"offsets", R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}})", 16, 0,
       {"'w'", "outside the data buffer"}},
      {"size_mismatch", R"({"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,16]}})", 16, 0,
       {"'w'", "does not match shape x dtype"}},
      {"overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       16, 0, {"overlaps"}},
      {"bad_json", R"({"w":{"dtype":"F32",)", 16, 0, {"bad_json", "not valid JSON"}},
      {"not_object", R"([1,2])", 0, 0, {"not a JSON object"}},
      {"dtype", R"({"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4, 0,
       {"'w'", "unsupported dtype F8_E4M3"}},
      {"negative_shape", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, 0,
       {"'w'", "shape"}},
      {"huge_shape", R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4, 0,
       {"'w'", "overflows"}},
  };
  for (const Case& c : cases) {
    std::string path = dir + "/" + c.name + ".safetensors";
    WriteRaw(path, c.header, c.data, c.declared);
    std::string msg = ErrorOf(path);
    for (const auto& e : c.expect) ExpectContains(msg, {e});
    ExpectContains(msg, {path});
  }
  {
    std::string path = dir + "/tiny.safetensors";
    std::ofstream(path) << "abc";
    ExpectContains(ErrorOf(path), {path, "too short"});
  }
  ExpectContains(ErrorOf(dir + "/absent.safetensors"), {"absent.safetensors", "no such file"});
}

TEST(Checkpoint, MissingTensorAndWrongShapeAgainstConfig) {
  const std::string models = std::string(OLMO_TEST_DATA_DIR) + "/models";
  auto config = ModelConfig::Load(models + "/mha_f32");
  ASSERT_TRUE(config.ok());
  auto c = Checkpoint::Open(models + "/mha_f32");
  ASSERT_TRUE(c.ok());
  // Rewrite the checkpoint without one tensor and with one wrong shape.
  std::string dir = TempDir("partial");
  std::vector<TensorEntry> entries;
  std::vector<const TensorInfo*> infos;
  for (const auto& t : (*c)->tensors()) {
    if (t.name == "model.layers.2.mlp.up_proj.weight") continue;
    entries.push_back({t.name, t.dtype, t.shape});
    infos.push_back(&t);
  }
  auto write = [&](const std::string& path) {
    return WriteSafetensors(path, entries, [&](size_t i, std::span<unsigned char> b) {
      std::memset(b.data(), 0, b.size());
    });
  };
  ASSERT_TRUE(write(dir + "/model.safetensors").ok());
  auto partial = Checkpoint::Open(dir);
  ASSERT_TRUE(partial.ok());
  absl::Status st = (*partial)->ValidateFor(*config);
  ExpectContains(std::string(st.message()), {"model.layers.2.mlp.up_proj.weight", "missing"});

  for (auto& e : entries) {
    if (e.name == "model.layers.1.self_attn.k_norm.weight") e.shape = {e.shape[0] * 2};
  }
  entries.push_back({"model.layers.2.mlp.up_proj.weight", DType::kF32, {64, 32}});
  ASSERT_TRUE(write(dir + "/model.safetensors").ok());
  auto wrong = Checkpoint::Open(dir);
  ASSERT_TRUE(wrong.ok());
  st = (*wrong)->ValidateFor(*config);
  ExpectContains(std::string(st.message()),
                 {"model.layers.1.self_attn.k_norm.weight", "[128]", "[64]", dir});
}

TEST(Checkpoint, ShardIndexErrors) {
  std::string dir = TempDir("shards");
  std::vector<TensorEntry> e = {{"x", DType::kF32, {2}}};
  auto zero = [](size_t, std::span<unsigned char> b) { std::memset(b.data(), 0, b.size()); };
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00001-of-00002.safetensors", e, zero).ok());
  ASSERT_TRUE(WriteShardIndex(dir, {{"x", "model-00001-of-00002.safetensors"},
                                    {"y", "model-00002-of-00002.safetensors"}}, 16).ok());
  ExpectContains(ErrorOf(dir), {"model-00002-of-00002.safetensors", "missing"});
  ASSERT_TRUE(WriteShardIndex(dir, {{"x", "model-00001-of-00002.safetensors"},
                                    {"z", "model-00001-of-00002.safetensors"}}, 16).ok());
  ExpectContains(ErrorOf(dir), {"'z'", "listed in the index"});
  std::ofstream(dir + "/model.safetensors.index.json") << "{\"weight_map\": 3}";
  ExpectContains(ErrorOf(dir), {"weight_map"});
  std::ofstream(dir + "/model.safetensors.index.json") << "{not json";
  ExpectContains(ErrorOf(dir), {"index.json", "invalid JSON"});
  std::string empty = TempDir("empty");
  ExpectContains(ErrorOf(empty), {"neither model.safetensors"});
}

}  // namespace
}  // namespace olmo::checkpoint

#include "worker/checkpoint/fingerprint.h"

namespace olmo::checkpoint {
namespace {

TEST(Fingerprint, DependsOnConfigAndTensorLayoutOnly) {
  const std::string models = std::string(OLMO_TEST_DATA_DIR) + "/models";
  auto a = Checkpoint::Open(models + "/mha_f32");
  auto b = Checkpoint::Open(models + "/gqa_bf16");
  ASSERT_TRUE(a.ok() && b.ok());
  auto fa = ModelFingerprint(models + "/mha_f32", **a);
  auto fa2 = ModelFingerprint(models + "/mha_f32", **a);
  auto fb = ModelFingerprint(models + "/gqa_bf16", **b);
  ASSERT_TRUE(fa.ok() && fb.ok());
  EXPECT_EQ(fa->size(), 64u);
  EXPECT_EQ(*fa, *fa2);
  EXPECT_NE(*fa, *fb);
}

}  // namespace
}  // namespace olmo::checkpoint
