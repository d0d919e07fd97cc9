// The control socket end to end on a real loop (in a thread) with a handler
// that echoes the parsed request. No PostgreSQL needed.
#include "daemon/control_server.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "net/socket_reactor.h"

namespace sluice::daemon {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr uid_t kNobody = 65534;
constexpr gid_t kNoGroup = 65534;
constexpr gid_t kOtherGroup = 1;  // "daemon" on Debian; only the number matters

// A blocking client with a receive timeout, reading line by line.
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    timeval timeout{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  [[nodiscard]] int fd() const { return fd_; }

  bool send(const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n < 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }

  // The next line without its newline; nullopt at EOF, on error or timeout.
  std::optional<std::string> line() {
    for (;;) {
      if (const auto newline = buffered_.find('\n'); newline != std::string::npos) {
        std::string line = buffered_.substr(0, newline);
        buffered_.erase(0, newline + 1);
        return line;
      }
      char chunk[65536];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) {
        last_errno_ = n == 0 ? 0 : errno;
        return std::nullopt;
      }
      buffered_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  Json request(const std::string& line_text) {
    if (!send(line_text + "\n")) return Json{{"client_error", "send failed"}};
    auto answer = line();
    if (!answer) return Json{{"client_error", "no answer"}};
    return Json::parse(*answer);
  }

  // True when the server closed the connection (EOF or reset), false on timeout.
  bool closed_by_server() {
    const auto extra = line();
    return !extra && (last_errno_ == 0 || last_errno_ == ECONNRESET);
  }

 private:
  int fd_ = -1;
  std::string buffered_;
  int last_errno_ = 0;
};

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/sluice-control-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    ::chmod(dir_.c_str(), 0755);  // others may reach the socket; its own mode decides
    path_ = dir_ + "/control.sock";
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    reactor_.emplace(&loop_);
  }

  void TearDown() override {
    stop();
    server_.reset();
    reactor_.reset();                // closes its handle; its sockets are freed
    uv_run(&loop_, UV_RUN_DEFAULT);  // the close callbacks
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    std::filesystem::remove_all(dir_);
  }

  ControlServer::Settings settings() const { return settings_at(path_); }
  static ControlServer::Settings settings_at(const std::string& path) {
    ControlServer::Settings settings;
    settings.path = path;
    return settings;
  }

  void start(const ControlServer::Settings& settings) {
    auto server = ControlServer::open(&loop_, settings,
                                      [this](const ControlRequest& request, ControlServer::Respond respond) {
                                        if (request.command == ControlCommand::pause) {
                                          return answer_later(handle(request), std::move(respond));
                                        }
                                        respond(handle(request));
                                      });
    ASSERT_TRUE(server.ok()) << server.error();
    server_ = std::move(*server);
    uv_async_init(&loop_, &stop_, [](uv_async_t* handle) {
      uv_close(reinterpret_cast<uv_handle_t*>(handle), nullptr);
      net::SocketReactor::of(handle->loop).stop();
    });
    thread_ = std::thread([this] { reactor_->run(); });
  }

  void stop() {
    if (!thread_.joinable()) return;
    uv_async_send(&stop_);
    thread_.join();
  }

  // Runs on the loop thread.
  Json handle(const ControlRequest& request) {
    if (respond_) return respond_(request);
    Json answer{{"cmd", command_name(request.command)}};
    if (request.timeout_s) answer["timeout_s"] = *request.timeout_s;
    if (request.command == ControlCommand::clients) answer["payload"] = std::string(payload_size_, 'x');
    if (request.command == ControlCommand::servers) answer["connections"] = server_->connection_count();
    if (request.command == ControlCommand::reload) throw std::runtime_error("boom");
    return answer;
  }

