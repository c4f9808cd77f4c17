#include "agent/sources/backrest_collector.h"

#include <algorithm>

#include "agent/log.h"
#include "agent/sources/pgbackrest.h"
#include "collectors/text.h"

namespace pgpulse::agent {

namespace {

// pgbackrest info for one stanza is a few KB per backup; this bounds a runaway.
constexpr size_t kMaxOutput = 16 << 20;
constexpr std::chrono::milliseconds kFailureRetry{60'000};
// What a collection keeps back from its deadline when it waits for pgbackrest info.
constexpr std::chrono::milliseconds kMargin{100};

}  // namespace

BackrestCollector::BackrestCollector(std::string target, BackrestConfig config,
                                     std::vector<std::pair<std::string, std::string>> labels)
    : target_(std::move(target)), config_(std::move(config)), labels_(std::move(labels)) {
  thread_ = std::thread([this] { Loop(); });
}

BackrestCollector::~BackrestCollector() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool BackrestCollector::Refresh() {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_ || requested_) return false;
  if (last_) {
    auto age = std::chrono::steady_clock::now() - last_->at;
    auto ttl = last_->ok ? config_.ttl : std::min<std::chrono::milliseconds>(config_.ttl, kFailureRetry);
    if (age < ttl) return false;
  }
  requested_ = true;
  running_ = true;
  cv_.notify_all();
  return true;
}

std::shared_ptr<const BackrestResult> BackrestCollector::Take(std::chrono::steady_clock::time_point until,
                                                              bool& running) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_until(lock, until, [&] { return !running_; });
  running = running_;
  return last_;
}

void BackrestCollector::Loop() {
  const std::vector<std::string> argv = BackrestInfoArgv(config_);
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || requested_; });
      if (stopping_) return;
      requested_ = false;
    }
    auto result = std::make_shared<BackrestResult>();
    CommandOutcome run = RunCommand(argv, config_.timeout, kMaxOutput, &stopping_);
    result->duration_seconds = run.duration_seconds;
    if (!run.ok()) {
      result->error = Redact(run.error);
    } else if (run.truncated) {
      result->error = "pgbackrest info output is longer than " + std::to_string(kMaxOutput) + " bytes";
    } else {
      BackrestReport report = ParseBackrestInfo(run.out, config_.stanza, labels_);
      result->error = Redact(report.error);
      result->series = report.series;
      if (!report.families.empty())
        result->families = std::make_shared<const std::vector<collectors::Family>>(std::move(report.families));
    }
    // pgBackRest's messages span lines (HINT: ...); one line each in logs and tables.
    result->error = collectors::OneLine(result->error);
    result->ok = result->error.empty();
    if (!result->families) {
      auto down = BackrestDownFamilies(config_.stanza, labels_);
      result->series = 1;
      result->families = std::make_shared<const std::vector<collectors::Family>>(std::move(down));
    }
    result->sequence = ++runs_;
    result->at = std::chrono::steady_clock::now();
    if (!result->ok && !stopping_)
      LogWarn("pgbackrest info failed",
              {{"target", target_},
               {"collector", kName},
               {"stanza", config_.stanza},
               {"duration_ms", std::to_string(static_cast<long long>(run.duration_seconds * 1000))},
               {"error", result->error}});
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_ = std::move(result);
      running_ = false;
    }
    cv_.notify_all();
  }
}

void BackrestCollector::Start() { started_ = Refresh(); }

sources::SourceOutcome BackrestCollector::Collect(const sources::SourceContext&,
                                                  std::chrono::steady_clock::time_point until) {
  sources::SourceOutcome result;
  CollectorOutcome& out = result.outcome;
  out.name = kName;
  bool running = false;
  auto r = Take(started_ ? until - kMargin : std::chrono::steady_clock::now(), running);
  if (!r) {
    out.detail = "pgbackrest info has not finished yet (timeout " + collectors::FormatDuration(config_.timeout) + ")";
    return result;
  }
  result.ran = r->sequence != seen_;
  seen_ = r->sequence;
  out.status = !r->ok ? CollectorStatus::Failed : result.ran ? CollectorStatus::Ok : CollectorStatus::Cached;
  out.detail = collectors::OneLine(r->error);
  if (running) out.detail += std::string(out.detail.empty() ? "" : "; ") + "a newer pgbackrest info is still running";
  out.duration_seconds = r->duration_seconds;
  out.series = r->series;
  out.families = r->families;
  return result;
}

}  // namespace pgpulse::agent
