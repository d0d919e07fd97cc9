// The limit keys (README "Limits against PgBouncer's names"): defaults as PgBouncer's, read in the
// `pool` section and per database, and refused with the key and its line when invalid.
#include <gtest/gtest.h>

#include <string>

#include "config/config_loader.h"

namespace sluice::config {
namespace {

std::string error_of(const std::string& text) {
  const auto result = parse_config(text, "cfg.json");
  return result.ok() ? "<no error>" : result.error();
}

TEST(ConfigLimits, DefaultsAreOffAsPgBouncers) {
  const PoolSettings pool;
  EXPECT_EQ(pool.min_pool_size, 0);
  EXPECT_EQ(pool.reserve_pool_size, 0);
  EXPECT_EQ(pool.reserve_pool_timeout_ms, 5000);
  EXPECT_EQ(pool.max_db_connections, 0);
  EXPECT_EQ(pool.max_user_connections, 0);
  EXPECT_EQ(pool.query_timeout_ms, 0);
  EXPECT_EQ(pool.transaction_timeout_ms, 0);
  EXPECT_EQ(pool.server_check_query, "");
  EXPECT_EQ(pool.server_check_delay_s, 30);
}

TEST(ConfigLimits, ReadInThePoolSectionAndOverriddenPerDatabase) {
  const auto result = parse_config(R"({
    "pool": {"min_pool_size": 2, "reserve_pool_size": 3, "reserve_pool_timeout_ms": 250,
             "max_db_connections": 40, "max_user_connections": 30, "query_timeout_ms": 1000,
             "transaction_timeout_ms": 5000, "server_check_query": "SELECT 1", "server_check_delay_s": 0},
    "databases": {
      "app": {"conninfo": "dbname=app", "max_db_connections": 10, "server_check_query": ""},
      "other": {"conninfo": "dbname=other"}
    }
  })",
                                   "cfg.json");
  ASSERT_TRUE(result.ok()) << result.error();
  const PoolSettings& pool = result->pool;
  EXPECT_EQ(pool.min_pool_size, 2);
  EXPECT_EQ(pool.reserve_pool_size, 3);
  EXPECT_EQ(pool.reserve_pool_timeout_ms, 250);
  EXPECT_EQ(pool.max_db_connections, 40);
  EXPECT_EQ(pool.max_user_connections, 30);
  EXPECT_EQ(pool.query_timeout_ms, 1000);
  EXPECT_EQ(pool.transaction_timeout_ms, 5000);
  EXPECT_EQ(pool.server_check_query, "SELECT 1");
  EXPECT_EQ(pool.server_check_delay_s, 0);
  const PoolSettings& app = result->databases.at("app").pool;
  EXPECT_EQ(app.max_db_connections, 10);
  EXPECT_EQ(app.server_check_query, "");
  EXPECT_EQ(app.max_user_connections, 30);
  EXPECT_EQ(result->databases.at("other").pool, pool);
}

TEST(ConfigLimits, AUsersSectionSetsItsOwnLimit) {
  const auto result =
      parse_config(R"({"users": {"app": {"max_user_connections": 4}, "batch": {}}})", "cfg.json");
  ASSERT_TRUE(result.ok()) << result.error();
  EXPECT_EQ(result->users.at("app").max_user_connections, 4);
  EXPECT_FALSE(result->users.at("batch").max_user_connections.has_value());
  EXPECT_EQ(error_of("{\"users\": {\n\"app\": {\"max_user_connections\": -1}}}"),
            "cfg.json:2: key 'users.app.max_user_connections': must be at least 0, got -1");
  EXPECT_EQ(error_of("{\"users\": {\n\"app\": {\"pool_size\": 3}}}"),
            "cfg.json:2: unknown key 'users.app.pool_size'");
}

TEST(ConfigLimits, InvalidValuesNameTheKeyAndItsLine) {
  EXPECT_EQ(error_of("{\n\"pool\": {\n\"max_db_connections\": -1 }}"),
            "cfg.json:3: key 'pool.max_db_connections': must be at least 0, got -1");
  EXPECT_EQ(error_of("{\"databases\": {\"app\": {\"conninfo\": \"\",\n\"query_timeout_ms\": 1.5 }}}"),
            "cfg.json:2: key 'databases.app.query_timeout_ms': expected an integer, got 1.5");
  EXPECT_EQ(error_of("{\"pool\": {\n\n\"server_check_query\": 1 }}"),
            "cfg.json:3: key 'pool.server_check_query': expected a string, got an integer");
  EXPECT_EQ(error_of("{\"pool\": {\"min_pool_size\": 0,\n\"reserve_pool_timeout_ms\": -5 }}"),
            "cfg.json:2: key 'pool.reserve_pool_timeout_ms': must be at least 0, got -5");
}

}  // namespace
}  // namespace sluice::config
