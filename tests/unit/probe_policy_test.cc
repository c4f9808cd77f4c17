#include "agent/probe_policy.h"

#include <gtest/gtest.h>

namespace pgpulse::agent {
namespace {

std::vector<AllowedTarget> List(std::initializer_list<const char*> texts) {
  std::vector<AllowedTarget> out;
  for (const char* t : texts) {
    std::string error;
    auto a = ParseAllowedTarget(t, error);
    EXPECT_TRUE(a) << t << ": " << error;
    if (a) out.push_back(*a);
  }
  return out;
}

TEST(ProbePolicyTest, AddressesNetworksAndPortsMatchOnlyWhatIsListed) {
  auto allowed = List({"10.20.0.0/16:5432", "192.168.1.7", "[2001:db8::/32]:6432", "DB7.example"});
  EXPECT_TRUE(TargetAllowed(allowed, "10.20.255.1", 5432));
  EXPECT_TRUE(TargetAllowed(allowed, "10.20.0.1", 0)) << "no port is 5432";
  EXPECT_FALSE(TargetAllowed(allowed, "10.20.0.1", 5433));
  EXPECT_FALSE(TargetAllowed(allowed, "10.21.0.1", 5432));
  EXPECT_TRUE(TargetAllowed(allowed, "192.168.1.7", 1234)) << "no port in the entry: any port";
  EXPECT_FALSE(TargetAllowed(allowed, "192.168.1.8", 5432));
  EXPECT_TRUE(TargetAllowed(allowed, "2001:db8:1::5", 6432));
  EXPECT_FALSE(TargetAllowed(allowed, "2001:db9::5", 6432));
  EXPECT_TRUE(TargetAllowed(allowed, "db7.EXAMPLE", 5432));
  EXPECT_FALSE(TargetAllowed(allowed, "db7.example.evil", 5432));
  EXPECT_FALSE(TargetAllowed(allowed, "localhost", 5432)) << "a name is allowed only by name";
  EXPECT_FALSE(TargetAllowed({}, "127.0.0.1", 5432));
  EXPECT_TRUE(TargetAllowed(List({"10.1.2.3/31"}), "10.1.2.2", 5432));
  EXPECT_FALSE(TargetAllowed(List({"10.1.2.3/31"}), "10.1.2.4", 5432));
}

TEST(ProbePolicyTest, MalformedEntriesSayWhatIsWrong) {
  for (const char* bad : {"10.0.0.0/33", "db:0", "db:70000", "[::1", "[::1]x", "under_score", "10.0.0.0/x", ""}) {
    std::string error;
    EXPECT_FALSE(ParseAllowedTarget(bad, error)) << bad;
    EXPECT_NE(error.find("'" + std::string(bad) + "'"), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace pgpulse::agent
