#include "collectors/yaml_reader.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <set>

namespace pgpulse::collectors {

std::optional<YAML::Node> YamlReader::Load(const std::string& text) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    errors_.push_back(origin_ + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                      ": YAML syntax error: " + e.msg);
    return std::nullopt;
  }
}

std::string YamlReader::Where(const YAML::Node& node) const {
  YAML::Mark m = node.Mark();
  if (m.is_null()) return origin_;
  return origin_ + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

void YamlReader::Error(const YAML::Node& node, const std::string& what) {
  errors_.push_back(Where(node) + ": " + what);
}

void YamlReader::CheckKeys(const YAML::Node& map, const std::string& context,
                           std::initializer_list<const char*> allowed) {
  std::set<std::string> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (!it->first.IsScalar()) {
      Error(it->first, context + ": keys must be plain strings");
      continue;
    }
    const std::string key = it->first.Scalar();
    if (!seen.insert(key).second) Error(it->first, context + ": key '" + key + "' is given twice");
    if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; })) {
      std::string list;
      for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
      Error(it->first, context + ": unknown key '" + key + "' (allowed: " + list + ")");
    }
  }
}

bool YamlReader::Map(const YAML::Node& node, const std::string& context, std::initializer_list<const char*> allowed) {
  if (!node.IsMap()) {
    Error(node, context + " must be a map");
    return false;
  }
  CheckKeys(node, context, allowed);
  return true;
}

std::optional<std::string> YamlReader::String(const YAML::Node& node, const std::string& what) {
  if (!node.IsScalar()) {
    Error(node, what + " must be a string");
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<std::vector<std::string>> YamlReader::StringList(const YAML::Node& node, const std::string& what) {
  if (!node.IsSequence()) {
    Error(node, what + " must be a list of strings");
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (const YAML::Node& item : node) {
    auto s = String(item, what + " item");
    out.push_back(s.value_or(""));
  }
  return out;
}

std::optional<bool> YamlReader::Bool(const YAML::Node& node, const std::string& what) {
  if (node.IsScalar() && (node.Scalar() == "true" || node.Scalar() == "false")) return node.Scalar() == "true";
  Error(node, what + " must be true or false");
  return std::nullopt;
}

std::optional<int64_t> YamlReader::Integer(const YAML::Node& node, const std::string& what) {
  if (!node.IsScalar()) {
    Error(node, what + " must be an integer");
    return std::nullopt;
  }
  const std::string& s = node.Scalar();
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    Error(node, what + " must be an integer, got '" + s + "'");
    return std::nullopt;
  }
  return v;
}

std::optional<size_t> YamlReader::Count(const YAML::Node& node, const std::string& what) {
  if (node.IsScalar()) {
    const std::string& s = node.Scalar();
    if (!s.empty() && s.size() < 10 && s.find_first_not_of("0123456789") == std::string::npos && std::stoul(s) > 0)
      return std::stoul(s);
  }
  Error(node, what + " must be a whole number of at least 1");
  return std::nullopt;
}

std::optional<double> YamlReader::Number(const YAML::Node& node, const std::string& what) {
  if (!node.IsScalar()) {
    Error(node, what + " must be a number");
    return std::nullopt;
  }
  const std::string& s = node.Scalar();
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) {
    Error(node, what + " must be a number, got '" + s + "'");
    return std::nullopt;
  }
  return v;
}

std::optional<Millis> YamlReader::Duration(const YAML::Node& node, const std::string& what) {
  auto d = node.IsScalar() ? ParseDuration(node.Scalar()) : std::nullopt;
  if (!d)
    Error(node, what + " must be a duration like 500ms, 10s or 5m" +
                    (node.IsScalar() ? ", got '" + node.Scalar() + "'" : std::string()));
  return d;
}

}  // namespace pgpulse::collectors
