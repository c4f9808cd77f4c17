// Alert rules for end-to-end tests: the shipped rules generated with test thresholds, and alerts
// described one a line for failure messages.
#pragma once

#include <string>
#include <vector>

#include "tests/harness/prometheus_server.h"
#include "tests/harness/webhook_receiver.h"

namespace pgpulse::testing {

// alerts/generate.sh with the shipped thresholds plus `thresholds` (YAML), into a directory `name` of the
// per-process temp dir; returns the Prometheus rule file. Throws std::runtime_error with the output on failure.
std::string GenerateRules(const std::string& name, const std::string& thresholds);

// "\n  STATE {labels}" per alert, or "none".
std::string DescribeAlerts(const std::vector<PrometheusServer::Alert>& alerts);
std::string DescribeAlerts(const std::vector<WebhookReceiver::Alert>& alerts);

// Fails the test (EXPECT) where the alert's annotations show a template error or "<no value>", or its
// runbook_url lacks the alert's anchor (#lowercased-alertname).
void ExpectAnnotationsRendered(const WebhookReceiver::Alert& alert);

// What Prometheus answers for `promql`, one sample a line (or the error), for failure messages.
std::string DescribeQuery(const PrometheusServer& prometheus, const std::string& promql);

}  // namespace pgpulse::testing
