// auth.hba_file: pg_hba.conf's syntax (the subset PgBouncer reads) and first-match evaluation.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include "auth/hba.h"

namespace sluice::auth {
namespace {

HbaClient local(std::string_view database, std::string_view user) {
  return HbaClient{
      .local = true, .tls = false, .family = 0, .address = {}, .database = database, .user = user};
}

HbaClient remote(const char* address, std::string_view database, std::string_view user, bool tls = false) {
  HbaClient client{
      .local = false, .tls = tls, .family = 0, .address = {}, .database = database, .user = user};
  if (inet_pton(AF_INET, address, client.address.data()) == 1) {
    client.family = AF_INET;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, address, client.address.data()), 1) << address;
    client.family = AF_INET6;
  }
  return client;
}

// The method of the first matching rule and its line, or "none".
std::string decide(const HbaRules& rules, const HbaClient& client) {
  const HbaRule* rule = rules.match(client);
  return rule == nullptr ? "none"
                         : std::string(hba_method_name(rule->method)) + "@" + std::to_string(rule->line);
}

TEST(AuthHba, FirstMatchWins) {
  const auto rules = parse_hba(R"(# TYPE  DATABASE  USER   ADDRESS        METHOD
local   all       admin                   peer
local   app,"my db"  all                  scram-sha-256   # comment
local   sameuser  all                     md5
local   all       all                     reject
host    all       all    10.0.0.0/8       scram-sha-256
host    all       all    192.168.1.0  255.255.255.0  md5
hostnossl all     all    127.0.0.1/32     trust
hostssl all       all    ::1/128          cert
host    all       all    all              reject
)");
  ASSERT_TRUE(rules) << rules.error().line << ": " << rules.error().message;
  EXPECT_EQ(decide(*rules, local("app", "admin")), "peer@2");
  EXPECT_EQ(decide(*rules, local("app", "bob")), "scram-sha-256@3");
  EXPECT_EQ(decide(*rules, local("my db", "bob")), "scram-sha-256@3");
  EXPECT_EQ(decide(*rules, local("bob", "bob")), "md5@4");
  EXPECT_EQ(decide(*rules, local("other", "bob")), "reject@5");
  EXPECT_EQ(decide(*rules, remote("10.1.2.3", "app", "bob")), "scram-sha-256@6");
  EXPECT_EQ(decide(*rules, remote("192.168.1.77", "app", "bob")), "md5@7");
  EXPECT_EQ(decide(*rules, remote("192.168.2.77", "app", "bob")), "reject@10");
  EXPECT_EQ(decide(*rules, remote("127.0.0.1", "app", "bob")), "trust@8");
  EXPECT_EQ(decide(*rules, remote("127.0.0.1", "app", "bob", /*tls=*/true)), "reject@10");
  EXPECT_EQ(decide(*rules, remote("::1", "app", "bob", /*tls=*/true)), "cert@9");
  EXPECT_EQ(decide(*rules, remote("::1", "app", "bob")), "reject@10");
}

TEST(AuthHba, NoMatchIsNoEntryAndQuotedAllIsAName) {
  const auto rules = parse_hba("local \"all\" all trust\nhost all all 127.0.0.1/32 trust\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(decide(*rules, local("app", "bob")), "none");
  EXPECT_EQ(decide(*rules, local("all", "bob")), "trust@1");
  EXPECT_EQ(decide(*rules, remote("127.0.0.2", "app", "bob")), "none");
}

TEST(AuthHba, ErrorsNameTheLine) {
  const auto expect_error = [](const std::string& text, int line, const std::string& words) {
    const auto rules = parse_hba(text);
    ASSERT_FALSE(rules) << text;
    EXPECT_EQ(rules.error().line, line) << text;
    EXPECT_NE(rules.error().message.find(words), std::string::npos) << rules.error().message;
  };
  expect_error("\nlocals all all trust", 2, "unknown connection type \"locals\"");
  expect_error("local all all password", 1, "unsupported authentication method \"password\"");
  expect_error("local all +admins trust", 1, "group membership");
  expect_error("local @dbs all trust", 1, "file inclusion");
  expect_error("local samerole all trust", 1, "not supported");
  expect_error("host all all 10.0.0.0/33 trust", 1, "invalid CIDR mask");
  expect_error("host all all db.example.com trust", 1, "invalid IP address");
  expect_error("host all all 10.0.0.0 trust", 1, "needs a CIDR mask");
  expect_error("host all all 10.0.0.0/8 peer", 1, "only supported on local sockets");
  expect_error("host all all 10.0.0.0/8 cert", 1, "only supported on hostssl");
  expect_error("local all all md5 map=x", 1, "unsupported option");
  expect_error("local all", 1, "user column is missing");
  expect_error("local all all", 1, "method is missing");
  expect_error("local \"all all trust", 1, "unterminated");
}

}  // namespace
}  // namespace sluice::auth
