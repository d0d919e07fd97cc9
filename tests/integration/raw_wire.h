// A minimal PostgreSQL v3 frontend on a raw Unix (or TCP) socket, for the tests that need to see the exact
// bytes sluiced sends (libpq hides the SQLSTATE of a refused login) or to send bytes libpq never
// would: startup packets, simple queries, ErrorResponse fields.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace harness {

inline constexpr std::chrono::milliseconds kReplyTimeout{5000};

// The name of the user running the tests ("" if unknown).
std::string os_user();

struct Message {
  char type = 0;
  std::string payload;  // without the type byte and the length
};

// ErrorResponse/NoticeResponse fields by their one-byte code ('S', 'V', 'C', 'M', ...).
std::map<char, std::string> error_fields(const Message& message);

// `value` in network byte order.
std::string be32(std::uint32_t value);

// A protocol 3.0 StartupMessage with these parameters (by default: this user, database postgres).
std::string startup_packet(const std::vector<std::pair<std::string, std::string>>& parameters);
std::string startup_packet();

// A simple-protocol Query message.
std::string query_message(const std::string& sql);

// One message taken from a byte stream by `read_bytes` (exactly n bytes, or nullopt at end of stream
// or timeout): RawClient's and TlsClient's framing.
std::optional<Message> read_message_with(
    const std::function<std::optional<std::string>(std::size_t)>& read_bytes);

class RawClient {
 public:
  // Connects to the Unix socket at `path`; throws if it cannot.
  explicit RawClient(const std::string& path);
  // Connects to 127.0.0.1:`port` (the TCP listener); throws if it cannot.
  explicit RawClient(int tcp_port);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  // Sends all of `bytes`; throws if the peer is gone.
  void send(const std::string& bytes) const;
  // False if the daemon closed the connection first (it may, halfway through garbage).
  bool try_send(const std::string& bytes) const;

  void shutdown_write() const;

  // Exactly `count` bytes, or nullopt at end of stream or timeout.
  std::optional<std::string> read_bytes(std::size_t count, std::chrono::milliseconds timeout = kReplyTimeout);

  std::optional<Message> read_message(std::chrono::milliseconds timeout = kReplyTimeout);

  // Reads until a message of `type` (returned) or an ErrorResponse (returned too) arrives, or
  // nothing more does; what came before goes to `skipped`, when given.
  std::optional<Message> read_until(char type, std::vector<Message>* skipped = nullptr);

  // Logs in as this user to database postgres; the ReadyForQuery status byte, or a description of
  // what came instead.
  std::string login();

  // True once the peer has closed the connection (after whatever it still had to say).
  bool closed_by_peer(std::chrono::milliseconds timeout = kReplyTimeout);

 private:
  int fd_;
  std::string buffer_;
  bool eof_ = false;
};

// Backends (other than the observer) running a query or sitting inside a transaction, one a line;
// "" when there are none.
std::string dirty_backends();

}  // namespace harness
