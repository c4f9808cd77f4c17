// agent/role_check.h: what /primary, /replica and /read answer for a fact about a server.

#include "agent/role_check.h"

#include <gtest/gtest.h>

namespace pgpulse::agent {
namespace {

RoleFact Primary() {
  RoleFact f;
  f.known = true;
  f.lag_seconds = 0;
  return f;
}

RoleFact Replica(std::optional<double> lag) {
  RoleFact f;
  f.known = true;
  f.in_recovery = true;
  f.lag_seconds = lag;
  return f;
}

TEST(RoleCheck, PrimaryAnswers) {
  EXPECT_EQ(AnswerRole(RoleQuestion::Primary, Primary(), -1).status, 200);
  EXPECT_EQ(AnswerRole(RoleQuestion::Primary, Primary(), -1).body, "primary\n");
  EXPECT_EQ(AnswerRole(RoleQuestion::Read, Primary(), 0).status, 200) << "max_lag does not apply to a primary";
  EXPECT_EQ(AnswerRole(RoleQuestion::Replica, Primary(), -1).status, 503);
}

TEST(RoleCheck, ReplicaAnswersWithLag) {
  EXPECT_EQ(AnswerRole(RoleQuestion::Primary, Replica(0), -1).status, 503);
  EXPECT_EQ(AnswerRole(RoleQuestion::Replica, Replica(2.25), -1).body, "replica, replay lag 2.2s\n");
  EXPECT_EQ(AnswerRole(RoleQuestion::Replica, Replica(2.25), 3).status, 200);
  RoleAnswer lagging = AnswerRole(RoleQuestion::Read, Replica(12), 10);
  EXPECT_EQ(lagging.status, 503);
  EXPECT_EQ(lagging.body, "replica lagging: replay lag 12.0s exceeds max_lag 10.0s\n");
  // No commit replayed yet: the lag is unknown, fine without a limit, too much with one.
  EXPECT_EQ(AnswerRole(RoleQuestion::Replica, Replica(std::nullopt), -1).status, 200);
  EXPECT_EQ(AnswerRole(RoleQuestion::Replica, Replica(std::nullopt), 60).status, 503);
}

TEST(RoleCheck, UnknownIsAlways503) {
  RoleFact f;
  f.error = "cannot connect: no answer within 2500 ms";
  for (RoleQuestion q : {RoleQuestion::Primary, RoleQuestion::Replica, RoleQuestion::Read}) {
    RoleAnswer a = AnswerRole(q, f, -1);
    EXPECT_EQ(a.status, 503);
    EXPECT_EQ(a.body, "unknown: cannot connect: no answer within 2500 ms\n");
  }
}

}  // namespace
}  // namespace pgpulse::agent
