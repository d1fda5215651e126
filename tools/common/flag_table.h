// FlagTable: typed command-line flags (and the same keys in a JSON config file) bound to struct
// fields, with the help text generated from the table. `--name value` or `--name=value`; booleans
// take no value (`--name`, `--no-name`). JSON keys are the flag names with '_' for '-'. Later
// sources override earlier ones: defaults < config file < flags.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace olmo::tools {

class FlagTable {
 public:
  using Target = std::variant<std::string*, int64_t*, int32_t*, double*, bool*>;
  struct Flag {
    std::string name;  // without dashes, e.g. "max-seqs"
    Target target;
    std::string help;
    std::string default_value;  // the target's value when added, as Help prints it
  };

  // Call before parsing: the target's current value is recorded as the flag's default.
  void Add(std::string name, Target target, std::string help) {
    flags_.push_back({std::move(name), target, std::move(help), ValueString(target)});
  }

  // Parses argv[1..]; arguments that are not flags are returned in order (positionals).
  // InvalidArgument naming the flag for unknown flags or bad values.
  absl::StatusOr<std::vector<std::string>> Parse(int argc, char** argv) const;
  // Applies a JSON object of flag values (file contents); InvalidArgument naming the key.
  absl::Status ApplyJson(const nlohmann::json& config, const std::string& source) const;
  // The effective values, as a JSON object (for the start-up log).
  nlohmann::ordered_json ToJson() const;
  // "  --name VALUE   help (default: ...)" lines.
  std::string Help() const;

 private:
  static std::string ValueString(const Target& target);  // "" for an empty string
  absl::Status Set(const Flag& flag, const std::string& value, const std::string& where) const;
  const Flag* Find(const std::string& name) const;
  std::vector<Flag> flags_;
};

}  // namespace olmo::tools