  // `pause` is answered on a later loop turn, as the daemon answers reports
  // once its workers have given their shares.
  void answer_later(Json answer, ControlServer::Respond respond) {
    struct Later {
      uv_timer_t timer{};
      Json answer;
      ControlServer::Respond respond;
    };
    auto* later = new Later{{}, std::move(answer), std::move(respond)};
    uv_timer_init(&loop_, &later->timer);
    later->timer.data = later;
    uv_timer_start(
        &later->timer,
        [](uv_timer_t* timer) {
          auto* l = static_cast<Later*>(timer->data);
          l->respond(std::move(l->answer));
          uv_close(reinterpret_cast<uv_handle_t*>(timer),
                   [](uv_handle_t* handle) { delete static_cast<Later*>(handle->data); });
        },
        20, 0);
  }

  // The server's own count, asked over a fresh connection (which counts itself).
  std::size_t connections_seen() {
    Client probe(path_);
    return probe.request(R"({"cmd":"servers"})").value("connections", std::size_t{0});
  }

  bool connections_drop_to(std::size_t count) {
    for (int i = 0; i < 200; ++i) {
      if (connections_seen() == count + 1) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::string dir_;
  std::string path_;
  uv_loop_t loop_{};
  std::optional<net::SocketReactor> reactor_;  // reset before the loop closes
  uv_async_t stop_{};
  std::thread thread_;
  std::unique_ptr<ControlServer> server_;
  std::size_t payload_size_ = 0;
  std::function<Json(const ControlRequest&)> respond_;  // replaces the echo when set
};

TEST_F(ControlServerTest, AnswersARequest) {
  start(settings());
  Client client(path_);
  EXPECT_EQ(client.request(R"({"cmd":"status"})"), (Json{{"cmd", "status"}}));
  EXPECT_EQ(client.request(R"({"cmd":"drain","timeout_s":7.5})"),
            (Json{{"cmd", "drain"}, {"timeout_s", 7.5}}));
}

TEST_F(ControlServerTest, SeveralRequestsOnOneConnection) {
  start(settings());
  Client client(path_);
  EXPECT_EQ(client.request(R"({"cmd":"pools"})")["cmd"], "pools");
  EXPECT_EQ(client.request(R"({"cmd":"clients"})")["cmd"], "clients");
  // Pipelined in one write, with CRLF on one of them: answered in order, the
  // first (pause) on a later loop turn than the others would be.
  ASSERT_TRUE(client.send("{\"cmd\":\"pause\"}\n{\"cmd\":\"resume\"}\r\n{\"cmd\":\"teardown\"}\n"));
  for (const char* expected : {"pause", "resume", "teardown"}) {
    const auto line = client.line();
    ASSERT_TRUE(line.has_value());
    EXPECT_EQ(Json::parse(*line)["cmd"], expected);
  }
  // One request dribbled byte by byte.
  for (const char c : std::string("{\"cmd\":\"servers\"}\n")) {
    ASSERT_TRUE(client.send(std::string(1, c)));
    std::this_thread::sleep_for(1ms);
  }
  const auto line = client.line();
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(Json::parse(*line)["cmd"], "servers");
}

TEST_F(ControlServerTest, MalformedRequestsAreAnsweredAndTheConnectionKept) {
  start(settings());
  Client client(path_);
  EXPECT_TRUE(client.request("{not json").value("error", "").starts_with("malformed JSON: "));
  EXPECT_TRUE(client.request("").value("error", "").starts_with("malformed JSON: "));
  EXPECT_TRUE(
      client.request(R"({"cmd":"explode"})").value("error", "").starts_with("unknown command 'explode'"));
  EXPECT_EQ(client.request(R"({"cmd":"status","x":1})").value("error", ""),
            "unknown argument 'x' for command 'status' (it takes none)");
  EXPECT_EQ(client.request(R"({"cmd":"status"})"), (Json{{"cmd", "status"}}));
}

TEST_F(ControlServerTest, BinaryGarbageIsAnswered) {
  start(settings());
  Client client(path_);
  std::string garbage;
  for (int i = 0; i < 4096; ++i)
    garbage += static_cast<char>((i * 7919) % 256 == '\n' ? 0 : (i * 7919) % 256);
  ASSERT_TRUE(client.send(garbage + "\n"));
  const auto line = client.line();
  ASSERT_TRUE(line.has_value());
  // The answer is valid JSON even though the parser quoted invalid UTF-8.
  const Json answer = Json::parse(*line);
  EXPECT_TRUE(answer.value("error", "").starts_with("malformed JSON: ")) << *line;
  EXPECT_EQ(client.request(R"({"cmd":"status"})"), (Json{{"cmd", "status"}}));
}

TEST_F(ControlServerTest, DeepNestingIsRefused) {
  start(settings());
  Client client(path_);
  EXPECT_EQ(client.request(std::string(50000, '[')).value("error", ""),
            "malformed JSON: nested deeper than 64 levels");
  EXPECT_EQ(client.request(R"({"cmd":"status"})"), (Json{{"cmd", "status"}}));
}

TEST_F(ControlServerTest, OverlongLineIsAnsweredThenClosed) {
  auto small = settings();
  small.max_request_bytes = 1024;
  start(small);
  {
    Client client(path_);  // no newline yet: refused once the limit is passed
    ASSERT_TRUE(client.send(std::string(2000, ' ')));
    EXPECT_EQ(client.line(), R"j({"error":"request too long (limit 1024 bytes)"})j");
    EXPECT_TRUE(client.closed_by_server());
  }
  {
    Client client(path_);  // a complete line, too long
    ASSERT_TRUE(client.send("{\"cmd\":\"status\"}\n" + std::string(1100, ' ') + "{\"cmd\":\"status\"}\n"));
    EXPECT_EQ(client.line(), R"({"cmd":"status"})");
    EXPECT_EQ(client.line(), R"j({"error":"request too long (limit 1024 bytes)"})j");
    EXPECT_TRUE(client.closed_by_server());
  }
  {
    Client client(path_);  // exactly at the limit is fine
    std::string line = R"({"cmd":"status"})";
    line += std::string(1024 - line.size(), ' ');
    EXPECT_EQ(client.request(line), (Json{{"cmd", "status"}}));
  }
}

TEST_F(ControlServerTest, LastLineWithoutNewlineIsAnsweredAtEof) {
  start(settings());
  // pools is answered at once, pause on a later loop turn: either way the answer precedes the close.
  for (const std::string command : {"pools", "pause"}) {
    Client client(path_);
    const std::string request = R"({"cmd":")" + command + R"("})";
    ASSERT_TRUE(client.send(request));
    ::shutdown(client.fd(), SHUT_WR);
    EXPECT_EQ(client.line(), request);
    EXPECT_TRUE(client.closed_by_server()) << command;
  }
}

TEST_F(ControlServerTest, PeerGoneBeforeALaterAnswerIsClosed) {
  start(settings());
  {
    Client gone(path_);
    ASSERT_TRUE(gone.send("{\"cmd\":\"pause\"}\n{\"cmd\":\"status\"}\n"));
  }
  EXPECT_TRUE(connections_drop_to(0));
  Client client(path_);
  EXPECT_EQ(client.request(R"({"cmd":"status"})"), (Json{{"cmd", "status"}}));
}

TEST_F(ControlServerTest, HandlerExceptionBecomesAnError) {
  start(settings());
  Client client(path_);
  EXPECT_EQ(client.request(R"({"cmd":"reload"})"), (Json{{"error", "internal error: boom"}}));
  EXPECT_EQ(client.request(R"({"cmd":"status"})"), (Json{{"cmd", "status"}}));
}

TEST_F(ControlServerTest, ManyConnectionsAndTheirDeparture) {
  start(settings());
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 50; ++i) clients.push_back(std::make_unique<Client>(path_));
  for (auto& client : clients) ASSERT_TRUE(client->send("{\"cmd\":\"status\"}\n"));
  for (auto& client : clients) EXPECT_EQ(client->line(), R"({"cmd":"status"})");
  EXPECT_EQ(connections_seen(), 51U);
  clients.clear();
  EXPECT_TRUE(connections_drop_to(0));
}

TEST_F(ControlServerTest, IdlePeersAreClosedSoTheyCannotHoldEverySlot) {
  auto quick = settings();
  quick.idle_timeout_ms = 200;
  start(quick);
  Client idle(path_);
  EXPECT_EQ(idle.request(R"({"cmd":"status"})")["cmd"], "status");
  // line() waits for the server's close (EOF); a still-open connection would time out instead.
  EXPECT_TRUE(idle.closed_by_server());
  Client fresh(path_);
  EXPECT_EQ(fresh.request(R"({"cmd":"status"})")["cmd"], "status");
}

TEST_F(ControlServerTest, TooManyConnections) {
  auto few = settings();
  few.max_connections = 3;
  start(few);
  Client a(path_), b(path_);
  EXPECT_EQ(a.request(R"({"cmd":"status"})")["cmd"], "status");
  EXPECT_EQ(b.request(R"({"cmd":"status"})")["cmd"], "status");
  EXPECT_EQ(connections_seen(), 3U);
  Client c(path_);
  Client d(path_);
  EXPECT_EQ(c.request(R"({"cmd":"status"})")["cmd"], "status");
  EXPECT_EQ(d.line(), R"j({"error":"too many control connections (limit 3)"})j");
  EXPECT_TRUE(d.closed_by_server());
}

TEST_F(ControlServerTest, PeerThatNeverReadsDoesNotStallOthers) {
  payload_size_ = 256 * 1024;
  start(settings());
  Client hog(path_);
  // Ask for ~250 MB of answers without ever reading; stop when the kernel pushes back.
  const int flags = ::fcntl(hog.fd(), F_GETFL);
  ::fcntl(hog.fd(), F_SETFL, flags | O_NONBLOCK);
  std::string requests;
  for (int i = 0; i < 1000; ++i) requests += "{\"cmd\":\"clients\"}\n";
  std::size_t sent = 0;
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (sent < requests.size() && std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = ::send(hog.fd(), requests.data() + sent, requests.size() - sent, MSG_NOSIGNAL);
    if (n > 0)
      sent += static_cast<std::size_t>(n);
    else
      std::this_thread::sleep_for(10ms);
  }
  // Everyone else is still served promptly.
  const auto before = std::chrono::steady_clock::now();
  Client other(path_);
  EXPECT_EQ(other.request(R"({"cmd":"status"})"), (Json{{"cmd", "status"}}));
  EXPECT_LT(std::chrono::steady_clock::now() - before, 5s);  // a loop stuck on the hog answers never
  hog.close();
  EXPECT_TRUE(connections_drop_to(1));
}

TEST_F(ControlServerTest, SocketIsOwnerOnlyByDefault) {
  start(settings());
  struct stat status {};
  ASSERT_EQ(::lstat(path_.c_str(), &status), 0);
  EXPECT_TRUE(S_ISSOCK(status.st_mode));
  EXPECT_EQ(status.st_mode & 07777, 0600U);
  EXPECT_EQ(status.st_uid, ::geteuid());
}

TEST_F(ControlServerTest, GroupSocketIsGroupWritable) {
  auto grouped = settings();
  grouped.group = "nogroup";
  start(grouped);
  struct stat status {};
  ASSERT_EQ(::lstat(path_.c_str(), &status), 0);
  EXPECT_EQ(status.st_mode & 07777, 0660U);
  EXPECT_EQ(status.st_gid, kNoGroup);
}

TEST_F(ControlServerTest, UnknownGroupIsAnError) {
  auto grouped = settings();
  grouped.group = "no-such-group-sluice";
  auto server = ControlServer::open(
      &loop_, grouped,
      [](const ControlRequest&, const ControlServer::Respond& respond) { respond(Json::object()); });
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.error(), "control.group: unknown group 'no-such-group-sluice'");
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(ControlServerTest, StaleSocketIsReplaced) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ::close(fd);  // the file stays, nobody listens: stale
  start(settings());
  Client client(path_);
  EXPECT_EQ(client.request(R"({"cmd":"status"})"), (Json{{"cmd", "status"}}));
}

