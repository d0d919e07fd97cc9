// sluiced's descriptor limit: raised to the hard limit at start, and a warning when it is below what
// the configuration may need (a descriptor per client and per server).
#include "daemon/file_limit.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <string>

namespace sluice {
namespace {

config::Config two_databases() {
  config::Config config;
  config.limits.max_client_conn = 100;
  config.workers = 2;
  config.databases["app"].pool.pool_size = 20;
  config.databases["app"].pool.reserve_pool_size = 5;
  config.databases["reports"].pool.pool_size = 20;
  config.databases["reports"].pool.max_db_connections = 7;  // the database's cap wins
  return config;
}

TEST(FileLimit, NeedsADescriptorPerClientAndPerServer) {
  // 100 clients, 25 + 7 servers, 32 of sluiced's own and 4 a worker.
  EXPECT_EQ(daemon::descriptors_needed(two_databases()), 100U + 25U + 7U + 32U + 8U);
}

TEST(FileLimit, WarnsWhenTheLimitIsBelowTheNeed) {
  const auto warning = daemon::file_limit_warning({.soft = 100, .hard = 150}, two_databases());
  ASSERT_TRUE(warning.has_value());
  for (const char* part : {"limit is 100 (hard limit 150)", "below the 172 descriptors at least",
                           "limits.max_client_conn (100)", "LimitNOFILE="}) {
    EXPECT_NE(warning->find(part), std::string::npos) << part << " in: " << *warning;
  }
  EXPECT_FALSE(daemon::file_limit_warning({.soft = 172, .hard = 172}, two_databases()).has_value());
  EXPECT_FALSE(daemon::file_limit_warning({.soft = 0, .hard = 0}, two_databases()).has_value())
      << "an unknown limit is not a short one";
}

TEST(FileLimit, RaisesTheSoftLimitToTheHardOne) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max <= 64) GTEST_SKIP() << "hard limit " << saved.rlim_max;
  rlimit low = saved;
  low.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  const daemon::FileLimit raised = daemon::raise_file_limit();
  rlimit now{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  setrlimit(RLIMIT_NOFILE, &saved);
  EXPECT_EQ(now.rlim_cur, saved.rlim_max);
  EXPECT_EQ(raised.soft, saved.rlim_max);
  EXPECT_EQ(raised.hard, saved.rlim_max);
}

}  // namespace
}  // namespace sluice
