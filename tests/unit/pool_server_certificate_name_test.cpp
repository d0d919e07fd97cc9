// verify-full's host name check for SCRAM pass-through over TLS: libpq 15's rules and words.
#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <optional>
#include <string>

#include "pool/server_certificate_name.h"

namespace sluice::pool {
namespace {

struct X509Free {
  void operator()(X509* certificate) const { X509_free(certificate); }
};
using Certificate = std::unique_ptr<X509, X509Free>;

// An unsigned certificate with CN `common_name` (none when empty) and subjectAltName `san`
// ("DNS:a,IP:1.2.3.4"; none when empty): the check reads names only.
Certificate certificate(const std::string& common_name, const std::string& san) {
  Certificate made(X509_new());
  if (!common_name.empty()) {
    X509_NAME_add_entry_by_txt(X509_get_subject_name(made.get()), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  }
  if (!san.empty()) {
    X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str());
    X509_add_ext(made.get(), extension, -1);
    X509_EXTENSION_free(extension);
  }
  return made;
}

TEST(PoolServerCertificateName, DnsNamesWildcardsAndCase) {
  const Certificate named = certificate("ignored.example", "DNS:db.example.com,DNS:*.pool.example.com");
  EXPECT_EQ(certificate_name_mismatch(named.get(), "db.example.com"), std::nullopt);
  EXPECT_EQ(certificate_name_mismatch(named.get(), "DB.Example.COM"), std::nullopt);
  EXPECT_EQ(certificate_name_mismatch(named.get(), "a.pool.example.com"), std::nullopt);
  // A wildcard is one whole label; a DNS subjectAltName rules out the CN.
  EXPECT_EQ(certificate_name_mismatch(named.get(), "a.b.pool.example.com"),
            "server certificate for \"db.example.com\" (and 1 other name) does not match host name "
            "\"a.b.pool.example.com\"");
  EXPECT_NE(certificate_name_mismatch(named.get(), "pool.example.com"), std::nullopt);
  EXPECT_NE(certificate_name_mismatch(named.get(), "ignored.example"), std::nullopt);
}

TEST(PoolServerCertificateName, TheCommonNameServesWithoutSubjectAltNames) {
  const Certificate cn_only = certificate("db.example.com", "");
  EXPECT_EQ(certificate_name_mismatch(cn_only.get(), "db.example.com"), std::nullopt);
  EXPECT_EQ(certificate_name_mismatch(cn_only.get(), "other.example.com"),
            "server certificate for \"db.example.com\" does not match host name \"other.example.com\"");
  const Certificate nameless = certificate("", "");
  EXPECT_EQ(certificate_name_mismatch(nameless.get(), "db.example.com"),
            "could not get server's host name from server certificate");
  EXPECT_EQ(certificate_name_mismatch(cn_only.get(), ""),
            "host name must be specified for a verified SSL connection");
}

// An IP host matches IP subjectAltNames; with none of them libpq also tries the CN, even beside DNS
// names.
TEST(PoolServerCertificateName, IpAddresses) {
  const Certificate with_ip = certificate("db", "DNS:localhost,IP:127.0.0.1,IP:::1");
  EXPECT_EQ(certificate_name_mismatch(with_ip.get(), "127.0.0.1"), std::nullopt);
  EXPECT_EQ(certificate_name_mismatch(with_ip.get(), "::1"), std::nullopt);
  EXPECT_EQ(certificate_name_mismatch(with_ip.get(), "10.0.0.1"),
            "server certificate for \"localhost\" (and 2 other names) does not match host name \"10.0.0.1\"");
  const Certificate dns_only = certificate("127.0.0.1", "DNS:localhost");
  EXPECT_EQ(certificate_name_mismatch(dns_only.get(), "127.0.0.1"), std::nullopt);
}

}  // namespace
}  // namespace sluice::pool
