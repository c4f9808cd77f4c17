// POST /-/reload (issue #16): behind --web.enable-lifecycle as in Prometheus, the same reload as
// SIGHUP, its outcome (with a rejected config's errors) in the answer and on the landing page.
// (The web config's part: web_config_test.cc.)

#include <gtest/gtest.h>

#include <csignal>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/polling.h"
#include "tests/harness/shared_server.h"

namespace pgpulse::testing {
namespace {

class ReloadOverHttpTest : public SharedServerTest {
 protected:
  std::string Config(const std::string& target) const {
    return "targets:\n  - name: " + target + "\n    dsn: \"" + pg_->uri() + "\"\n";
  }
};

TEST_F(ReloadOverHttpTest, OffWithoutTheLifecycleFlag) {
  const std::string cfg = WriteTempFile("lifecycle-off.yml", Config("main"));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  WriteTempFile("lifecycle-off.yml", Config("renamed"));
  HttpResponse r = HttpRequest("POST", agent->url("/-/reload"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "404 not found: /-/reload (start pgpulse with --web.enable-lifecycle)\n");
  EXPECT_EQ(HttpGet(agent->url("/-/reload")).status, 404);
  EXPECT_NE(HttpGet(agent->url("/")).body.find("Target main"), std::string::npos) << "nothing reloaded";
  // SIGHUP still reloads, and the landing page says when.
  agent->Signal(SIGHUP);
  const std::string page = ScrapeUntil(
      *agent, [](const std::string& b) { return b.find("Target renamed") != std::string::npos; }, 10, "/");
  EXPECT_NE(page.find("Target renamed"), std::string::npos) << agent->Log();
  EXPECT_NE(page.find("<p>Last reload: "), std::string::npos) << page;
}

TEST_F(ReloadOverHttpTest, AppliesOrRejectsWithTheErrorsInTheAnswer) {
  const std::string cfg = WriteTempFile("lifecycle.yml", Config("main"));
  auto agent = AgentProcess::Start({"--config.file=" + cfg, "--web.enable-lifecycle"});
  HttpResponse r = HttpGet(agent->url("/-/reload"));
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers["allow"], "POST, PUT");
  EXPECT_EQ(r.body, "405 method GET not allowed on /-/reload (use POST)\n");

  WriteTempFile("lifecycle.yml", Config("renamed"));
  r = HttpRequest("POST", agent->url("/-/reload"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "configuration reloaded\n");
  std::string page = HttpGet(agent->url("/")).body;
  EXPECT_NE(page.find("Target renamed"), std::string::npos) << page;
  EXPECT_NE(page.find(" UTC, ok</p>"), std::string::npos) << page;

  WriteTempFile("lifecycle.yml", Config("broken") + "scrape:\n  timeout: soon\nsurprise: 1\n");
  r = HttpRequest("POST", agent->url("/-/reload"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body.rfind("configuration rejected; the previous one keeps running:\n", 0), 0u) << r.body;
  EXPECT_NE(r.body.find(cfg + ":5:12: scrape.timeout must be a duration like 500ms, 10s or 5m, got 'soon'"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find(cfg + ":6:1: config: unknown key 'surprise'"), std::string::npos) << r.body;
  page = HttpGet(agent->url("/")).body;
  EXPECT_NE(page.find("rejected; the previous configuration keeps running"), std::string::npos) << page;
  EXPECT_NE(page.find("unknown key &#39;surprise&#39;"), std::string::npos) << page;
  const std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0) << "the previous config keeps serving";
  EXPECT_EQ(SampleValue(body, "pgpulse_config_last_reload_successful"), 0.0);
  EXPECT_EQ(CountSamples(body, "pg_up"), 1);
  EXPECT_NE(HttpGet(agent->url("/")).body.find("Target renamed"), std::string::npos);
}

}  // namespace
}  // namespace pgpulse::testing
