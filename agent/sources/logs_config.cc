#include "agent/sources/logs_config.h"

#include "collectors/yaml_reader.h"

namespace pgpulse::agent::sources {

void ParseLogsConfig(const YAML::Node& node, collectors::YamlReader& r, const std::string& ctx, LogsConfig& into) {
  if (!r.Map(node, ctx, {"enabled", "max_read_bytes"})) return;
  if (const YAML::Node e = node["enabled"]) into.enabled = r.Bool(e, ctx + ".enabled").value_or(into.enabled);
  if (const YAML::Node m = node["max_read_bytes"]) {
    into.max_read_bytes = r.Count(m, ctx + ".max_read_bytes").value_or(into.max_read_bytes);
    if (into.max_read_bytes < 65536) r.Error(m, ctx + ".max_read_bytes must be at least 65536");
  }
}

}  // namespace pgpulse::agent::sources
