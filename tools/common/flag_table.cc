#include "tools/common/flag_table.h"

#include <charconv>
#include <cstdlib>

#include "absl/strings/str_format.h"

namespace olmo::tools {
namespace {

std::string JsonKey(std::string name) {
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
}

}  // namespace

const FlagTable::Flag* FlagTable::Find(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name || JsonKey(f.name) == name) return &f;
  }
  return nullptr;
}

absl::Status FlagTable::Set(const Flag& flag, const std::string& value,
                            const std::string& where) const {
  auto bad = [&](const char* what) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s: '%s'", where, what, value));
  };
  if (auto* s = std::get_if<std::string*>(&flag.target)) {
    **s = value;
  } else if (auto* i = std::get_if<int64_t*>(&flag.target)) {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || p != value.data() + value.size() || value.empty()) {
      return bad("not an integer");
    }
    **i = v;
  } else if (auto* i32 = std::get_if<int32_t*>(&flag.target)) {
    int32_t v = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || p != value.data() + value.size() || value.empty()) {
      return bad("not an integer");
    }
    **i32 = v;
  } else if (auto* d = std::get_if<double*>(&flag.target)) {
    char* end = nullptr;
    double v = std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size()) return bad("not a number");
    **d = v;
  } else if (auto* b = std::get_if<bool*>(&flag.target)) {
    if (value == "true" || value == "1") {
      **b = true;
    } else if (value == "false" || value == "0") {
      **b = false;
    } else {
      return bad("not a boolean");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> FlagTable::Parse(int argc, char** argv) const {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const Flag* f = Find(name);
    if (f == nullptr && name.rfind("no-", 0) == 0) {
      const Flag* neg = Find(name.substr(3));
      if (neg != nullptr && std::holds_alternative<bool*>(neg->target) && !has_value) {
        *std::get<bool*>(neg->target) = false;
        continue;
      }
    }
    if (f == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat("unknown flag --%s (see --help)", name));
    }
    if (std::holds_alternative<bool*>(f->target) && !has_value) {
      *std::get<bool*>(f->target) = true;
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrFormat("--%s needs a value", name));
      }
      value = argv[++i];
    }
    if (absl::Status st = Set(*f, value, "--" + name); !st.ok()) return st;
  }
  return positional;
}

absl::Status FlagTable::ApplyJson(const nlohmann::json& config, const std::string& source) const {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: expected a JSON object", source));
  }
  for (auto it = config.begin(); it != config.end(); ++it) {
    const Flag* f = Find(it.key());
    const std::string where = absl::StrFormat("%s: %s", source, it.key());
    if (f == nullptr) return absl::InvalidArgumentError(where + ": unknown key");
    std::string value;
    if (it->is_string()) {
      value = it->get<std::string>();
    } else if (it->is_boolean()) {
      value = it->get<bool>() ? "true" : "false";
    } else if (it->is_number_integer()) {
      value = std::to_string(it->get<int64_t>());
    } else if (it->is_number()) {
      value = absl::StrFormat("%.17g", it->get<double>());
    } else {
      return absl::InvalidArgumentError(where + ": expected a string, number or boolean");
    }
    if (absl::Status st = Set(*f, value, where); !st.ok()) return st;
  }
  return absl::OkStatus();
}

nlohmann::ordered_json FlagTable::ToJson() const {
  nlohmann::ordered_json j;
  for (const Flag& f : flags_) {
    std::visit([&](auto* p) { j[JsonKey(f.name)] = *p; }, f.target);
  }
  return j;
}

std::string FlagTable::Help() const {
  std::string out;
  for (const Flag& f : flags_) {
    const std::string& def = f.default_value;
    const bool is_bool = std::holds_alternative<bool*>(f.target);
    std::string left = "  --" + f.name + (is_bool ? "" : " VALUE");
    if (left.size() < 30) left.resize(30, ' ');
    out += left + " " + f.help + (def.empty() ? "" : " (default: " + def + ")") + "\n";
  }
  return out;
}

std::string FlagTable::ValueString(const Target& target) {
  std::string out;
  std::visit(
      [&](auto* p) {
        using T = std::decay_t<decltype(*p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          out = *p;
        } else if constexpr (std::is_same_v<T, bool>) {
          out = *p ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          out = absl::StrFormat("%g", *p);
        } else {
          out = std::to_string(*p);
        }
      },
      target);
  return out;
}

}  // namespace olmo::tools
