#include "frontend/client_auth.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "auth/auth_file.h"
#include "auth/hba.h"
#include "frontend/peer_auth.h"
#include "protocol/sqlstate.h"

namespace sluice::frontend {
namespace {

using auth::AuthError;
using auth::AuthStep;
using auth::HbaMethod;

// The client's address for hba rules; an IPv4-mapped IPv6 address counts as IPv4, as PostgreSQL does.
void read_peer_address(int fd, auth::HbaClient& out) {
  sockaddr_storage address{};
  socklen_t size = sizeof address;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) return;
  if (address.ss_family == AF_INET) {
    out.family = AF_INET;
    std::memcpy(out.address.data(), &reinterpret_cast<const sockaddr_in&>(address).sin_addr, 4);
  } else if (address.ss_family == AF_INET6) {
    const in6_addr& v6 = reinterpret_cast<const sockaddr_in6&>(address).sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) {
      out.family = AF_INET;
      std::memcpy(out.address.data(), v6.s6_addr + 12, 4);
    } else {
      out.family = AF_INET6;
      std::memcpy(out.address.data(), v6.s6_addr, 16);
    }
  }
}

// PostgreSQL's words for a refusal by pg_hba.conf: `host "[local]", user "u", database "d", no encryption`.
std::string hba_subject(const auth::HbaClient& who) {
  std::string host = "[local]";
  if (!who.local) {
    char text[INET6_ADDRSTRLEN] = "";
    inet_ntop(who.family, who.address.data(), text, sizeof text);
    host = text;
  }
  return "host \"" + host + "\", user \"" + std::string(who.user) + "\", database \"" +
         std::string(who.database) + "\", " + (who.tls ? "SSL encryption" : "no encryption");
}

AuthStep refused(const char* sqlstate, std::string message, std::string log_reason) {
  return AuthStep{AuthStep::Verdict::failed,
                  {},
                  AuthError{.sqlstate = sqlstate,
                            .message = std::move(message),
                            .detail = {},
                            .log_reason = std::move(log_reason)}};
}

AuthStep accepted() { return AuthStep{AuthStep::Verdict::ok, {}, {}}; }

// A role's SCRAM exchange; without a verifier, the mock one that fails at the end.
// `method`: md5 for a role whose secret is a SCRAM verifier runs SCRAM, but is still md5's login.
ClientAuth::Start scram_challenge(config::AuthType method, const auth::Secret* secret,
                                  const std::string& why_none, const AuthClient& client) {
  // On TLS, SCRAM-SHA-256-PLUS is offered, bound to this connection — unless the certificate's
  // signature has no single hash (Ed25519): empty binding data would bind nothing.
  auth::ChannelBinding binding;
  if (client.tls != nullptr && !client.tls->server_end_point().empty()) {
    const auto end_point = client.tls->server_end_point();
    binding.emplace(end_point.begin(), end_point.end());
  }
  auth::ScramExchange::Options options{.user = client.user,
                                       .verifier = std::nullopt,
                                       .why_no_verifier = why_none,
                                       .channel_binding = std::move(binding),
                                       .server_nonce = {}};
  if (const auto* verifier = secret != nullptr ? std::get_if<auth::ScramVerifier>(secret) : nullptr) {
    options.verifier = *verifier;
  } else if (secret != nullptr) {
    options.why_no_verifier = "User \"" + client.user + "\" does not have a valid SCRAM secret.";
  }
  auth::ScramExchange exchange(std::move(options));
  AuthStep step{AuthStep::Verdict::more, exchange.start(), {}};
  return {std::move(step), std::make_unique<ClientAuth>(method, std::move(exchange)), method, false};
}

ClientAuth::Start md5_challenge(const auth::Md5Hash& hash, const AuthClient& client) {
  auth::Md5Exchange exchange({.user = client.user, .hash = hash, .salt = std::nullopt});
  AuthStep step{AuthStep::Verdict::more, exchange.start(), {}};
  return {std::move(step), std::make_unique<ClientAuth>(config::AuthType::md5, std::move(exchange)),
          config::AuthType::md5, false};
}

// md5 or scram-sha-256 with the secret from auth.file, or a lookup first (auth.query).
ClientAuth::Start password(config::AuthType method, const config::AuthConfig& config,
                           const AuthClient& client) {
  const auth::Secret* secret = config.secrets ? config.secrets->find(client.user) : nullptr;
  if (secret == nullptr && config.user) return {AuthStep{}, nullptr, method, true};
  return ClientAuth::challenge(method, secret, "Role \"" + client.user + "\" does not exist in auth.file.",
                               client);
}

ClientAuth::Start peer(const AuthClient& client) {
  const auto name =
      client.transport == daemon::Transport::unix_socket ? peer_user_name(client.fd) : std::nullopt;
  if (name && *name == client.user) return {accepted(), nullptr, config::AuthType::peer, false};
  return {refused(sqlstate::kInvalidAuthorizationSpecification,
                  "Peer authentication failed for user \"" + client.user + "\"",
                  name ? "Provided user name (" + client.user + ") and authenticated user name (" + *name +
                             ") do not match."
                       : "the peer's user is unknown (not a local socket, or a uid without a name)"),
          nullptr, config::AuthType::peer, false};
}

