// What a conninfo asks of SCRAM pass-through's TLS, read as libpq 15 reads it, and the context
// built from it (config/server_tls).
#include <gtest/gtest.h>
#include <stdlib.h>  // setenv

#include <fstream>
#include <string>
#include <vector>

#include "config/server_tls.h"

namespace sluice::config {
namespace {

using Policy = auth::ClientChannelBinding::Policy;

ServerTlsSettings read(const std::vector<std::pair<std::string, std::string>>& conninfo) {
  std::vector<std::string> keywords;
  std::vector<std::string> values;
  for (const auto& [keyword, value] : conninfo) {
    keywords.push_back(keyword);
    values.push_back(value);
  }
  return ServerTlsSettings::read(keywords, values);
}

TEST(ConfigServerTls, LibpqsDefaultsAndTheLastKeywordWins) {
  const ServerTlsSettings defaults = read({});
  EXPECT_EQ(defaults.mode, SslMode::prefer);
  EXPECT_EQ(defaults.channel_binding, Policy::prefer);
  EXPECT_TRUE(defaults.sni);
  EXPECT_EQ(defaults.min_version, "TLSv1.2");
  EXPECT_TRUE(defaults.invalid.empty());
  const ServerTlsSettings set = read({{"sslmode", "require"},
                                      {"sslmode", "verify-full"},
                                      {"channel_binding", "require"},
                                      {"sslsni", "0"},
                                      {"sslrootcert", "/etc/ca.crt"}});
  EXPECT_EQ(set.mode, SslMode::verify_full);
  EXPECT_EQ(set.channel_binding, Policy::require);
  EXPECT_FALSE(set.sni);
  EXPECT_EQ(set.root_cert, "/etc/ca.crt");
}

TEST(ConfigServerTls, TheEnvironmentFillsWhatTheConninfoLeaves) {
  ::setenv("PGSSLMODE", "verify-ca", 1);
  EXPECT_EQ(read({}).mode, SslMode::verify_ca);
  EXPECT_EQ(read({{"sslmode", "disable"}}).mode, SslMode::disable);
  ::unsetenv("PGSSLMODE");
}

TEST(ConfigServerTls, ValuesLibpqRefusesAreKeptAsItsWords) {
  EXPECT_EQ(read({{"sslmode", "bogus"}}).invalid, "invalid sslmode value: \"bogus\"");
  EXPECT_EQ(read({{"channel_binding", "maybe"}}).invalid, "invalid channel_binding value: \"maybe\"");
  EXPECT_EQ(read({{"ssl_min_protocol_version", "TLSv9"}}).invalid,
            "invalid ssl_min_protocol_version value: \"TLSv9\"");
  EXPECT_EQ(read({{"ssl_min_protocol_version", "TLSv1.3"}, {"ssl_max_protocol_version", "tlsv1.2"}}).invalid,
            "invalid SSL protocol version range");
  const auto context = ServerTlsContext::load(read({{"sslmode", "bogus"}}));
  EXPECT_EQ(context->ssl_context(), nullptr);
  EXPECT_EQ(context->failure(), "invalid sslmode value: \"bogus\"");
}

TEST(ConfigServerTls, VerifyingModesNeedTheRootCertificate) {
  const auto missing =
      ServerTlsContext::load(read({{"sslmode", "verify-full"}, {"sslrootcert", "/nonexistent/ca.crt"}}));
  EXPECT_EQ(missing->ssl_context(), nullptr);
  EXPECT_EQ(missing->failure(),
            "root certificate file \"/nonexistent/ca.crt\" does not exist\nEither provide the file or change "
            "sslmode to disable server certificate verification.");
  // require without a root certificate: TLS without verification.
  const auto require =
      ServerTlsContext::load(read({{"sslmode", "require"}, {"sslrootcert", "/nonexistent/ca.crt"}}));
  EXPECT_NE(require->ssl_context(), nullptr);
  EXPECT_TRUE(require->failure().empty());
  EXPECT_FALSE(require->verifies_chain());
  EXPECT_EQ(ServerTlsContext::load(read({{"sslmode", "disable"}}))->ssl_context(), nullptr);
}

TEST(ConfigServerTls, AFileThatIsNotACertificateGivesLibpqsWords) {
  const std::string path = ::testing::TempDir() + "/not-a-certificate.crt";
  std::ofstream(path) << "not a certificate\n";
  const auto context = ServerTlsContext::load(read({{"sslmode", "verify-ca"}, {"sslrootcert", path}}));
  EXPECT_EQ(context->ssl_context(), nullptr);
  EXPECT_TRUE(context->failure().starts_with("could not read root certificate file \"" + path + "\": "))
      << context->failure();
}

// Databases compare by what their contexts hold, not by pointer (the files' contents count too:
// PassthroughTlsTest.AReloadTakesUpAReplacedRootCertificate).
TEST(ConfigServerTls, ContextsCompareByWhatTheyHold) {
  const ServerTlsSettings settings = read({{"sslmode", "require"}, {"sslrootcert", "/nonexistent/ca.crt"}});
  const ServerTls first{ServerTlsContext::load(settings)};
  const ServerTls again{ServerTlsContext::load(settings)};
  EXPECT_EQ(first, again);
  EXPECT_FALSE(first == ServerTls{ServerTlsContext::load(read({{"sslmode", "prefer"}}))});
  EXPECT_FALSE(first == ServerTls{});
}

}  // namespace
}  // namespace sluice::config
