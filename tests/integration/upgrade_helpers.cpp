#include "tests/integration/upgrade_helpers.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>

#ifndef SLUICECTL_PATH
#error "SLUICECTL_PATH must name the sluicectl binary (CMakeLists.txt defines it)"
#endif

namespace upgradetest {

void become_subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }

std::optional<int> NewProcess::stop(std::chrono::milliseconds timeout) {
  stopped_ = true;
  ::kill(pid_, SIGTERM);
  std::optional<int> status;
  bool ours = true;
  harness::wait_until(
      [&] {
        int raw = 0;
        const pid_t reaped = ::waitpid(pid_, &raw, WNOHANG);
        if (reaped == pid_) status = raw;
        ours = reaped >= 0 || errno != ECHILD;
        return status.has_value() || !ours;
      },
      timeout);
  // Its parent, the old sluiced, still runs (and reaps it): stopped too early, not a hung process.
  EXPECT_TRUE(ours) << "the new sluiced (pid " << pid_
                    << ") is not this process's child: stop it only once the old one has exited";
  return status;
}

NewProcess::~NewProcess() {
  if (stopped_) {
    ::kill(pid_, SIGKILL);  // gone already unless stop() timed out
    ::waitpid(pid_, nullptr, WNOHANG);
    return;
  }
  const auto status = stop(std::chrono::seconds(15));
  EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "the new sluiced (pid " << pid_ << ") did not exit 0 on SIGTERM";
  if (!status) {
    ::kill(pid_, SIGKILL);
    harness::wait_until([this] {
      const pid_t reaped = ::waitpid(pid_, nullptr, WNOHANG);
      return reaped == pid_ || (reaped < 0 && errno == ECHILD);
    });
  }
}

namespace {

std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char byte : bytes) {
    out += kDigits[byte >> 4];
    out += kDigits[byte & 0xf];
  }
  return out;
}

}  // namespace

FakePredecessor::FakePredecessor(harness::SluicedConfig config) {
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
    throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
  channel_ = ends[0];
  try {
    successor_ = std::make_unique<harness::Sluiced>(std::move(config), harness::Sluiced::Wait::none, ends[1]);
  } catch (...) {
    ::close(ends[1]);
    throw;
  }
  ::close(ends[1]);
  const auto expect = [&](const std::string& type) {
    const auto message = receive(std::chrono::seconds(30));
    if (!message || message->value("type", "") != type) {
      throw std::runtime_error("the new sluiced sent " + (message ? message->dump() : "nothing") + ", not " +
                               type + "; log:\n" + successor_->log());
    }
  };
  expect("hello");
  send({{"type", "listeners"}, {"names", nlohmann::json::array()}, {"pid", ::getpid()}});
  expect("ready");
  send({{"type", "go"}});
}

FakePredecessor::~FakePredecessor() { ::close(channel_); }

void FakePredecessor::send(const nlohmann::json& message, const std::vector<int>& descriptors) {
  const std::string text = message.dump();
  std::string frame;
  for (const int shift : {24, 16, 8, 0}) frame.push_back(static_cast<char>((text.size() >> shift) & 0xff));
  frame += text;
  iovec data{frame.data(), frame.size()};
  msghdr header{};
  header.msg_iov = &data;
  header.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * descriptors.size()));
  if (!descriptors.empty()) {
    header.msg_control = control.data();
    header.msg_controllen = control.size();
    cmsghdr* rights = CMSG_FIRSTHDR(&header);
    rights->cmsg_level = SOL_SOCKET;
    rights->cmsg_type = SCM_RIGHTS;
    rights->cmsg_len = CMSG_LEN(sizeof(int) * descriptors.size());
    std::memcpy(CMSG_DATA(rights), descriptors.data(), sizeof(int) * descriptors.size());
  }
  // A test's messages are small: one sendmsg takes them whole.
  ASSERT_EQ(::sendmsg(channel_, &header, MSG_NOSIGNAL), static_cast<ssize_t>(frame.size()))
      << std::strerror(errno);
}

