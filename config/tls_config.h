// The `tls` section: TLS for clients on the TCP listener (README "TLS").
#pragma once

#include <memory>
#include <string>

namespace sluice::config {

class TlsContext;

// What the TCP listener does with TLS. The Unix socket never does TLS, as in PostgreSQL.
enum class TlsMode {
  disable,  // SSLRequest answered 'N'
  allow,    // TLS when the client asks, plain text otherwise
  require,  // TLS when the client asks; plain-text logins are refused
};
enum class TlsMinVersion { tls1_2, tls1_3 };

struct TlsConfig {
  TlsMode mode = TlsMode::disable;
  std::string cert_file;
  std::string key_file;
  std::string ca_file;  // client certificates are asked for (and must verify) when set
  TlsMinVersion min_version = TlsMinVersion::tls1_2;
  // The files above, loaded when the config is (reload: off the loop); null with mode disable.
  // A reload makes a new one: connections made before it keep the one they started with.
  std::shared_ptr<const TlsContext> context;

  bool operator==(const TlsConfig&) const = default;
};

}  // namespace sluice::config
