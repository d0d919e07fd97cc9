#include "pool/server_certificate_name.h"

#include <arpa/inet.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <strings.h>

#include <array>
#include <cstring>

namespace sluice::pool {
namespace {

// One name of the certificate, and whether it names the host.
struct Examined {
  bool matches = false;
  std::string name;
  bool embedded_null = false;  // libpq refuses the certificate
};

bool is_ip_address(const std::string& host) {
  in_addr v4{};
  in6_addr v6{};
  return ::inet_aton(host.c_str(), &v4) != 0 || ::inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

// "*.example.com" matches "db.example.com", not "example.com" or "a.db.example.com".
bool wildcard_matches(const std::string& pattern, const std::string& host) {
  if (pattern.size() < 3 || !pattern.starts_with("*.") || pattern.size() > host.size()) return false;
  const std::size_t tail = host.size() - (pattern.size() - 1);
  if (::strcasecmp(pattern.c_str() + 1, host.c_str() + tail) != 0) return false;
  return host.find('.') >= tail;
}

Examined dns_name(const ASN1_STRING* entry, const std::string& host) {
  const auto* data = reinterpret_cast<const char*>(ASN1_STRING_get0_data(entry));
  std::string name(data, static_cast<std::size_t>(ASN1_STRING_length(entry)));
  if (name.find('\0') != std::string::npos) return {false, {}, true};
  const bool matches = ::strcasecmp(name.c_str(), host.c_str()) == 0 || wildcard_matches(name, host);
  return {matches, std::move(name)};
}

Examined ip_address(const ASN1_OCTET_STRING* entry, const std::string& host) {
  const unsigned char* data = ASN1_STRING_get0_data(entry);
  const int length = ASN1_STRING_length(entry);
  std::array<unsigned char, 16> wanted{};
  std::array<char, INET6_ADDRSTRLEN> text{};
  const int family = length == 4 ? AF_INET : AF_INET6;
  if (length != 4 && length != 16) return {false, {}};
  const bool parsed = ::inet_pton(family, host.c_str(), wanted.data()) == 1;
  ::inet_ntop(family, data, text.data(), text.size());
  return {parsed && std::memcmp(wanted.data(), data, static_cast<std::size_t>(length)) == 0, text.data()};
}

}  // namespace

std::optional<std::string> certificate_name_mismatch(X509* certificate, const std::string& host) {
  if (host.empty()) return "host name must be specified for a verified SSL connection";
  const int host_type = is_ip_address(host) ? GEN_IPADD : GEN_DNS;
  int examined = 0;
  std::string first_name;
  bool check_cn = true;
  bool embedded_null = false;
  const auto consider = [&](const Examined& name) {
    ++examined;
    embedded_null = embedded_null || name.embedded_null;
    if (first_name.empty()) first_name = name.name;
    return name.matches;
  };
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr));
  bool matched = false;
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names) && !matched && !embedded_null; ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    // A name of the host's own kind rules out the CN (RFC 6125; for an IP host, libpq's choice).
    if (name->type == host_type) check_cn = false;
    if (name->type == GEN_DNS) matched = consider(dns_name(name->d.dNSName, host));
    if (name->type == GEN_IPADD) matched = consider(ip_address(name->d.iPAddress, host));
  }
  GENERAL_NAMES_free(names);
  if (!matched && check_cn && !embedded_null) {
    X509_NAME* subject = X509_get_subject_name(certificate);
    const int index = subject != nullptr ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
    if (index >= 0)
      matched = consider(dns_name(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)), host));
  }
  if (embedded_null) return "SSL certificate's name contains embedded null";
  if (matched) return std::nullopt;
  if (examined == 0) return "could not get server's host name from server certificate";
  std::string message = "server certificate for \"" + first_name + "\"";
  if (examined > 1)
    message += " (and " + std::to_string(examined - 1) + (examined == 2 ? " other name)" : " other names)");
  return message + " does not match host name \"" + host + "\"";
}

}  // namespace sluice::pool
