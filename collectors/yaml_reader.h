#pragma once
// The one strict YAML reader behind every file pgpulse reads (config, collector
// definitions, web config): typed getters that report a wrong type, unknown or
// repeated keys with the file:line:column they are at, in one format
// ("file:line:col: what"), and parsing that goes on so one run reports all.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "collectors/duration.h"

namespace pgpulse::collectors {

class YamlReader {
 public:
  // `origin` names the file in errors; errors are appended to `errors`.
  YamlReader(std::string origin, std::vector<std::string>& errors) : origin_(std::move(origin)), errors_(errors) {}

  // Parses `text`; on a syntax error reports it and returns nullopt.
  std::optional<YAML::Node> Load(const std::string& text);

  const std::string& origin() const { return origin_; }
  // "origin:line:col", or "origin" when the node has no position.
  std::string Where(const YAML::Node& node) const;
  void Error(const YAML::Node& node, const std::string& what);

  // Reports keys not in `allowed`, keys that are not plain strings and keys given twice.
  void CheckKeys(const YAML::Node& map, const std::string& context, std::initializer_list<const char*> allowed);
  // CheckKeys on a map; false (and an error) when `node` is not a map.
  bool Map(const YAML::Node& node, const std::string& context, std::initializer_list<const char*> allowed);

  // Each getter reports "<what> must be ..." at the node and returns nullopt on a wrong value.
  std::optional<std::string> String(const YAML::Node& node, const std::string& what);
  std::optional<std::vector<std::string>> StringList(const YAML::Node& node, const std::string& what);
  std::optional<bool> Bool(const YAML::Node& node, const std::string& what);  // true or false, nothing else
  std::optional<int64_t> Integer(const YAML::Node& node, const std::string& what);
  std::optional<size_t> Count(const YAML::Node& node, const std::string& what);  // a whole number >= 1
  std::optional<double> Number(const YAML::Node& node, const std::string& what);
  std::optional<Millis> Duration(const YAML::Node& node, const std::string& what);

 private:
  std::string origin_;
  std::vector<std::string>& errors_;
};

}  // namespace pgpulse::collectors