TEST_F(ControlServerTest, LiveSocketOrOtherFileIsNotReplaced) {
  const auto empty = [](const ControlRequest&, const ControlServer::Respond& respond) {
    respond(Json::object());
  };
  // The first server listens (the loop need not run for that).
  auto first = ControlServer::open(&loop_, settings(), empty);
  ASSERT_TRUE(first.ok()) << first.error();
  server_ = std::move(*first);
  auto second = ControlServer::open(&loop_, settings(), empty);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().find("another process is listening on " + path_), std::string::npos)
      << second.error();
  struct stat status {};
  EXPECT_EQ(::lstat(path_.c_str(), &status), 0);  // the first server's socket is still there

  const std::string file = dir_ + "/not-a-socket";
  std::fclose(std::fopen(file.c_str(), "w"));
  auto third = ControlServer::open(&loop_, settings_at(file), empty);
  ASSERT_FALSE(third.ok());
  EXPECT_NE(third.error().find("exists and is not a socket"), std::string::npos) << third.error();
  EXPECT_TRUE(std::filesystem::is_regular_file(file));
}

// Peer credentials: a forked child drops to nobody and talks to the socket.
// Only async-signal-safe calls in the child (the loop thread exists in the parent).
enum ChildResult { kAnswered = 0, kPermissionError = 10, kConnectDenied = 11, kOtherError = 12 };