// PostgreSQL's cert method (auth.type "cert" and hba's): a client certificate that verified
// against tls.ca_file, whose CN is the role; there is no user-name map.
ClientAuth::Start cert(const AuthClient& client, const auth::HbaClient& who) {
  const auto refuse = [&](std::string message, std::string why) {
    return ClientAuth::Start{
        refused(sqlstate::kInvalidAuthorizationSpecification, std::move(message), std::move(why)), nullptr,
        std::nullopt, false};
  };
  if (client.tls == nullptr)
    return refuse("no pg_hba.conf entry for " + hba_subject(who), "cert needs a TLS connection");
  if (!client.tls->peer_certificate_verified())
    return refuse("connection requires a valid client certificate", "no verified client certificate");
  const auto common_name = client.tls->peer_common_name();
  if (common_name != client.user) {
    return refuse("certificate authentication failed for user \"" + client.user + "\"",
                  "the certificate's CN is \"" + common_name.value_or("") + "\"");
  }
  return {accepted(), nullptr, config::AuthType::cert, false};
}

ClientAuth::Start by_method(HbaMethod method, const config::AuthConfig& config, const AuthClient& client,
                            const auth::HbaClient& who, int line) {
  switch (method) {
    case HbaMethod::trust:
      return {accepted(), nullptr, config::AuthType::trust, false};
    case HbaMethod::peer:
      return peer(client);
    case HbaMethod::md5:
      return password(config::AuthType::md5, config, client);
    case HbaMethod::scram_sha_256:
      return password(config::AuthType::scram_sha_256, config, client);
    case HbaMethod::cert:
      return cert(client, who);
    case HbaMethod::reject:
      break;
  }
  return {refused(sqlstate::kInvalidAuthorizationSpecification,
                  "pg_hba.conf rejects connection for " + hba_subject(who),
                  "auth.hba_file line " + std::to_string(line) + " rejects it"),
          nullptr, std::nullopt, false};
}

}  // namespace

ClientAuth::Start ClientAuth::start(const config::Config& full_config, const AuthClient& client) {
  const config::AuthConfig& config = full_config.auth;
  auth::HbaClient who{.local = client.transport == daemon::Transport::unix_socket,
                      .tls = client.tls != nullptr,
                      .family = 0,
                      .address = {},
                      .database = client.database,
                      .user = client.user};
  if (!who.local) read_peer_address(client.fd, who);
  // What PostgreSQL says when its pg_hba.conf has only hostssl lines, the setup "require" mirrors.
  if (full_config.tls.mode == config::TlsMode::require && !who.local && !who.tls) {
    return {
        refused(sqlstate::kInvalidAuthorizationSpecification, "no pg_hba.conf entry for " + hba_subject(who),
                "tls.mode \"require\": a TCP client without TLS"),
        nullptr, std::nullopt, false};
  }
  if (config.type == config::AuthType::hba) {
    const auth::HbaRule* rule = config.hba ? config.hba->match(who) : nullptr;
    if (rule == nullptr) {
      return {refused(sqlstate::kInvalidAuthorizationSpecification,
                      "no pg_hba.conf entry for " + hba_subject(who), "no line of auth.hba_file matches"),
              nullptr, std::nullopt, false};
    }
    return by_method(rule->method, config, client, who, rule->line);
  }
  switch (config.type) {
    case config::AuthType::trust:
      // Trust over plain TCP lets anyone who can reach the port in as anyone: only when asked by name.
      if (!who.local && !who.tls && !config.type_written) {
        return {refused(sqlstate::kInvalidAuthorizationSpecification,
                        "no pg_hba.conf entry for " + hba_subject(who),
                        "a TCP client without TLS needs a password method, or auth.type \"trust\" written in "
                        "the config"),
                nullptr, std::nullopt, false};
      }
      return {accepted(), nullptr, config::AuthType::trust, false};
    case config::AuthType::peer:
      return peer(client);
    case config::AuthType::md5:
    case config::AuthType::scram_sha_256:
      return password(config.type, config, client);
    case config::AuthType::cert:
      return cert(client, who);
    case config::AuthType::hba:
      break;
  }
  return {accepted(), nullptr, config::AuthType::trust, false};
}

ClientAuth::Start ClientAuth::challenge(config::AuthType method, const auth::Secret* secret,
                                        const std::string& why_none, const AuthClient& client) {
  // As PostgreSQL: md5 for a role whose secret is a SCRAM verifier runs SCRAM, and so does md5 for a
  // role without a secret (PostgreSQL's default password_encryption), so that the first challenge
  // does not tell which roles exist.
  const bool scram = method != config::AuthType::md5 || secret == nullptr ||
                     std::holds_alternative<auth::ScramVerifier>(*secret);
  return scram ? scram_challenge(method, secret, why_none, client)
               : md5_challenge(std::get<auth::Md5Hash>(*secret), client);
}

AuthStep ClientAuth::on_response(protocol::Bytes body) {
  return std::visit([body](auto& exchange) { return exchange.on_response(body); }, exchange_);
}

std::string ClientAuth::unexpected_message(char type) const {
  const bool sasl = std::holds_alternative<auth::ScramExchange>(exchange_);
  return std::string(sasl ? "expected SASL response" : "expected password response") + ", got message type " +
         std::to_string(static_cast<unsigned char>(type));
}

std::optional<auth::ScramKeys> ClientAuth::scram_keys() const {
  const auto* scram = std::get_if<auth::ScramExchange>(&exchange_);
  return scram != nullptr ? scram->scram_keys() : std::nullopt;
}

std::string_view ClientAuth::mechanism() const {
  if (const auto* scram = std::get_if<auth::ScramExchange>(&exchange_))
    return scram->channel_bound() ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
  return "md5";
}

std::string_view auth_method_name(config::AuthType type) {
  switch (type) {
    case config::AuthType::trust:
      return "trust";
    case config::AuthType::peer:
      return "peer";
    case config::AuthType::md5:
      return "md5";
    case config::AuthType::scram_sha_256:
      return "scram-sha-256";
    case config::AuthType::cert:
      return "cert";
    case config::AuthType::hba:
      return "hba";
  }
  return "?";
}

}  // namespace sluice::frontend
