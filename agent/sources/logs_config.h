#pragma once
// `targets[].logs`: whether and how much of the server's csvlog/jsonlog the agent reads.

#include <cstddef>
#include <string>

namespace YAML {
class Node;
}
namespace pgpulse::collectors {
class YamlReader;
}

namespace pgpulse::agent::sources {

struct LogsConfig {
  // false: never read the log (pg_log_visible{reason="disabled"} 0). true: read it when it is
  // visible, by the same rule as the filesystem (targets[].filesystem).
  bool enabled = true;
  size_t max_read_bytes = 16 * 1024 * 1024;  // read per collection at most; the rest waits for the next
  bool operator==(const LogsConfig& o) const { return enabled == o.enabled && max_read_bytes == o.max_read_bytes; }
};

// Parses the `logs` map of a target (`ctx` names it in errors, e.g. "target 'main'.logs").
void ParseLogsConfig(const YAML::Node& node, collectors::YamlReader& r, const std::string& ctx, LogsConfig& into);

}  // namespace pgpulse::agent::sources
