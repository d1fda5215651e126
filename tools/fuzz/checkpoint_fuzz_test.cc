// >= 10^4 mutated safetensors headers (byte flips, insertions, deletions, truncations, number
// edits) through ParseSafetensorsHeader, and mutated whole files through Checkpoint::Open, under
// ASan + UBSan: no crash, no out-of-bounds read, and every accepted tensor lies inside its file.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "worker/checkpoint/checkpoint.h"

namespace olmo::checkpoint {
namespace {

std::vector<std::string> Seeds() {
  return {
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}})",
      R"({"w":{"dtype":"F16","shape":[],"data_offsets":[0,2]},"e":{"dtype":"I32","shape":[0,5],"data_offsets":[2,2]}})",
      R"({"x":{"dtype":"I64","shape":[1,1,1,1],"data_offsets":[0,8]}})",
  };
}

std::string Mutate(std::string s, std::mt19937& rng) {
  static const std::vector<std::string> kTokens = {
      "0", "-1", "18446744073709551615", "9223372036854775807", "4294967296", "1e308", "[",
      "]", "{", "}", ",", ":", "\"", "\\u0000", "null", "true", "\"F8_E4M3\"", "\"shape\"",
      "\"data_offsets\"", "\"dtype\"", "[0,0]", "[1,2,3]", "\xff", "\x80"};
  int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits && !s.empty(); ++e) {
    size_t pos = rng() % s.size();
    switch (rng() % 6) {
      case 0: s[pos] = static_cast<char>(rng() & 0xff); break;
      case 1: s.erase(pos, 1 + rng() % 8); break;
      case 2: s.insert(pos, kTokens[rng() % kTokens.size()]); break;
      case 3: s.resize(pos); break;
      case 4: {  // replace a digit run with a token
        size_t d = s.find_first_of("0123456789", pos);
        if (d != std::string::npos) {
          size_t end = s.find_first_not_of("0123456789", d);
          s.replace(d, (end == std::string::npos ? s.size() : end) - d,
                    kTokens[rng() % 5]);
        }
        break;
      }
      default: s.insert(pos, s.substr(rng() % s.size(), rng() % 16)); break;
    }
  }
  return s;
}

TEST(CheckpointFuzz, MutatedHeadersNeverCrash) {
  std::mt19937 rng(20261122);
  int accepted = 0, total = 0;
  for (int i = 0; i < 20000; ++i) {
    const auto seeds = Seeds();
    std::string h = Mutate(seeds[i % seeds.size()], rng);
    int64_t data_size = static_cast<int64_t>(rng() % 64);
    auto r = ParseSafetensorsHeader(h, data_size, "fuzz.safetensors");
    ++total;
    if (r.ok()) {
      ++accepted;
      for (const auto& t : *r) {
        ASSERT_GE(t.offset, 0);
        ASSERT_LE(t.offset + t.nbytes, data_size);
        ASSERT_EQ(t.nbytes, t.numel() * DTypeSize(t.dtype));
      }
    } else {
      ASSERT_NE(r.status().message().find("fuzz.safetensors"), std::string::npos);
    }
  }
  EXPECT_EQ(total, 20000);
  EXPECT_GT(accepted, 0);  // the mutations keep some valid files, so both paths run
  std::printf("%d of %d mutated headers accepted\n", accepted, total);
}

TEST(CheckpointFuzz, MutatedFilesNeverCrash) {
  std::mt19937 rng(7);
  std::string path = ::testing::TempDir() + "/fuzz_file.safetensors";
  int opened = 0;
  for (int i = 0; i < 3000; ++i) {
    const auto seeds = Seeds();
    std::string h = seeds[i % seeds.size()];
    std::string file(8, '\0');
    uint64_t n = h.size();
    if (rng() % 4 == 0) n = rng();  // a wrong length
    for (int b = 0; b < 8; ++b) file[b] = static_cast<char>(n >> (8 * b));
    file += h + std::string(32, 'x');
    file = i % 2 ? Mutate(file, rng) : file.substr(0, rng() % (file.size() + 1));
    {
      std::ofstream f(path, std::ios::binary | std::ios::trunc);
      f << file;
    }
    auto c = Checkpoint::Open(path);
    if (!c.ok()) continue;
    ++opened;
    for (const auto& t : (*c)->tensors()) {
      auto v = (*c)->Get(t.name);
      ASSERT_TRUE(v.ok());
      // Touch every byte: ASan reports any read outside the mapping.
      unsigned sum = 0;
      for (int64_t b = 0; b < t.nbytes; ++b) sum += static_cast<const unsigned char*>(v->data)[b];
      (void)sum;
    }
  }
  EXPECT_GT(opened, 0);
}

}  // namespace
}  // namespace olmo::checkpoint
