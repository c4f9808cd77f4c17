// The `filesystem:` definition key, the columns it adds, and targets[].filesystem in the config.

#include "collectors/filesystem.h"

#include <gtest/gtest.h>

#include <sys/statvfs.h>

#include "agent/config.h"
#include "collectors/definition.h"
#include "collectors/mapping.h"
#include "collectors/runner.h"
#include "tests/harness/table_view.h"

namespace pgpulse::collectors {
namespace {

const char* const kDisk = R"(collectors:
  - name: disk
    help: h
    filesystem: path
    sql: SELECT 1
    columns:
      path: label
      fs_reason: {label: reason}
      fs_size_bytes: {gauge: pg_fs_size_bytes, help: Size., unit: bytes}
      fs_visible: {gauge: pg_fs_visible, help: Visible.}
)";

LoadResult Load(const std::string& text) { return LoadDefinitions({Source{"t.yaml", text}}); }

std::string Errors(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += e + "\n";
  return out;
}

TEST(FilesystemDefinition, KeyNamesTheDescribedPathColumn) {
  LoadResult r = Load(kDisk);
  ASSERT_TRUE(r.ok()) << Errors(r);
  EXPECT_EQ(r.definitions[0].filesystem_column, "path");
}

TEST(FilesystemDefinition, PathColumnMustBeDescribed) {
  std::string text = kDisk;
  text.replace(text.find("filesystem: path"), 16, "filesystem: where");
  LoadResult r = Load(text);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(Errors(r).find("t.yaml:4:17: collector 'disk'.filesystem: column 'where' (the path to look at) must be "
                           "described in 'columns'"),
            std::string::npos)
      << Errors(r);
}

TEST(FilesystemDefinition, AddedColumnsNeedTheKey) {
  std::string text = kDisk;
  text.erase(text.find("    filesystem: path\n"), 21);
  LoadResult r = Load(text);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(Errors(r).find("column 'fs_size_bytes' is added by the engine only with 'filesystem: <path column>'"),
            std::string::npos)
      << Errors(r);
}

TEST(FilesystemColumns, VisiblePathGetsStatvfsNumbersAndMissingOnesAReason) {
  LoadResult r = Load(kDisk);
  ASSERT_TRUE(r.ok()) << Errors(r);
  const Definition& def = r.definitions[0];
  testing::Table t({"path"}, {{std::string("/")}, {std::string("/no/such/dir")}, {std::nullopt}});
  FilesystemAccess access;
  access.allowed = true;
  std::vector<std::string> storage, notes;
  AddFilesystemColumns(def, access, t.view, storage, notes);
  ASSERT_EQ(t.view.columns, (std::vector<std::string>{"path", "fs_size_bytes", "fs_visible", "fs_reason"}));
  MappedResult m = MapRows(def, t.view, {});
  ASSERT_EQ(m.error, "");
  ASSERT_EQ(m.families.size(), 2u);
  struct statvfs vfs {};
  ASSERT_EQ(statvfs("/", &vfs), 0);
  EXPECT_EQ(m.families[0].values.size(), 1u) << "only the visible path has a size";
  EXPECT_EQ(m.families[0].values[0], static_cast<double>(vfs.f_blocks) * static_cast<double>(vfs.f_frsize));
  EXPECT_EQ(m.families[1].values, (std::vector<double>{1, 0, 0}));
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_EQ(notes[0], "cannot see /no/such/dir: No such file or directory");
  EXPECT_NE(notes[1].find("no absolute path"), std::string::npos) << notes[1];
}

TEST(FilesystemColumns, DeniedAccessLooksAtNothing) {
  LoadResult r = Load(kDisk);
  ASSERT_TRUE(r.ok()) << Errors(r);
  testing::Table t({"path"}, {{std::string("/")}});
  FilesystemAccess access;
  access.denied_reason = "disabled";
  access.denied_detail = "told not to";
  std::vector<std::string> storage, notes;
  AddFilesystemColumns(r.definitions[0], access, t.view, storage, notes);
  MappedResult m = MapRows(r.definitions[0], t.view, {});
  ASSERT_EQ(m.error, "");
  EXPECT_TRUE(m.families[0].values.empty());
  EXPECT_EQ(m.families[1].values, (std::vector<double>{0}));
  EXPECT_NE(std::string(m.families[1].suffix(0)).find("reason=\"disabled\""), std::string::npos)
      << m.families[1].suffix(0);
  EXPECT_EQ(notes, (std::vector<std::string>{"told not to"}));
}

}  // namespace
}  // namespace pgpulse::collectors

namespace pgpulse::agent {
namespace {

TEST(FilesystemConfig, VisibleAndPrefixAreRead) {
  ConfigResult r = LoadConfigText(
      "targets:\n  - name: a\n    filesystem: {visible: yes, path_prefix: /host/}\n  - name: b\n", "c.yml", "", "");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  EXPECT_EQ(r.config.targets[0].filesystem.mode, FilesystemVisibility::Mode::Yes);
  EXPECT_EQ(r.config.targets[0].filesystem.path_prefix, "/host");
  EXPECT_EQ(r.config.targets[1].filesystem.mode, FilesystemVisibility::Mode::Auto);
}

TEST(FilesystemConfig, BadValuesAreErrorsWithTheirPlace) {
  ConfigResult r = LoadConfigText(
      "targets:\n  - name: a\n    filesystem:\n      visible: sometimes\n      path_prefix: host\n      mount: x\n",
      "c.yml", "", "");
  ASSERT_EQ(r.errors.size(), 3u);
  EXPECT_EQ(r.errors[0], "c.yml:6:7: target 'a'.filesystem: unknown key 'mount' (allowed: visible, path_prefix)");
  EXPECT_EQ(r.errors[1], "c.yml:4:16: target 'a'.filesystem.visible must be auto, yes or no");
  EXPECT_EQ(r.errors[2], "c.yml:5:20: target 'a'.filesystem.path_prefix must be an absolute path, got 'host'");
}

}  // namespace
}  // namespace pgpulse::agent
