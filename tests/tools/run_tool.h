// Runs a built tool with arguments (and optional stdin) and captures its exit code, stdout and
// stderr. Temp files are private to the process: ctest runs tests in parallel.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace olmo::testing {

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string TempFile(const std::string& name) {
  return ::testing::TempDir() + "/olmo_tool_" + std::to_string(getpid()) + "_" + name;
}

inline RunResult RunTool(const std::string& binary, const std::string& args,
                         const std::string& stdin_text = "") {
  std::string err_file = TempFile("stderr.txt"), in_file = TempFile("stdin.txt");
  std::ofstream(in_file) << stdin_text;
  std::string cmd = binary + " " + args + " <" + in_file + " 2>" + err_file;
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

inline std::vector<nlohmann::json> JsonLines(const std::string& out) {
  std::vector<nlohmann::json> v;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    if (end > start) v.push_back(nlohmann::json::parse(out.substr(start, end - start)));
    start = end + 1;
  }
  return v;
}

}  // namespace olmo::testing
