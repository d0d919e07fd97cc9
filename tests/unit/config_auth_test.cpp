// The auth section: its keys, and the files it names (auth.file, auth.hba_file), read with the
// config so that their errors carry their own file and line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "auth/auth_file.h"
#include "auth/hba.h"
#include "config/config_loader.h"

namespace sluice::config {
namespace {

const std::string kMd5Line = "\"alice\" \"md5" + std::string(32, '0') + "\"\n";

class ConfigAuth : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/sluice-config-auth-XXXXXX";
    ASSERT_NE(mkdtemp(name), nullptr);
    dir_ = name;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
    return dir_ + "/" + name;
  }
  Result<Config> load(const std::string& auth_section) {
    return load_config_file(write("sluice.json", "{\n  \"auth\": " + auth_section + "\n}\n"));
  }
  std::string dir_;
};

TEST_F(ConfigAuth, AuthFileIsReadRelativeToTheConfig) {
  write("users.txt", kMd5Line);
  const auto config = load(R"({"type": "md5", "file": "users.txt"})");
  ASSERT_TRUE(config) << config.error();
  EXPECT_EQ(config->auth.type, AuthType::md5);
  ASSERT_TRUE(config->auth.secrets);
  EXPECT_NE(config->auth.secrets->find("alice"), nullptr);
  EXPECT_TRUE(config->auth.type_written);
}

TEST_F(ConfigAuth, FileErrorsNameTheirFileAndLine) {
  const std::string users = write("users.txt", "; comment\n\"alice\" \"plain\"\n");
  const auto bad_secret = load(R"({"type": "scram-sha-256", "file": "users.txt"})");
  ASSERT_FALSE(bad_secret);
  EXPECT_EQ(bad_secret.error().substr(0, users.size() + 3), users + ":2:");

  const std::string hba = write("hba.conf", "local all all trust\nhost all all 10.0.0.0/99 md5\n");
  write("users.txt", kMd5Line);
  const auto bad_rule = load(R"({"type": "hba", "hba_file": "hba.conf", "file": "users.txt"})");
  ASSERT_FALSE(bad_rule);
  EXPECT_EQ(bad_rule.error(), hba + ":2: invalid CIDR mask in address \"10.0.0.0/99\"");

  const auto missing = load("{\"type\": \"md5\",\n    \"file\": \"absent.txt\"}");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), dir_ + "/sluice.json:3: key 'auth.file': cannot read " + dir_ +
                                 "/absent.txt: No such file or directory");
}

TEST_F(ConfigAuth, MethodsNeedTheirFiles) {
  const auto no_file = load(R"({"type": "scram-sha-256"})");
  ASSERT_FALSE(no_file);
  EXPECT_NE(no_file.error().find("key 'auth.type': a password method needs auth.file or auth.user"),
            std::string::npos);
  const auto no_hba = load(R"({"type": "hba"})");
  ASSERT_FALSE(no_hba);
  EXPECT_NE(no_hba.error().find("\"hba\" needs auth.hba_file"), std::string::npos);
  write("hba.conf", "local all all scram-sha-256\n");
  const auto stray_hba = load(R"({"type": "trust", "hba_file": "hba.conf"})");
  ASSERT_FALSE(stray_hba);
  EXPECT_NE(stray_hba.error().find("key 'auth.hba_file': is read only with auth.type \"hba\""),
            std::string::npos);
  // Secrets under a method that never reads them: the operator meant passwords, and would get trust.
  write("users.txt", "\"app\" \"md5" + std::string(32, 'a') + "\"\n");
  for (const std::string type : {"trust", "peer"}) {
    const auto stray_file = load(R"({"type": ")" + type + R"(", "file": "users.txt", "cache_s": 5})");
    ASSERT_FALSE(stray_file);
    EXPECT_NE(stray_file.error().find(
                  R"(key 'auth.file': is read only with auth.type "md5", "scram-sha-256" or "hba")"),
              std::string::npos)
        << stray_file.error();
  }
  const auto unwritten_trust = load(R"({"user": "pooler"})");
  ASSERT_FALSE(unwritten_trust);
  EXPECT_NE(unwritten_trust.error().find("key 'auth.user': is read only with"), std::string::npos);
  const auto hba_without_secrets = load(R"({"type": "hba", "hba_file": "hba.conf"})");
  ASSERT_FALSE(hba_without_secrets);
  EXPECT_NE(hba_without_secrets.error().find("its md5 and scram-sha-256 rules need auth.file or auth.user"),
            std::string::npos);
  write("hba.conf", "local all all peer\n");
  const auto peer_only = load(R"({"type": "hba", "hba_file": "hba.conf"})");
  ASSERT_TRUE(peer_only) << peer_only.error();
  ASSERT_TRUE(peer_only->auth.hba);
  EXPECT_EQ(peer_only->auth.hba->rules.size(), 1U);
}

TEST_F(ConfigAuth, AuthQueryKeys) {
  const auto defaults = load(R"({"type": "scram-sha-256", "user": "pgbouncer"})");
  ASSERT_TRUE(defaults) << defaults.error();
  EXPECT_EQ(defaults->auth.user, "pgbouncer");
  EXPECT_EQ(defaults->auth.query,
            "SELECT usename, CASE WHEN valuntil < pg_catalog.now() THEN NULL ELSE passwd END FROM pg_shadow "
            "WHERE usename=$1");
  EXPECT_EQ(defaults->auth.cache_s, 60);
  const auto no_user = load("{\"type\": \"md5\", \"file\": \"u.txt\",\n    \"query\": \"SELECT 1\"}");
  ASSERT_FALSE(no_user);
  EXPECT_EQ(no_user.error(), dir_ + "/sluice.json:3: key 'auth.query': needs auth.user to run as");
  const auto negative = load(R"({"type": "md5", "user": "x", "cache_s": -1})");
  ASSERT_FALSE(negative);
  EXPECT_NE(negative.error().find("key 'auth.cache_s': must be at least 0"), std::string::npos);
}

TEST_F(ConfigAuth, TrustIsWrittenOrDefault) {
  const auto written = load(R"({"type": "trust"})");
  ASSERT_TRUE(written);
  EXPECT_TRUE(written->auth.type_written);
  const auto unwritten = load("{}");
  ASSERT_TRUE(unwritten);
  EXPECT_FALSE(unwritten->auth.type_written);
}

}  // namespace
}  // namespace sluice::config
