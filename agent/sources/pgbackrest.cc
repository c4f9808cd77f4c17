#include "agent/sources/pgbackrest.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <stdexcept>

namespace pgpulse::agent {

namespace {

using json = nlohmann::json;
using LabelSet = std::vector<std::pair<std::string, std::string>>;

// A field the output lacks or has with another type; `path` says which, e.g. backup[0].timestamp.stop.
struct BadField : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const json& Field(const json& obj, const char* key, const std::string& path) {
  if (!obj.is_object()) throw BadField(path + " is not an object");
  auto it = obj.find(key);
  if (it == obj.end()) throw BadField(path + "." + key + " is missing");
  return *it;
}

double Number(const json& obj, const char* key, const std::string& path) {
  const json& v = Field(obj, key, path);
  if (!v.is_number()) throw BadField(path + "." + key + " is not a number");
  return v.get<double>();
}

std::string Text(const json& obj, const char* key, const std::string& path) {
  const json& v = Field(obj, key, path);
  if (!v.is_string()) throw BadField(path + "." + key + " is not a string");
  return v.get<std::string>();
}

const json& Array(const json& obj, const char* key, const std::string& path) {
  const json& v = Field(obj, key, path);
  if (!v.is_array()) throw BadField(path + "." + key + " is not a list");
  return v;
}

struct Backup {
  double start = 0, stop = 0;
  double size = 0, delta = 0, repo_size = 0, repo_delta = 0;
  int error = -1;  // -1: not reported (pgBackRest before 2.36)
};

}  // namespace

const collectors::DeclaredSource& BackrestSource() {
  static const collectors::DeclaredSource source{
      "pgbackrest",
      "Not a SQL collector: with `targets[].pgbackrest` set, the agent runs `pgbackrest info --output=json` for the "
      "stanza (at most once per `ttl`, on a thread of its own) and reports it with these metrics. Every sample also "
      "has the target's labels.",
      {
          {"pgbackrest_up", "gauge", "stanza", "-",
           "1 if the last pgbackrest info ran and reported the stanza ok (or without backups yet), 0 if not."},
          {"pgbackrest_stanza_status_code", "gauge", "stanza", "-",
           "Stanza status code from pgbackrest info: 0 ok, 1 missing stanza path, 2 no valid backups, "
           "3 missing stanza data, 4 different across repositories, 5 database mismatch across repositories, "
           "6 requested backup not found, 99 other."},
          {"pgbackrest_stanza_status_info", "gauge", "stanza, code, message", "-",
           "Always 1; labels give the stanza status code and message."},
          {"pgbackrest_backup_in_progress", "gauge", "stanza", "-",
           "1 while a backup of the stanza holds its lock, 0 if not."},
          {"pgbackrest_backups", "gauge", "stanza, type", "-",
           "Backups of the stanza in the repository, by type (full, diff, incr)."},
          {"pgbackrest_backups_with_errors", "gauge", "stanza", "-",
           "Backups in the repository that pgBackRest marked with errors (e.g. page checksum errors)."},
          {"pgbackrest_repository_backups_size_bytes", "gauge", "stanza", "bytes",
           "Space the stanza's backups take in the repository (sum of each backup's repository delta), "
           "WAL archive not included, in bytes."},
          {"pgbackrest_backup_last_completion_timestamp_seconds", "gauge", "stanza, type", "seconds",
           "When the last backup of this type finished, in seconds since the epoch (age: time() - this)."},
          {"pgbackrest_backup_last_duration_seconds", "gauge", "stanza, type", "seconds",
           "How long the last backup of this type took, in seconds."},
          {"pgbackrest_backup_last_size_bytes", "gauge", "stanza, type", "bytes",
           "Size of the database the last backup of this type holds (as restored), in bytes."},
          {"pgbackrest_backup_last_delta_bytes", "gauge", "stanza, type", "bytes",
           "Data the last backup of this type copied (changed since its prior backup), in bytes."},
          {"pgbackrest_backup_last_repository_size_bytes", "gauge", "stanza, type", "bytes",
           "Size of the last backup of this type in the repository (compressed), with what it references, in bytes."},
          {"pgbackrest_backup_last_repository_delta_bytes", "gauge", "stanza, type", "bytes",
           "Space the last backup of this type itself takes in the repository (compressed), in bytes."},
          {"pgbackrest_backup_last_error", "gauge", "stanza, type", "-",
           "1 if pgBackRest marked the last backup of this type with errors, 0 if not."},
      }};
  return source;
}

namespace {

const std::string& HelpOf(const std::string& name) {
  for (const collectors::DeclaredMetric& m : BackrestSource().metrics) {
    if (m.name == name) return m.help;
  }
  throw std::logic_error("pgbackrest metric " + name + " is not declared in BackrestSource()");
}

class Families {
 public:
  collectors::Family& Get(const std::string& name) {
    auto it = index_.find(name);
    if (it != index_.end()) return list_[it->second];
    index_[name] = list_.size();
    collectors::Family f;
    f.name = name;
    f.help = HelpOf(name);
    list_.push_back(std::move(f));
    return list_.back();
  }
  std::vector<collectors::Family> Take() { return std::move(list_); }