int child_exchange(const std::string& path, gid_t gid, const gid_t* supplementary,
                   std::size_t supplementary_count) {
  const pid_t pid = ::fork();
  if (pid != 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  ::alarm(10);
  if (::syscall(SYS_setgroups, supplementary_count, supplementary) != 0 || ::syscall(SYS_setgid, gid) != 0 ||
      ::syscall(SYS_setuid, kNobody) != 0) {
    ::_exit(kOtherError);
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::_exit(errno == EACCES ? kConnectDenied : kOtherError);
  }
  static const char request[] = "{\"cmd\":\"status\"}\n";
  (void)::send(fd, request, sizeof request - 1, MSG_NOSIGNAL);
  static char answer[4096];
  std::size_t got = 0;
  while (got < sizeof answer - 1) {
    const ssize_t n = ::recv(fd, answer + got, sizeof answer - 1 - got, 0);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
    if (std::memchr(answer, '\n', got) != nullptr) break;
  }
  answer[got] = '\0';
  if (std::strcmp(answer, "{\"cmd\":\"status\"}\n") == 0) ::_exit(kAnswered);
  if (std::strncmp(answer, "{\"error\":\"permission denied: uid 65534", 38) == 0) ::_exit(kPermissionError);
  ::_exit(kOtherError);
}

TEST_F(ControlServerTest, OtherUsersAreRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become nobody";
  start(settings());
  // Mode 0600: the kernel refuses the connect itself.
  EXPECT_EQ(child_exchange(path_, kNoGroup, nullptr, 0), kConnectDenied);
  // Opened up by mistake: the daemon's credential check still refuses.
  ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
  EXPECT_EQ(child_exchange(path_, kNoGroup, nullptr, 0), kPermissionError);
  // The refused peer left no connection behind.
  EXPECT_TRUE(connections_drop_to(0));
}

TEST_F(ControlServerTest, GroupMembersAreAdmitted) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become nobody";
  auto grouped = settings();
  grouped.group = "nogroup";
  start(grouped);
  // Primary group.
  EXPECT_EQ(child_exchange(path_, kNoGroup, nullptr, 0), kAnswered);
  // Supplementary group.
  const gid_t supplementary[] = {kNoGroup};
  EXPECT_EQ(child_exchange(path_, kOtherGroup, supplementary, 1), kAnswered);
  // Neither: the kernel refuses at mode 0660; with the mode opened up, the daemon does.
  EXPECT_EQ(child_exchange(path_, kOtherGroup, nullptr, 0), kConnectDenied);
  ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
  EXPECT_EQ(child_exchange(path_, kOtherGroup, nullptr, 0), kPermissionError);
}

