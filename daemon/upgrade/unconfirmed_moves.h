// A live upgrade's old process, for each client it handed over: its own copy of the client's
// socket, kept until the new process says what became of the client. The new process may die
// with the client still in the channel or on its way to a worker, or decline it (state it cannot
// carry): the old process then ends the client as a drain does — PostgreSQL's 57P01 FATAL —
// rather than leaving it a bare EOF. Main loop only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

namespace sluice::daemon::upgrade {

class UnconfirmedMoves {
 public:
  UnconfirmedMoves() = default;
  ~UnconfirmedMoves() { forget_all(); }
  UnconfirmedMoves(const UnconfirmedMoves&) = delete;
  UnconfirmedMoves& operator=(const UnconfirmedMoves&) = delete;

  // Takes `client_socket` (a duplicate of the moved client's) until the move is settled; the
  // move's number, which the "client" message carries.
  std::uint64_t hold(int client_socket);
  // The new process's answer: `adopted` (it serves the client, or ended it with its own error):
  // this copy closes without a word; declined: the client is drained from here.
  void settle(std::uint64_t move, bool adopted);
  // The new process is gone: every client still held is drained from here.
  void drain_all();
  // This process exits without an answer while the new one lives: the copies close without a
  // word (the new process holds the clients).
  void forget_all();
  [[nodiscard]] bool empty() const { return held_.empty(); }
  [[nodiscard]] std::size_t size() const { return held_.size(); }

 private:
  std::map<std::uint64_t, int> held_;
  std::uint64_t next_move_ = 1;
};

// Ends a client at rest as a drain does: 57P01 FATAL "terminating connection due to administrator
// command", written without waiting, then closes the socket.
void drain_client_socket(int socket);

}  // namespace sluice::daemon::upgrade
