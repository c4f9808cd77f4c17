#include "agent/web_config.h"

#include <crypt.h>
#include <gtest/gtest.h>

#include <cstring>

namespace pgpulse::agent {
namespace {

TEST(Base64, DecodesAndRejectsGarbage) {
  bool ok = false;
  EXPECT_EQ(Base64Decode("YWxpY2U6czNjcmV0", ok), "alice:s3cret");
  EXPECT_TRUE(ok);
  EXPECT_EQ(Base64Decode("YQ==", ok), "a");
  EXPECT_TRUE(ok);
  Base64Decode("YW!x", ok);
  EXPECT_FALSE(ok);
  Base64Decode("YQ==YQ", ok);
  EXPECT_FALSE(ok);
}

TEST(BasicAuth, AcceptsOnlyTheRightUserAndPassword) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  ASSERT_NE(crypt_gensalt_rn("$2b$", 4, nullptr, 0, salt, sizeof salt), nullptr);
  crypt_data data;
  std::memset(&data, 0, sizeof data);
  BasicAuth auth({{"alice", crypt_r("s3cret", salt, &data)}});
  EXPECT_TRUE(auth.enabled());
  EXPECT_TRUE(auth.Allows("Basic YWxpY2U6czNjcmV0"));   // alice:s3cret
  EXPECT_TRUE(auth.Allows("basic YWxpY2U6czNjcmV0"));   // scheme is case-insensitive
  EXPECT_TRUE(auth.Allows("Basic YWxpY2U6czNjcmV0"));   // again, from the cache
  EXPECT_FALSE(auth.Allows("Basic YWxpY2U6d3Jvbmc="));  // alice:wrong
  EXPECT_FALSE(auth.Allows("Basic Ym9iOnMzY3JldA=="));  // bob:s3cret
  EXPECT_FALSE(auth.Allows("Bearer YWxpY2U6czNjcmV0"));
  EXPECT_FALSE(auth.Allows("Basic !!!"));
  EXPECT_FALSE(auth.Allows("Basic YWxpY2U="));  // no colon
  EXPECT_FALSE(auth.Allows(nullptr));
  EXPECT_FALSE(BasicAuth({}).enabled());
}

}  // namespace
}  // namespace pgpulse::agent