 private:
  std::map<std::string, size_t> index_;
  std::vector<collectors::Family> list_;
};

LabelSet With(LabelSet labels, const std::string& name, const std::string& value) {
  labels.emplace_back(name, value);
  return labels;
}

const char* const kTypes[] = {"full", "diff", "incr"};

}  // namespace

std::vector<std::string> BackrestInfoArgv(const BackrestConfig& config) {
  std::vector<std::string> argv{config.command};
  if (!config.config.empty()) argv.push_back("--config=" + config.config);
  argv.push_back("--stanza=" + config.stanza);
  argv.push_back("--output=json");
  argv.insert(argv.end(), config.args.begin(), config.args.end());
  argv.push_back("info");
  return argv;
}

std::vector<collectors::Family> BackrestDownFamilies(const std::string& stanza, const LabelSet& labels) {
  collectors::Family up;
  up.name = "pgbackrest_up";
  up.help = HelpOf(up.name);
  up.Add(collectors::RenderLabels(With(labels, "stanza", stanza)), 0);
  return {std::move(up)};
}

namespace {

struct StanzaStatus {
  int code = 0;
  std::string message;
  bool locked = false;  // a backup holds the stanza's lock
  std::string detail;   // "; repoN: message" per repository not ok
  bool ok() const { return code == 0 || code == 2; }
};

struct Backups {
  std::map<std::string, Backup> last;  // by type
  std::map<std::string, size_t> count;
  size_t with_errors = 0;
  double repo_total = 0;
};

const json& FindStanza(const json& doc, const std::string& stanza) {
  if (!doc.is_array()) throw BadField("the output is not a list of stanzas");
  const json* found = nullptr;
  for (size_t i = 0; i < doc.size(); ++i) {
    if (Text(doc[i], "name", "[" + std::to_string(i) + "]") == stanza) found = &doc[i];
  }
  if (!found) throw BadField("stanza '" + stanza + "' is not in the output");
  return *found;
}

StanzaStatus ReadStatus(const json& s, const std::string& path) {
  StanzaStatus st;
  const json& status = Field(s, "status", path);
  const double code_number = Number(status, "code", path + ".status");
  if (!(code_number >= 0 && code_number <= 1000)) throw BadField(path + ".status.code is out of range");
  st.code = static_cast<int>(code_number);
  st.message = Text(status, "message", path + ".status");
  if (auto lock = status.find("lock"); lock != status.end() && lock->is_object()) {
    if (auto b = lock->find("backup"); b != lock->end() && b->is_object()) {
      if (auto held = b->find("held"); held != b->end() && held->is_boolean()) st.locked = held->get<bool>();
    }
  }
  // Code 99 ("other") keeps the detail in each repository's status.
  if (auto repos = s.find("repo"); repos != s.end() && repos->is_array()) {
    for (const json& repo : *repos) {
      if (!repo.is_object() || !repo.contains("status") || !repo["status"].is_object()) continue;
      const json& rs = repo["status"];
      if (!rs.contains("code") || !rs["code"].is_number() || rs["code"].get<double>() == 0) continue;
      std::string m = rs.contains("message") && rs["message"].is_string() ? rs["message"].get<std::string>() : "?";
      std::string key = "?";
      if (repo.contains("key") && repo["key"].is_number())
        key = std::to_string(static_cast<long long>(std::min(1e6, std::max(-1e6, repo["key"].get<double>()))));
      st.detail += "; repo" + key + ": " + m;
    }
  }
  return st;
}

Backup ReadBackup(const json& b, const std::string& bp) {
  const json& ts = Field(b, "timestamp", bp);
  const json& info = Field(b, "info", bp);
  const json& repo = Field(info, "repository", bp + ".info");
  Backup one;
  one.start = Number(ts, "start", bp + ".timestamp");
  one.stop = Number(ts, "stop", bp + ".timestamp");
  one.size = Number(info, "size", bp + ".info");
  one.delta = Number(info, "delta", bp + ".info");
  one.repo_size = Number(repo, "size", bp + ".info.repository");
  one.repo_delta = Number(repo, "delta", bp + ".info.repository");
  if (auto e = b.find("error"); e != b.end()) {
    if (!e->is_boolean()) throw BadField(bp + ".error is not true or false");
    one.error = e->get<bool>() ? 1 : 0;
  }
  return one;
}

Backups ReadBackups(const json& s, const std::string& path) {
  Backups out;
  const json& backups = Array(s, "backup", path);
  for (size_t i = 0; i < backups.size(); ++i) {
    const json& b = backups[i];
    const std::string bp = path + ".backup[" + std::to_string(i) + "]";
    std::string type = Text(b, "type", bp);
    if (type != "full" && type != "diff" && type != "incr") throw BadField(bp + ".type '" + type + "' is unknown");
    Backup one = ReadBackup(b, bp);
    if (one.error > 0) out.with_errors += one.error;
    out.count[type]++;
    out.repo_total += one.repo_delta;
    auto prev = out.last.find(type);
    if (prev == out.last.end() || one.stop >= prev->second.stop) out.last[type] = one;
  }
  return out;
}

std::vector<collectors::Family> ReportFamilies(const StanzaStatus& st, Backups& backups, const LabelSet& base) {
  Families fam;
  const std::string base_suffix = collectors::RenderLabels(base);
  fam.Get("pgbackrest_up").Add(base_suffix, st.ok() ? 1 : 0);
  fam.Get("pgbackrest_stanza_status_code").Add(base_suffix, st.code);
  fam.Get("pgbackrest_stanza_status_info")
      .Add(collectors::RenderLabels(With(With(base, "code", std::to_string(st.code)), "message", st.message)), 1);
  fam.Get("pgbackrest_backup_in_progress").Add(base_suffix, st.locked ? 1 : 0);
  // A stanza pgBackRest cannot read (status 1, 3, 4, 5, 6, 99) has no backups to count: serve
  // nothing rather than zeros that read as "no backup at all".
  if (st.ok()) {
    for (const char* type : kTypes) {
      fam.Get("pgbackrest_backups")
          .Add(collectors::RenderLabels(With(base, "type", type)), static_cast<double>(backups.count[type]));
    }
    fam.Get("pgbackrest_backups_with_errors").Add(base_suffix, static_cast<double>(backups.with_errors));
    fam.Get("pgbackrest_repository_backups_size_bytes").Add(base_suffix, backups.repo_total);
  }
  for (const char* type : kTypes) {
    auto it = backups.last.find(type);
    if (it == backups.last.end()) continue;
    const Backup& b = it->second;
    const std::string suffix = collectors::RenderLabels(With(base, "type", type));
    fam.Get("pgbackrest_backup_last_completion_timestamp_seconds").Add(suffix, b.stop);
    fam.Get("pgbackrest_backup_last_duration_seconds").Add(suffix, b.stop - b.start);
    fam.Get("pgbackrest_backup_last_size_bytes").Add(suffix, b.size);
    fam.Get("pgbackrest_backup_last_delta_bytes").Add(suffix, b.delta);
    fam.Get("pgbackrest_backup_last_repository_size_bytes").Add(suffix, b.repo_size);
    fam.Get("pgbackrest_backup_last_repository_delta_bytes").Add(suffix, b.repo_delta);
    if (b.error >= 0) fam.Get("pgbackrest_backup_last_error").Add(suffix, b.error);
  }
  return fam.Take();
}

}  // namespace

BackrestReport ParseBackrestInfo(const std::string& text, const std::string& stanza, const LabelSet& labels) {
  BackrestReport report;
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) {
    report.error = "pgbackrest info output is not valid JSON" + std::string(text.empty() ? " (it is empty)" : "");
    return report;
  }
  try {
    const json& s = FindStanza(doc, stanza);
    const std::string path = "stanza " + stanza;
    const StanzaStatus status = ReadStatus(s, path);
    Backups backups = ReadBackups(s, path);
    if (!status.ok())
      report.error = "stanza " + stanza + ": status " + std::to_string(status.code) + " (" + status.message + ")" +
                     status.detail;
    report.families = ReportFamilies(status, backups, With(labels, "stanza", stanza));
    for (const auto& f : report.families) report.series += f.size();
  } catch (const BadField& e) {
    report = BackrestReport{};
    report.error = std::string("unexpected pgbackrest info output: ") + e.what();
  } catch (const json::exception& e) {
    report = BackrestReport{};
    report.error = std::string("unexpected pgbackrest info output: ") + e.what();
  }
  return report;
}

}  // namespace pgpulse::agent
