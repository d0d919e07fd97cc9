#include <gtest/gtest.h>

#include "pool/prepared_statements.h"

namespace sluice::pool {
namespace {

TEST(StatementRegistryTest, SameDefinitionSharesOneServerName) {
  StatementRegistry registry;
  const auto first = registry.intern("SELECT 1\0\0\0");
  const auto second = registry.intern("SELECT 1\0\0\0");
  const auto other = registry.intern("SELECT 2\0\0\0");
  EXPECT_EQ(first, second);
  EXPECT_NE(first->server_name, other->server_name);
  EXPECT_EQ(registry.size(), 2U);
}

TEST(StatementRegistryTest, ForgottenStatementsLeaveAndNamesAreNeverReused) {
  StatementRegistry registry;
  std::string first_name;
  {
    const auto statement = registry.intern("SELECT 3");
    first_name = statement->server_name;
  }
  EXPECT_EQ(registry.size(), 0U);
  EXPECT_NE(registry.intern("SELECT 3")->server_name, first_name);
}

TEST(StatementRegistryTest, StatementOutlivesItsRegistry) {
  StatementPtr survivor;
  {
    StatementRegistry registry;
    survivor = registry.intern("SELECT 4");
  }
  EXPECT_EQ(survivor->definition, "SELECT 4");
}

TEST(ClientStatementsTest, NamesMapToStatements) {
  StatementRegistry registry;
  ClientStatements client;
  client.add("_pg3_0", registry.intern("SELECT 5"));
  ASSERT_NE(client.find("_pg3_0"), nullptr);
  EXPECT_EQ(client.find("_pg3_1"), nullptr);
  EXPECT_NE(client.remove("_pg3_0"), nullptr);
  EXPECT_EQ(client.remove("_pg3_0"), nullptr);
}

TEST(ServerStatementCacheTest, EvictsTheLeastRecentlyUsed) {
  StatementRegistry registry;
  ServerStatementCache cache(2);
  const auto a = registry.intern("a");
  const auto b = registry.intern("b");
  const auto c = registry.intern("c");
  EXPECT_EQ(cache.add(a), nullptr);
  EXPECT_EQ(cache.add(b), nullptr);
  EXPECT_TRUE(cache.touch(*a));  // b is now the least recently used
  EXPECT_EQ(cache.add(c), b);
  EXPECT_TRUE(cache.touch(*a));
  EXPECT_FALSE(cache.touch(*b));
  EXPECT_EQ(cache.size(), 2U);
}

TEST(ServerStatementCacheTest, NewGenerationForgetsEverythingUnderNewNames) {
  StatementRegistry registry;
  ServerStatementCache cache(4);
  const auto a = registry.intern("a");
  cache.add(a);
  EXPECT_EQ(cache.suffix(), "");
  cache.start_new_generation();
  EXPECT_FALSE(cache.touch(*a));
  EXPECT_EQ(cache.suffix(), "_g1");
}

// A live upgrade: the backend holds the old process's statements, named up to its generation 3.
TEST(ServerStatementCacheTest, AMovedServerStartsPastTheOldProcessesGenerations) {
  ServerStatementCache cache(4);
  cache.start_generation_after(3);
  EXPECT_EQ(cache.suffix(), "_g4");
  EXPECT_EQ(cache.generation(), 4U);
  cache.start_new_generation();
  EXPECT_EQ(cache.suffix(), "_g5");
}

}  // namespace
}  // namespace sluice::pool
