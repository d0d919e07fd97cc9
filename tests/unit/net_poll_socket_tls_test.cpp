// A TLS socket whose reading pauses (backpressure) and resumes: OpenSSL reads ahead, so records the
// kernel delivered before the pause may wait inside OpenSSL, and the kernel will not announce them
// again. Real OpenSSL on both ends of a socket pair, a real libuv loop.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "config/tls_context.h"
#include "net/poll_socket.h"
#include "net/socket_reactor.h"

namespace sluice::net {
namespace {

class PollSocketTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char pattern[] = "/tmp/sluice-poll-tls.XXXXXX";
    dir_ = mkdtemp(pattern);
    const std::string command =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + dir_ +
        "/key.pem -out " + dir_ + "/cert.pem -subj /CN=localhost -days 2";
    ASSERT_EQ(std::system((command + " >/dev/null 2>&1").c_str()), 0) << command;
  }
  static void TearDownTestSuite() { std::system(("rm -rf " + dir_).c_str()); }

  static std::shared_ptr<const config::TlsContext> context() {
    config::TlsConfig tls;
    tls.mode = config::TlsMode::require;
    tls.cert_file = dir_ + "/cert.pem";
    tls.key_file = dir_ + "/key.pem";
    auto loaded = config::TlsContext::load(tls);
    EXPECT_TRUE(loaded.ok());
    return loaded.ok() ? loaded.value() : nullptr;
  }

  static inline std::string dir_;
};

// Reads everything it can; pauses reading once `received` reaches each length in `pause_at`, and
// the test's timer resumes it.
struct Reader final : PollSocket::Handler {
  PollSocket* socket = nullptr;
  std::string received;
  std::vector<std::size_t> pause_at;
  std::atomic<bool> paused_once{false};
  void on_readable() override {
    char buffer[16384];
    const ssize_t n = socket->read(buffer, sizeof buffer);
    if (n <= 0) return;
    received.append(buffer, static_cast<std::size_t>(n));
    if (!pause_at.empty() && received.size() >= pause_at.front()) {
      pause_at.erase(pause_at.begin());
      socket->set_reading(false);
      paused_once = true;
    }
  }
  void on_drained() override {}
  void on_socket_error(int) override {}
  virtual ~Reader() = default;
};

TEST_F(PollSocketTls, RecordsOpenSslReadAheadBeforeAPauseAreServedWhenReadingResumes) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  const int client_fd = fds[1];
  ASSERT_EQ(fcntl(client_fd, F_SETFL, 0), 0);  // the client side blocks: it runs on its own thread

  Reader reader;
  reader.pause_at = {1, 2};  // after "x", and after "a"
  std::atomic<bool> client_sent{false};
  std::atomic<bool> finished{false};
  std::thread client([&] {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, client_fd);
    if (SSL_connect(ssl) == 1) {
      SSL_write(ssl, "x", 1);
      while (!reader.paused_once && !finished) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      // Three records in the kernel while reading is paused: when it resumes, one read-ahead takes
      // them all into OpenSSL, "a" is handed over, and reading pauses again with two left there.
      for (const char* record : {"a", "b", "c"}) SSL_write(ssl, record, 1);
      client_sent = true;
      while (!finished) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(client_fd);
  });

  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    SocketReactor reactor(&loop);
    PollSocket::Ptr socket = PollSocket::open(&loop, fds[0], /*owns_fd=*/true, &reader);
    reader.socket = socket.get();
    ASSERT_TRUE(socket->start_tls(context(), TlsChannel::Start::after_ssl_request));

    struct TimerState {
      Reader* reader;
      std::atomic<bool>* client_sent;
      int ticks = 0;
    } timer_state{&reader, &client_sent};
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    timer.data = &timer_state;
    uv_timer_start(
        &timer,
        [](uv_timer_t* t) {
          auto* state = static_cast<TimerState*>(t->data);
          ++state->ticks;
          if (state->reader->received == "xabc" || state->ticks > 300)
            return SocketReactor::of(t->loop).stop();
          if (*state->client_sent && !state->reader->socket->reading())
            state->reader->socket->set_reading(true);
        },
        10, 10);
    reactor.run();
    EXPECT_EQ(reader.received, "xabc") << "records OpenSSL held across the pause were never served";
    finished = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  }
  client.join();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace sluice::net
