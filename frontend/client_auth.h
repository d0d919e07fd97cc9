// How one client proves who it is: the method comes from auth.type, or from the first matching
// rule of auth.hba_file; trust, peer and reject decide at once, md5 and scram-sha-256 run their
// exchange (auth/). The session writes what a step returns and feeds it the client's password
// messages; nothing here touches the socket but for SO_PEERCRED and the peer address.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "auth/auth_step.h"
#include "auth/md5_exchange.h"
#include "auth/scram_exchange.h"
#include "config/config.h"
#include "daemon/listener.h"
#include "net/tls_channel.h"

namespace sluice::frontend {

struct AuthClient {
  daemon::Transport transport = daemon::Transport::unix_socket;
  int fd = -1;
  // Its TLS (tls-server-end-point for SCRAM-SHA-256-PLUS, the certificate for cert); nullptr in
  // plain text.
  const net::TlsChannel* tls = nullptr;
  const std::string& user;  // the session's own, which outlives the call
  const std::string& database;
};

class ClientAuth {
 public:
  struct Start {
    auth::AuthStep step;                   // ok or failed at once, or `more` with the challenge
    std::unique_ptr<ClientAuth> exchange;  // set when `more`: feed it the client's answers
    // The method this client is given (hba: its rule's); none when refused without one.
    std::optional<config::AuthType> method;
    // A password method for a role auth.file does not list, with auth.user set: look its secret up
    // (SecretLookup), then challenge().
    bool needs_lookup = false;
  };

  // `config`: auth, and tls.mode ("require" refuses TCP clients without TLS).
  static Start start(const config::Config& config, const AuthClient& client);
  // A password method's exchange once the role's secret is known; nullptr: there is none, and
  // `why_none` is what the log will say when the (mock) exchange fails.
  static Start challenge(config::AuthType method, const auth::Secret* secret, const std::string& why_none,
                         const AuthClient& client);

  using Exchange = std::variant<auth::ScramExchange, auth::Md5Exchange>;
  ClientAuth(config::AuthType method, Exchange exchange) : method_(method), exchange_(std::move(exchange)) {}

  [[nodiscard]] config::AuthType method() const { return method_; }

  // The body of one PasswordMessage / SASLInitialResponse / SASLResponse ('p').
  auth::AuthStep on_response(protocol::Bytes body);
  // What PostgreSQL says when the client sends another message type here.
  [[nodiscard]] std::string unexpected_message(char type) const;
  // After a successful SCRAM exchange: the keys SCRAM pass-through logs in to PostgreSQL with.
  [[nodiscard]] std::optional<auth::ScramKeys> scram_keys() const;
  // For the log: "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256" or "md5".
  [[nodiscard]] std::string_view mechanism() const;

 private:
  config::AuthType method_;
  Exchange exchange_;
};

// For sluicectl clients and the log: "trust", "peer", "md5", "scram-sha-256", "cert", "hba".
std::string_view auth_method_name(config::AuthType type);

}  // namespace sluice::frontend
