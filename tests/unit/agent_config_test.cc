#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <unistd.h>
#include <zlib.h>

#include "agent/config.h"
#include "tests/unit/helpers.h"
#include "agent/dsn.h"
#include "agent/gzip.h"
#include "agent/http_server.h"
#include "agent/log.h"

namespace pgpulse::agent {
namespace {

std::string Write(const std::string& text) { return pgpulse::testing::WriteTempFile(text); }

using pgpulse::testing::Joined;

TEST(Config, FullFileLoads) {
  std::string p = Write(R"(targets:
  - name: main
    dsn: postgresql://monitor@db1:5432/app
    password_file: /run/secrets/pg
  - name: replica
    dsn: host=db2 user=monitor
collectors:
  directories: [/etc/pgpulse/queries.d]
  disable: [database_size]
scrape:
  timeout: 8s
  timeout_offset: 250ms
connect_timeout: 3s
)");
  ConfigResult r = LoadConfig(p, "ignored", "");
  ASSERT_TRUE(r.ok()) << Joined(r.errors);
  ASSERT_EQ(r.config.targets.size(), 2u);
  EXPECT_EQ(r.config.targets[0].password_file, "/run/secrets/pg");
  EXPECT_EQ(r.config.scrape_timeout, Millis(8000));
  EXPECT_EQ(r.config.timeout_offset, Millis(250));
  EXPECT_EQ(r.config.connect_timeout, Millis(3000));
  EXPECT_EQ(r.config.disabled_collectors.count("database_size"), 1u);
  std::remove(p.c_str());
}

TEST(Config, CollectorOverridesAndEnable) {
  std::string p = Write(R"(collectors:
  enable: [statement_text]
  overrides:
    statements: {max_rows: 500, ttl: 1m}
    bloat: {timeout: 0s, max_series: many}
)");
  ConfigResult r = LoadConfig(p, "", "");
  std::string all = Joined(r.errors);
  EXPECT_EQ(r.config.enabled_collectors.count("statement_text"), 1u);
  EXPECT_EQ(r.config.overrides["statements"].max_rows, 500u);
  EXPECT_EQ(r.config.overrides["statements"].ttl, Millis(60000));
  EXPECT_NE(all.find(p + ":5:22: collectors.overrides.bloat.timeout must be more than 0"), std::string::npos) << all;
  EXPECT_NE(all.find("collectors.overrides.bloat.max_series must be a whole number"), std::string::npos) << all;
  std::remove(p.c_str());
}

TEST(Config, NoFileMeansOneTargetFromDataSourceName) {
  ConfigResult r = LoadConfig("", "postgresql://x@h/db", "/pw");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.config.targets.size(), 1u);
  EXPECT_EQ(r.config.targets[0].name, "default");
  EXPECT_EQ(r.config.targets[0].dsn, "postgresql://x@h/db");
  EXPECT_EQ(r.config.targets[0].password_file, "/pw");
}

TEST(Config, ErrorsNameFileLineAndProblem) {
  std::string p = Write("targets:\n  - name: a\n    dns: typo\nscrape:\n  timeout: soon\n");
  ConfigResult r = LoadConfig(p, "", "");
  ASSERT_FALSE(r.ok());
  std::string all = Joined(r.errors);
  EXPECT_NE(all.find(p + ":3:5: target: unknown key 'dns'"), std::string::npos) << all;
  EXPECT_NE(all.find(p + ":5:12: scrape.timeout must be a duration"), std::string::npos) << all;
  std::remove(p.c_str());
}

TEST(Config, PreparedStatementsCanBeTurnedOffPerTarget) {
  std::string p = Write(
      "targets:\n  - name: a\n  - name: b\n    prepared_statements: false\n"
      "  - name: c\n    prepared_statements: sometimes\n");
  ConfigResult r = LoadConfig(p, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(Joined(r.errors).find(p + ":6:26: target 'c'.prepared_statements must be true or false"), std::string::npos)
      << Joined(r.errors);
  std::string good = Write("targets:\n  - name: a\n  - name: b\n    prepared_statements: false\n");
  ConfigResult ok = LoadConfig(good, "", "");
  ASSERT_TRUE(ok.ok()) << Joined(ok.errors);
  EXPECT_TRUE(ok.config.targets[0].prepared_statements);
  EXPECT_FALSE(ok.config.targets[1].prepared_statements);
  std::remove(p.c_str());
  std::remove(good.c_str());
}

TEST(Config, LogsKeysAreCheckedAndOnByDefault) {
  std::string p = Write(
      "targets:\n  - name: a\n    logs: {enabled: maybe}\n  - name: b\n    logs: {max_read_bytes: 100}\n"
      "  - name: c\n    logs: {path: /var/log}\n");
  ConfigResult r = LoadConfig(p, "", "");
  ASSERT_FALSE(r.ok());
  const std::string all = Joined(r.errors);
  EXPECT_NE(all.find(p + ":3:21: target 'a'.logs.enabled must be true or false"), std::string::npos) << all;
  EXPECT_NE(all.find(p + ":5:28: target 'b'.logs.max_read_bytes must be at least 65536"), std::string::npos) << all;
  EXPECT_NE(all.find(p + ":7:12: target 'c'.logs: unknown key 'path'"), std::string::npos) << all;
  std::string good = Write("targets:\n  - name: a\n  - name: b\n    logs: {enabled: false, max_read_bytes: 65536}\n");
  ConfigResult ok = LoadConfig(good, "", "");
  ASSERT_TRUE(ok.ok()) << Joined(ok.errors);
  EXPECT_TRUE(ok.config.targets[0].logs.enabled);
  EXPECT_EQ(ok.config.targets[0].logs.max_read_bytes, 16u << 20);
  EXPECT_FALSE(ok.config.targets[1].logs.enabled);
  EXPECT_EQ(ok.config.targets[1].logs.max_read_bytes, 65536u);
  EXPECT_FALSE(ok.config.targets[0] == ok.config.targets[1]) << "a changed logs section rebuilds the target on reload";
  std::remove(p.c_str());
  std::remove(good.c_str());
}

TEST(Config, DuplicateTargetNamesAreRejected) {
  std::string p = Write("targets:\n  - name: a\n  - name: a\n");
  ConfigResult r = LoadConfig(p, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(Joined(r.errors).find("target name 'a' is used twice"), std::string::npos);
  std::remove(p.c_str());
}

TEST(Config, UnreadableFileIsAnError) {
  ConfigResult r = LoadConfig("/nonexistent/pgpulse.yml", "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(Joined(r.errors).find("/nonexistent/pgpulse.yml: cannot read config file"), std::string::npos);
}

TEST(Config, SyntaxErrorHasPosition) {
  std::string p = Write("targets: [\n");
  ConfigResult r = LoadConfig(p, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(Joined(r.errors).find("YAML syntax error"), std::string::npos);
  std::remove(p.c_str());
}

TEST(Dsn, UriAndKeyValueFormsGetAgentSettings) {
  std::string err;
  auto a = ParseDsn("postgresql://mon:s3cret@db.example:6432/app?sslmode=require", "", Millis(5000), err);
  ASSERT_TRUE(a) << err;
  EXPECT_EQ(a->display, "host=db.example port=6432 dbname=app user=mon");
  EXPECT_EQ(a->password, "s3cret");
  EXPECT_NE(a->conninfo.find("application_name='pgpulse'"), std::string::npos);
  EXPECT_NE(a->conninfo.find("sslmode='require'"), std::string::npos);
  EXPECT_NE(a->conninfo.find("connect_timeout='5'"), std::string::npos);
  auto b =
      ParseDsn("host=/var/run/postgresql user=mon application_name=other connect_timeout=9", "", Millis(5000), err);
  ASSERT_TRUE(b) << err;
  EXPECT_NE(b->conninfo.find("application_name='pgpulse'"), std::string::npos);
  EXPECT_EQ(b->conninfo.find("application_name='other'"), std::string::npos);
  EXPECT_NE(b->conninfo.find("connect_timeout='9'"), std::string::npos);
}

TEST(Dsn, PasswordFromFileWinsAndIsQuoted) {
  std::string err;
  auto a = ParseDsn("postgresql://mon:old@h/db", "n'ew\\pw", Millis(5000), err);
  ASSERT_TRUE(a) << err;
  EXPECT_EQ(a->password, "n'ew\\pw");
  EXPECT_NE(a->conninfo.find("password='n\\'ew\\\\pw'"), std::string::npos) << a->conninfo;
  EXPECT_EQ(a->display.find("pw"), std::string::npos);
}

TEST(Dsn, ParseErrorNeverRepeatsTheDsn) {
  std::string err;
  auto a = ParseDsn("host=h password=hunter2 bogus", "", Millis(5000), err);
  ASSERT_FALSE(a);
  EXPECT_NE(err.find("invalid DSN"), std::string::npos);
  EXPECT_EQ(err.find("hunter2"), std::string::npos) << err;
  EXPECT_EQ(err.find("bogus"), std::string::npos) << err;
  auto b = ParseDsn("postgresql://u:hunter2@h/db?bogus=hunter2", "", Millis(5000), err);
  ASSERT_FALSE(b);
  EXPECT_EQ(err.find("hunter2"), std::string::npos) << err;
}

// Issue #18: a '"' in the password ended libpq's quoted piece early and the rest was printed.
TEST(Dsn, ParseErrorHidesAPasswordThatContainsAQuote) {
  std::string err;
  for (const char* dsn : {"postgresql://u:Q\"Q%zz_secret@host/db", "host=h password='Q\"x_secret' \"bogus",
                          "postgresql://u:a\"b\"c%zz_secret@host/db"}) {
    ASSERT_FALSE(ParseDsn(dsn, "", Millis(5000), err)) << dsn;
    EXPECT_NE(err.find("invalid DSN"), std::string::npos) << err;
    EXPECT_EQ(err.find("secret"), std::string::npos) << err;
    EXPECT_EQ(err.find("zz"), std::string::npos) << err;
  }
}

TEST(Log, RedactsRegisteredSecrets) {
  AddSecret("topsecret-pw");
  EXPECT_EQ(Redact("password=topsecret-pw and topsecret-pw"), "password=[REDACTED] and [REDACTED]");
}

TEST(Gzip, AcceptEncodingNegotiation) {
  EXPECT_TRUE(AcceptsGzip("gzip"));
  EXPECT_TRUE(AcceptsGzip("deflate, gzip;q=0.5"));
  EXPECT_TRUE(AcceptsGzip("GZIP"));
  EXPECT_TRUE(AcceptsGzip("*"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("identity"));
  EXPECT_FALSE(AcceptsGzip("xgzip"));
  EXPECT_FALSE(AcceptsGzip(""));
}

TEST(Gzip, ProducesAGzipMember) {
  std::string z = Gzip("hello hello hello hello");
  ASSERT_GE(z.size(), 10u);
  EXPECT_EQ(static_cast<unsigned char>(z[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(z[1]), 0x8b);
}

// zlib (what curl and Prometheus use) reads back exactly what was compressed, large and empty alike.
TEST(Gzip, ZlibInflatesItBackExactly) {
  std::string text;
  for (int i = 0; i < 20000; ++i)
    text += "pg_table_seq_scans_total{datname=\"bench\",schemaname=\"public\",relname=\"t" + std::to_string(i) +
            "\"} " + std::to_string(i * 7) + "\n";
  for (const std::string& input : {text, std::string()}) {
    std::string z = Gzip(input);
    z_stream zs{};
    ASSERT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);
    std::string out(input.size() + 64, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(z.data());
    zs.avail_in = static_cast<uInt>(z.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    EXPECT_EQ(inflate(&zs, Z_FINISH), Z_STREAM_END);
    out.resize(zs.total_out);
    inflateEnd(&zs);
    EXPECT_EQ(out, input);
    if (!input.empty()) {
      EXPECT_LT(z.size(), input.size() / 8) << "metrics text compresses well";
    }
  }
}

TEST(ListenAddress, ExporterStyleToCivetWeb) {
  EXPECT_EQ(HttpServer::ToCivetPorts(":9679"), "9679");
  EXPECT_EQ(HttpServer::ToCivetPorts("0.0.0.0:9679"), "9679");
  EXPECT_EQ(HttpServer::ToCivetPorts("127.0.0.1:80"), "127.0.0.1:80");
  EXPECT_EQ(HttpServer::ToCivetPorts("localhost:80"), "127.0.0.1:80");
  EXPECT_EQ(HttpServer::ToCivetPorts("[::1]:80"), "[::1]:80");
  EXPECT_EQ(HttpServer::ToCivetPorts("9679"), "");
  EXPECT_EQ(HttpServer::ToCivetPorts(":99999"), "");
  EXPECT_EQ(HttpServer::ToCivetPorts("host:abc"), "");
  EXPECT_EQ(HttpServer::ToCivetPorts("example.com:80"), "");
}

}  // namespace
}  // namespace pgpulse::agent
