#include "agent/dsn.h"

#include <libpq-fe.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <vector>

namespace pgpulse::agent {

namespace {

// libpq's parse errors quote pieces of the input, which may be a password, and a password
// may itself contain '"': hide everything from the first quote to the last, whatever pairs.
std::string WithoutQuotedParts(const std::string& msg) {
  std::string out = msg;
  size_t first = out.find('"'), last = out.rfind('"');
  if (first != std::string::npos) out = out.substr(0, first) + "\"...\"" + (last > first ? out.substr(last + 1) : "");
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

void AppendPair(std::string& out, const std::string& key, const std::string& value) {
  if (!out.empty()) out.push_back(' ');
  out += key;
  out += "='";
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
}

}  // namespace

std::optional<ConnectionSpec> ParseDsn(const std::string& dsn, const std::string& password,
                                       collectors::Millis connect_timeout, std::string& error) {
  char* errmsg = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &errmsg);
  if (!opts) {
    error = "invalid DSN: " + (errmsg ? WithoutQuotedParts(errmsg) : std::string("out of memory"));
    if (errmsg) PQfreemem(errmsg);
    return std::nullopt;
  }
  std::map<std::string, std::string> values;
  std::vector<std::string> order;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (o->val && *o->val) {
      values[o->keyword] = o->val;
      order.emplace_back(o->keyword);
    }
  }
  PQconninfoFree(opts);

  ConnectionSpec spec;
  if (!password.empty()) {
    if (!values.count("password")) order.emplace_back("password");
    values["password"] = password;
  }
  spec.password = values.count("password") ? values["password"] : "";
  auto set_default = [&](const std::string& key, const std::string& value) {
    if (!values.count(key)) {
      values[key] = value;
      order.push_back(key);
    }
  };
  int64_t secs = std::max<int64_t>(2, (connect_timeout.count() + 999) / 1000);
  set_default("connect_timeout", std::to_string(secs));
  set_default("keepalives", "1");
  set_default("keepalives_idle", "10");
  set_default("keepalives_interval", "5");
  set_default("keepalives_count", "3");
  set_default("tcp_user_timeout", "15000");
  if (!values.count("application_name")) order.emplace_back("application_name");
  values["application_name"] = "pgpulse";

  for (const std::string& key : order) {
    AppendPair(spec.conninfo, key, values[key]);
    spec.options.emplace_back(key, values[key]);
  }

  auto shown = [&](const char* key, const char* env, const char* fallback) {
    if (values.count(key)) return values[key];
    if (const char* e = std::getenv(env); e && *e) return std::string(e);
    return std::string(fallback);
  };
  spec.display = "host=" + shown("host", "PGHOST", "local-socket") + " port=" + shown("port", "PGPORT", "5432") +
                 " dbname=" + shown("dbname", "PGDATABASE", "(user name)") +
                 " user=" + shown("user", "PGUSER", "(OS user)");
  return spec;
}

std::string BuildConninfo(const std::vector<std::pair<std::string, std::string>>& options) {
  std::string out;
  for (const auto& [key, value] : options) AppendPair(out, key, value);
  return out;
}

std::string ConnectionSpec::ConninfoFor(const std::string& dbname) const {
  std::string out;
  bool replaced = false;
  for (const auto& [key, value] : options) {
    if (key == "dbname") {
      AppendPair(out, key, dbname);
      replaced = true;
    } else {
      AppendPair(out, key, value);
    }
  }
  if (!replaced) AppendPair(out, "dbname", dbname);
  return out;
}

std::optional<std::string> ReadPasswordFile(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = path + ": cannot read password file: " + std::strerror(errno);
    return std::nullopt;
  }
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  if (line.empty()) {
    error = path + ": password file is empty";
    return std::nullopt;
  }
  return line;
}

}  // namespace pgpulse::agent