std::optional<nlohmann::json> FakePredecessor::receive(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (buffer_.size() >= 4) {
      std::size_t size = 0;
      for (int i = 0; i < 4; ++i) size = (size << 8) | static_cast<unsigned char>(buffer_[i]);
      if (buffer_.size() >= 4 + size) {
        auto message = nlohmann::json::parse(buffer_.substr(4, size));
        buffer_.erase(0, 4 + size);
        return message;
      }
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd readable{.fd = channel_, .events = POLLIN, .revents = 0};
    if (left.count() <= 0 || ::poll(&readable, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
    char chunk[4096];
    const ssize_t n = ::recv(channel_, chunk, sizeof chunk, 0);
    if (n <= 0) return std::nullopt;
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

nlohmann::json moved_client_state(const std::string& user, const std::string& database,
                                  const std::string& transport) {
  return {{"old_id", 1},
          {"transport", transport},
          {"user", hex(user)},
          {"database", hex(database)},
          {"startup_settings", nlohmann::json::array()},
          {"settings", nlohmann::json::array()},
          {"custom_setting_names", nlohmann::json::array()},
          {"statements", nlohmann::json::array()},
          {"cancel_process_id", 4242},
          {"cancel_secret", 7},
          {"auth_method", "trust"},
          {"pin_reason", ""}};
}

ctltest::ProcessResult sluicectl_upgrade(const std::string& control_socket,
                                         const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SLUICECTL_PATH, "-s", control_socket, "upgrade"};
  argv.insert(argv.end(), args.begin(), args.end());
  ctltest::ProcessOptions options;
  options.unset_env.emplace_back("SLUICE_CONTROL");
  options.timeout = std::chrono::seconds(60);
  return ctltest::run_process(argv, options);
}

int open_fds(const std::string& control_socket) {
  return ctltest::status(control_socket).at("fds").get<int>();
}

pid_t expect_handed_over(const harness::Sluiced& old, const ctltest::ProcessResult& upgrade) {
  using nlohmann::json;
  const json status = ctltest::status(old.control_socket());
  const auto new_pid = status.at("pid").get<pid_t>();
  EXPECT_NE(new_pid, old.pid()) << status.dump();
  // Null already when the old process had nothing left to wait for and has exited.
  if (const json& block = status.at("upgrade"); !block.is_null()) {
    EXPECT_EQ(block.value("role", ""), "successor") << status.dump();
    EXPECT_EQ(block.value("old_pid", 0), old.pid()) << status.dump();
  }
  EXPECT_NE(upgrade.out.find("pid " + std::to_string(new_pid) + ") accepts every new connection"),
            std::string::npos)
      << upgrade.out;
  return new_pid;
}

namespace {

std::string pgbench_path() {
  if (const char* bindir = std::getenv("SLUICE_PG_BINDIR"); bindir != nullptr && *bindir != '\0') {
    return std::string(bindir) + "/pgbench";
  }
  return "/usr/lib/postgresql/15/bin/pgbench";
}

}  // namespace

void make_bench_database() {
  ASSERT_EQ(access(pgbench_path().c_str(), X_OK), 0) << "no " << pgbench_path();
  const harness::PgConn admin = harness::connect(harness::postgres().conninfo());
  harness::exec_ok(admin, std::string("DROP DATABASE IF EXISTS ") + kBenchDatabase + " WITH (FORCE)");
  harness::exec_ok(admin, std::string("CREATE DATABASE ") + kBenchDatabase);
  const auto init = harness::run_capture(
      {pgbench_path(), "-h", harness::postgres().socket_dir(), "-p",
       std::to_string(harness::postgres().port()), "-i", "-s", "1", "-q", kBenchDatabase},
      std::chrono::seconds(60));
  ASSERT_TRUE(init.succeeded()) << init.err;
}

harness::Captured pgbench(const harness::Sluiced& daemon, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {pgbench_path(), "-h", daemon.socket_dir(), "-p",
                                   std::to_string(daemon.port())};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.emplace_back(kBenchDatabase);
  return harness::run_capture(argv, std::chrono::seconds(60));
}

void expect_no_failure(const harness::Captured& run, const std::string& what) {
  EXPECT_TRUE(run.succeeded() && run.out.find("number of failed transactions: 0 ") != std::string::npos &&
              run.err.find("error") == std::string::npos)
      << what << ": " << run.describe() << "\nstdout:\n"
      << run.out << "stderr:\n"
      << run.err;
}

std::string write_script(const std::string& dir, const std::string& name, const std::string& body) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  ::chmod(path.c_str(), 0755);
  return path;
}

}  // namespace upgradetest
