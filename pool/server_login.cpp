#include "pool/server_login.h"

#include "protocol/error_fields.h"

namespace sluice::pool {
namespace {

constexpr std::uint32_t kProtocolVersion = 196608;  // 3.0
// No login message comes near this (PostgreSQL's own ErrorResponse is a few hundred bytes).
constexpr std::uint32_t kMaxLoginMessage = 64 * 1024;

std::string_view text_of(protocol::Bytes body) {
  return {reinterpret_cast<const char*>(body.data()), body.size()};
}

}  // namespace

ServerLogin::ServerLogin(StartupParameters startup, auth::ScramKeys keys, std::string client_nonce,
                         ChannelBinding channel_binding)
    : startup_(std::move(startup)),
      keys_(keys),
      client_nonce_(std::move(client_nonce)),
      binding_{.policy = channel_binding, .tls = false, .end_point = {}} {}

void ServerLogin::use_tls(std::vector<std::uint8_t> end_point) {
  binding_.tls = true;
  binding_.end_point = std::move(end_point);
}

std::string ServerLogin::startup_message() const {
  std::string body;
  protocol::append_u32(body, kProtocolVersion);
  for (const auto& [name, value] : startup_) {
    body.append(name).push_back('\0');
    body.append(value).push_back('\0');
  }
  body.push_back('\0');
  std::string message;
  protocol::append_u32(message, static_cast<std::uint32_t>(4 + body.size()));
  return message + body;
}

ServerLogin::Status ServerLogin::failed(std::string reason) {
  failure_ = std::move(reason);
  return status_ = Status::failed;
}

ServerLogin::Status ServerLogin::on_bytes(protocol::Bytes bytes, std::string& out) {
  if (status_ != Status::more) return status_;
  buffer_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::size_t at = 0;
  while (status_ == Status::more && buffer_.size() - at >= 5) {
    const auto* head = reinterpret_cast<const std::uint8_t*>(buffer_.data() + at);
    const std::uint32_t length = protocol::read_u32(head + 1);
    if (length < 4 || length > kMaxLoginMessage)
      return failed("server sent an invalid message length at login");
    if (buffer_.size() - at < 1 + std::size_t{length}) break;
    on_message(static_cast<char>(head[0]), protocol::Bytes(head + 5, length - 4), out);
    at += 1 + length;
  }
  buffer_.erase(0, at);
  // ReadyForQuery ends the login: nothing may follow before sluiced sends a query.
  if (status_ == Status::done && !buffer_.empty()) return failed("server sent data after ReadyForQuery");
  return status_;
}

ServerLogin::Status ServerLogin::on_message(char type, protocol::Bytes body, std::string& out) {
  switch (type) {
    case 'R':
      return on_authentication(body, out);
    case 'E': {
      std::string whole(1, 'E');
      protocol::append_u32(whole, static_cast<std::uint32_t>(4 + body.size()));
      whole.append(text_of(body));
      const auto error = protocol::read_error_fields(protocol::as_bytes(whole));
      if (!error) return failed("server sent a malformed error at login");
      return failed(error->severity + ":  " + error->sqlstate + ": " + error->message);
    }
    case 'N':
      return status_;
    case 'S': {
      if (!authenticated_) break;
      const std::string_view text = text_of(body);
      const std::size_t nul = text.find('\0');
      if (nul == std::string_view::npos || text.back() != '\0' || text.find('\0', nul + 1) != text.size() - 1)
        return failed("server sent a malformed ParameterStatus");
      parameters_.emplace_back(std::string(text.substr(0, nul)),
                               std::string(text.substr(nul + 1, text.size() - nul - 2)));
      return status_;
    }
    case 'K':
      if (!authenticated_ || body.size() != 8) break;
      process_id_ = protocol::read_u32(body.data());
      secret_ = protocol::read_u32(body.data() + 4);
      return status_;
    case 'Z':
      if (!authenticated_ || body.size() != 1) break;
      if (process_id_ == 0) return failed("server sent no BackendKeyData");
      return status_ = Status::done;
    default:
      break;
  }
  return failed(std::string("server sent unexpected message type '") + type + "' at login");
}

ServerLogin::Status ServerLogin::on_authentication(protocol::Bytes body, std::string& out) {
  if (body.size() < 4 || authenticated_) return failed("server sent an unexpected authentication request");
  // The login cannot succeed however often it is tried: the pool tells the waiting clients at once.
  const auto refused = [this](const std::string& why) { return failed(std::string(kRefusedPrefix) + why); };
  const std::uint32_t code = protocol::read_u32(body.data());
  const protocol::Bytes rest = body.subspan(4);
  // libpq 15's check_expected_areq: with channel_binding=require, only a bound SCRAM exchange may
  // let the client in.
  if (binding_.policy == ChannelBinding::require) {
    if (code == 0 && !(scram_done_ && scram_->channel_bound()))
      return refused("channel binding required, but server authenticated client without channel binding");
    if (code != 0 && code != 10 && code != 11 && code != 12)
      return refused("channel binding required but not supported by server's authentication request");
  }
  switch (code) {
    case 0:  // AuthenticationOk
      authenticated_ = true;
      return status_;
    case 10: {  // AuthenticationSASL
      if (scram_) return refused("unexpected AuthenticationSASL");
      scram_.emplace(keys_, client_nonce_, std::string(), binding_);
      auto response = scram_->on_mechanisms(rest);
      if (!response) return refused(response.error());
      out += *response;
      return status_;
    }
    case 11: {  // AuthenticationSASLContinue
      if (!scram_) return refused("unexpected AuthenticationSASLContinue");
      auto response = scram_->on_server_first(rest);
      if (!response) return refused(response.error());
      out += *response;
      return status_;
    }
    case 12:  // AuthenticationSASLFinal
      if (!scram_) return refused("unexpected AuthenticationSASLFinal");
      if (auto problem = scram_->on_server_final(rest)) return refused(*problem);
      scram_done_ = true;
      return status_;
    case 3:
    case 5:
      return refused("the server asks for a password, not SCRAM-SHA-256");
    default:
      return refused("the server asks for an authentication method it cannot answer (code " +
                     std::to_string(code) + ")");
  }
}

}  // namespace sluice::pool