// sluicectl against the real server: exit codes and output.
struct CtlRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string slurp(int fd) {
  std::string text;
  char chunk[4096];
  ::lseek(fd, 0, SEEK_SET);
  for (ssize_t n; (n = ::read(fd, chunk, sizeof chunk)) > 0;) text.append(chunk, static_cast<std::size_t>(n));
  ::close(fd);
  return text;
}

// Runs sluicectl with `args`, optionally as nobody; only async-signal-safe calls in the child.
CtlRun run_sluicectl(const std::string& dir, const std::vector<std::string>& args, bool as_nobody = false,
                     const std::string& control_env = "") {
  std::vector<std::string> arguments{SLUICECTL_PATH};
  arguments.insert(arguments.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);
  std::string path_env = "PATH=/usr/bin:/bin";
  std::string control = "SLUICE_CONTROL=" + control_env;
  std::vector<char*> envp{path_env.data()};
  if (!control_env.empty()) envp.push_back(control.data());
  envp.push_back(nullptr);
  const int out = ::open((dir + "/out").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int err = ::open((dir + "/err").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    if (as_nobody && (::syscall(SYS_setgroups, 0, nullptr) != 0 || ::syscall(SYS_setgid, kNoGroup) != 0 ||
                      ::syscall(SYS_setuid, kNobody) != 0)) {
      ::_exit(125);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(126);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CtlRun run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = slurp(out);
  run.err = slurp(err);
  return run;
}

Json status_answer(const std::string& state, int forced) {
  return Json{{"state", state},
              {"version", "0.1.0"},
              {"pid", 42},
              {"drain",
               {{"started", state != "running"},
                {"elapsed_s", 0.5},
                {"deadline_in_s", 1.5},
                {"scopes_remaining", state == "drained" ? 0 : 2},
                {"clients_remaining", 1},
                {"forced", forced}}}};
}

class SluicectlTest : public ControlServerTest {
 protected:
  // A daemon whose drain takes three status polls and then reports `forced`.
  void start_daemon(int forced = 0) {
    respond_ = [this, forced](const ControlRequest& request) -> Json {
      switch (request.command) {
        case ControlCommand::status:
          if (state_ == "draining" && ++polls_ >= 3) state_ = "drained";
          return status_answer(state_, state_ == "drained" ? forced : 0);
        case ControlCommand::pools:
          return Json{
              {"pools", Json::array({Json{{"database", "app"}, {"user", "alice"}, {"pool_size", 20}}})}};
        case ControlCommand::drain:
          state_ = "draining";
          last_timeout_ = request.timeout_s;
          return Json{{"ok", true}, {"state", state_}};
        case ControlCommand::reload:
          return Json{{"error", "reload failed: config.json line 3: unknown key 'x'"}};
        default:
          return Json{{"ok", true}, {"state", state_}};
      }
    };
    start(settings());
  }

  std::string state_ = "running";  // loop thread only, once started
  int polls_ = 0;
  std::optional<double> last_timeout_;
};

TEST_F(SluicectlTest, StatusTableAndJson) {
  start_daemon();
  const CtlRun table = run_sluicectl(dir_, {"-s", path_, "status"});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("state     running\n"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("clients   -\n"), std::string::npos) << table.out;  // missing section
  const CtlRun json = run_sluicectl(dir_, {"pools", "--json"}, false, path_);  // socket from $SLUICE_CONTROL
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(json.out, R"({"pools":[{"database":"app","pool_size":20,"user":"alice"}]})"
                      "\n");
  const CtlRun pools = run_sluicectl(dir_, {"-s", path_, "pools"});
  EXPECT_EQ(pools.exit_code, 0) << pools.err;
  EXPECT_TRUE(pools.out.starts_with("DATABASE  USER   MODE  SIZE")) << pools.out;
  EXPECT_NE(pools.out.find("\napp       alice  -       20"), std::string::npos) << pools.out;
}

TEST_F(SluicectlTest, ErrorsAndExitCodes) {
  start_daemon();
  const CtlRun refused = run_sluicectl(dir_, {"-s", path_, "reload"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_EQ(refused.err, "sluicectl: daemon: reload failed: config.json line 3: unknown key 'x'\n");
  const CtlRun missing = run_sluicectl(dir_, {"-s", dir_ + "/nothing.sock", "status"});
  EXPECT_EQ(missing.exit_code, 3);
  EXPECT_EQ(missing.err, "sluicectl: cannot connect to " + dir_ + "/nothing.sock: daemon not running?\n");
  EXPECT_EQ(run_sluicectl(dir_, {"-s", path_}).exit_code, 2);
  EXPECT_EQ(run_sluicectl(dir_, {"-s", path_, "frobnicate"}).exit_code, 2);
  EXPECT_EQ(run_sluicectl(dir_, {"-s", path_, "drain", "--timeout", "-3"}).exit_code, 2);
  const CtlRun version = run_sluicectl(dir_, {"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_TRUE(version.out.starts_with("sluicectl ")) << version.out;
}

TEST_F(SluicectlTest, PermissionDenied) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become nobody";
  start_daemon();
  const CtlRun kernel = run_sluicectl(dir_, {"-s", path_, "status"}, /*as_nobody=*/true);
  if (kernel.exit_code == 126) GTEST_SKIP() << "nobody cannot execute " << SLUICECTL_PATH;
  EXPECT_EQ(kernel.exit_code, 4) << kernel.err;
  ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
  const CtlRun daemon = run_sluicectl(dir_, {"-s", path_, "status"}, /*as_nobody=*/true);
  EXPECT_EQ(daemon.exit_code, 4) << daemon.err;
  EXPECT_TRUE(daemon.err.starts_with("sluicectl: daemon: permission denied: uid 65534")) << daemon.err;
}

TEST_F(SluicectlTest, DrainWaitClean) {
  start_daemon(/*forced=*/0);
  const CtlRun run = run_sluicectl(dir_, {"-s", path_, "drain", "--timeout", "2.5", "--wait"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(run.out.starts_with("drain: ok (state: draining)\ndraining: started 500.0 ms ago")) << run.out;
  EXPECT_NE(run.out.find("drained after 500.0 ms; no scopes were forced\n"), std::string::npos) << run.out;
  stop();  // the loop thread owned last_timeout_
  EXPECT_EQ(last_timeout_, 2.5);
}

TEST_F(SluicectlTest, DrainWaitForced) {
  start_daemon(/*forced=*/3);
  const CtlRun run = run_sluicectl(dir_, {"-s", path_, "--json", "drain", "--wait"});
  EXPECT_EQ(run.exit_code, 5) << run.err;
  // JSON on stdout (the acknowledgement, then the final status); progress on stderr.
  EXPECT_TRUE(run.out.starts_with("{\"ok\":true,\"state\":\"draining\"}\n{\"drain\":")) << run.out;
  EXPECT_NE(run.err.find("3 scope(s) were cancelled and rolled back at the deadline"), std::string::npos)
      << run.err;
  stop();
  EXPECT_FALSE(last_timeout_.has_value());
}

}  // namespace
}  // namespace sluice::daemon
