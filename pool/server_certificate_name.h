// sslmode=verify-full's last check, as libpq 15 makes it once the handshake is done: the server's
// certificate names the host the conninfo names. libpq's rules, not OpenSSL's X509_check_host: a
// subjectAltName of the host's kind (DNS name or IP address) rules out the CN, a wildcard stands
// for one whole left-most label ("*.example.com"), names compare without regard to case.
#pragma once

#include <openssl/types.h>

#include <optional>
#include <string>

namespace sluice::pool {

// nullopt when `certificate` names `host` (the conninfo's `host`, a name or an IP address), else
// libpq's words: "server certificate for \"x\" does not match host name \"y\"", ...
std::optional<std::string> certificate_name_mismatch(X509* certificate, const std::string& host);

}  // namespace sluice::pool
