// A test fixture whose tests share one throwaway PostgreSQL server, started
// before the suite's first test and destroyed after its last.
#pragma once

#include <gtest/gtest.h>

#include "tests/harness/agent_process.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {

class SharedServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pg_ = PostgresServer::Start().release(); }
  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
  }
  // Suites run one after another, so one pointer serves every suite derived from this.
  static inline PostgresServer* pg_ = nullptr;
};

// A fixture whose tests share one server and one agent watching it: the derived suite's
// SetUpTestSuite starts both (pg_, agent_); they are stopped after its last test, the agent first.
class SharedAgentTest : public ::testing::Test {
 protected:
  static void TearDownTestSuite() {
    delete agent_;
    agent_ = nullptr;
    delete pg_;
    pg_ = nullptr;
  }
  // Suites run one after another, so one pair serves every suite derived from this.
  static inline PostgresServer* pg_ = nullptr;
  static inline AgentProcess* agent_ = nullptr;
};

}  // namespace pgpulse::testing
