#include "daemon/systemd_notify.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>

namespace sluice::daemon {
namespace {

using std::chrono::microseconds;

constexpr std::array<const char*, 3> kVariables = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"};

std::uint64_t monotonic_usec() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1000000U + static_cast<std::uint64_t>(now.tv_nsec) / 1000U;
}

// Plays systemd: a datagram socket bound to a path in a temp dir, or to an abstract name.
class Receiver {
 public:
  enum class Kind { path, abstract };

  explicit Receiver(Kind kind) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    socklen_t size = 0;
    if (kind == Kind::path) {
      char pattern[] = "/tmp/sluice-notify-XXXXXX";
      dir_ = ::mkdtemp(pattern) != nullptr ? pattern : "";
      path_ = dir_ + "/notify";
      name_ = path_;
      std::memcpy(address.sun_path, path_.c_str(), path_.size() + 1);
      size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size() + 1);
    } else {
      static int counter = 0;
      const std::string abstract =
          "sluice-notify-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
      name_ = "@" + abstract;
      std::memcpy(address.sun_path + 1, abstract.data(), abstract.size());
      size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + abstract.size());
    }
    bound_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&address), size) == 0;
  }
  ~Receiver() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;
  Receiver(Receiver&&) = delete;
  Receiver& operator=(Receiver&&) = delete;

  [[nodiscard]] bool bound() const { return bound_; }
  // What NOTIFY_SOCKET should say.
  [[nodiscard]] const std::string& name() const { return name_; }

  // The next queued datagram. An AF_UNIX datagram is queued by the time sendto()
  // returns, so there is nothing to wait for.
  [[nodiscard]] std::optional<std::string> next() const {
    std::array<char, 8192> buffer{};
    const ssize_t size = ::recv(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (size < 0) return std::nullopt;
    return std::string(buffer.data(), static_cast<std::size_t>(size));
  }

 private:
  int fd_ = -1;
  bool bound_ = false;
  std::string dir_;
  std::string path_;
  std::string name_;
};

// Each test starts from an environment without systemd's variables and gets the runner's back.
class SystemdNotify : public ::testing::Test {
 protected:
  void SetUp() override {
    for (std::size_t i = 0; i < kVariables.size(); ++i) {
      const char* value = std::getenv(kVariables[i]);
      saved_[i] = value != nullptr ? std::optional<std::string>(value) : std::nullopt;
      ::unsetenv(kVariables[i]);
    }
  }
  void TearDown() override {
    for (std::size_t i = 0; i < kVariables.size(); ++i) {
      if (saved_[i]) {
        ::setenv(kVariables[i], saved_[i]->c_str(), 1);
      } else {
        ::unsetenv(kVariables[i]);
      }
    }
  }

  static void set(const char* name, const std::string& value) { ::setenv(name, value.c_str(), 1); }

 private:
  std::array<std::optional<std::string>, kVariables.size()> saved_;
};

TEST_F(SystemdNotify, DisabledOutsideSystemd) {
  SystemdNotifier notifier;
  EXPECT_FALSE(notifier.enabled());
  EXPECT_FALSE(notifier.watchdog_interval().has_value());
  // Every call is a harmless no-op.
  notifier.ready();
  notifier.reloading();
  notifier.status("idle");
  notifier.watchdog();
  notifier.stopping();
}

TEST_F(SystemdNotify, EmptyNotifySocketIsDisabled) {
  set("NOTIFY_SOCKET", "");
  EXPECT_FALSE(SystemdNotifier().enabled());
}

TEST_F(SystemdNotify, SendsTheDocumentedDatagramsToAPathSocket) {
  Receiver systemd(Receiver::Kind::path);
  ASSERT_TRUE(systemd.bound());
  set("NOTIFY_SOCKET", systemd.name());
  SystemdNotifier notifier;
  ASSERT_TRUE(notifier.enabled());

  notifier.ready();
  notifier.status("running: 3 clients, 2 servers");
  notifier.watchdog();
  notifier.stopping();
  EXPECT_EQ(systemd.next(), "READY=1");
  EXPECT_EQ(systemd.next(), "STATUS=running: 3 clients, 2 servers");
  EXPECT_EQ(systemd.next(), "WATCHDOG=1");
  EXPECT_EQ(systemd.next(), "STOPPING=1");
  EXPECT_EQ(systemd.next(), std::nullopt);
}

TEST_F(SystemdNotify, SendsToAnAbstractSocket) {
  Receiver systemd(Receiver::Kind::abstract);
  ASSERT_TRUE(systemd.bound());
  set("NOTIFY_SOCKET", systemd.name());
  SystemdNotifier notifier;
  ASSERT_TRUE(notifier.enabled());

  notifier.ready();
  EXPECT_EQ(systemd.next(), "READY=1");
  EXPECT_EQ(systemd.next(), std::nullopt);
}

TEST_F(SystemdNotify, ReloadingCarriesTheMonotonicClock) {
  Receiver systemd(Receiver::Kind::path);
  ASSERT_TRUE(systemd.bound());
  set("NOTIFY_SOCKET", systemd.name());
  SystemdNotifier notifier;

  const std::uint64_t before = monotonic_usec();
  notifier.reloading();
  const std::uint64_t after = monotonic_usec();
  notifier.ready();

  const auto message = systemd.next();
  ASSERT_TRUE(message.has_value());
  const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
  ASSERT_TRUE(message->starts_with(prefix)) << *message;
  const std::string number = message->substr(prefix.size());
  ASSERT_FALSE(number.empty());
  EXPECT_EQ(number.find_first_not_of("0123456789"), std::string::npos) << number;
  const std::uint64_t stamp = std::stoull(number);
  EXPECT_GE(stamp, before);
  EXPECT_LE(stamp, after);
  EXPECT_EQ(systemd.next(), "READY=1");
}

TEST_F(SystemdNotify, StatusIsOneLine) {
  Receiver systemd(Receiver::Kind::path);
  ASSERT_TRUE(systemd.bound());
  set("NOTIFY_SOCKET", systemd.name());
  SystemdNotifier notifier;

  // A newline would smuggle in another assignment, READY=1 here.
  notifier.status("draining\nREADY=1\r\tend");
  EXPECT_EQ(systemd.next(), "STATUS=draining READY=1  end");
}

TEST_F(SystemdNotify, LongStatusIsCutToOneDatagramOnACharacterBoundary) {
  Receiver systemd(Receiver::Kind::path);
  ASSERT_TRUE(systemd.bound());
  set("NOTIFY_SOCKET", systemd.name());
  SystemdNotifier notifier;

  notifier.status(std::string(10000, 'x'));
  const auto ascii = systemd.next();
  ASSERT_TRUE(ascii.has_value());
  EXPECT_EQ(ascii->size(), 4096U);
  EXPECT_EQ(*ascii, "STATUS=" + std::string(4096 - 7, 'x'));

  std::string accents;
  for (int i = 0; i < 3000; ++i) accents += "\xC3\xA9";  // é, two bytes
  notifier.status(accents);
  const auto cut = systemd.next();
  ASSERT_TRUE(cut.has_value());
  // 7 + 2 * 2044 = 4095: the 2045th é would not fit whole.
  EXPECT_EQ(*cut, "STATUS=" + accents.substr(0, std::size_t{2} * 2044));
}

TEST_F(SystemdNotify, WatchdogIntervalIsHalfTheTimeout) {
  Receiver systemd(Receiver::Kind::path);
  ASSERT_TRUE(systemd.bound());
  set("NOTIFY_SOCKET", systemd.name());
  set("WATCHDOG_USEC", "30000000");
  EXPECT_EQ(SystemdNotifier().watchdog_interval(), microseconds(15000000));

  set("WATCHDOG_PID", std::to_string(::getpid()));
  EXPECT_EQ(SystemdNotifier().watchdog_interval(), microseconds(15000000));
}

TEST_F(SystemdNotify, NoWatchdogWhenItIsAnotherProcesssOrMalformed) {
  Receiver systemd(Receiver::Kind::path);
  ASSERT_TRUE(systemd.bound());
  set("NOTIFY_SOCKET", systemd.name());
  EXPECT_EQ(SystemdNotifier().watchdog_interval(), std::nullopt);  // WATCHDOG_USEC unset

  set("WATCHDOG_USEC", "30000000");
  set("WATCHDOG_PID", std::to_string(::getpid() + 1));
  EXPECT_EQ(SystemdNotifier().watchdog_interval(), std::nullopt);
  set("WATCHDOG_PID", "self");
  EXPECT_EQ(SystemdNotifier().watchdog_interval(), std::nullopt);
  ::unsetenv("WATCHDOG_PID");

  for (const char* bad : {"0", "-5", "abc", "30s", "", "99999999999999999999999"}) {
    set("WATCHDOG_USEC", bad);
    EXPECT_EQ(SystemdNotifier().watchdog_interval(), std::nullopt) << "WATCHDOG_USEC=" << bad;
  }
}

TEST_F(SystemdNotify, NoWatchdogWithoutNotifySocket) {
  set("WATCHDOG_USEC", "30000000");
  EXPECT_EQ(SystemdNotifier().watchdog_interval(), std::nullopt);
}

TEST_F(SystemdNotify, UnsupportedOrOversizedAddressesAreDisabled) {
  for (const std::string& bad : {std::string("relative/notify"), std::string("vsock:2:1234"),
                                 "/" + std::string(sizeof(sockaddr_un::sun_path), 'a'),
                                 "@" + std::string(sizeof(sockaddr_un::sun_path), 'a')}) {
    set("NOTIFY_SOCKET", bad);
    SystemdNotifier notifier;
    EXPECT_FALSE(notifier.enabled()) << bad;
    notifier.ready();
  }
}

TEST_F(SystemdNotify, AbsentSystemdIsNotAnError) {
  std::string gone;
  {
    Receiver systemd(Receiver::Kind::path);
    gone = systemd.name();
  }
  set("NOTIFY_SOCKET", gone);
  SystemdNotifier notifier;
  EXPECT_TRUE(notifier.enabled());
  notifier.ready();
  notifier.watchdog();
  notifier.stopping();
}

TEST_F(SystemdNotify, NeverBlocksWhenSystemdDoesNotRead) {
  Receiver systemd(Receiver::Kind::path);
  ASSERT_TRUE(systemd.bound());
  set("NOTIFY_SOCKET", systemd.name());
  SystemdNotifier notifier;

  // Far more than an AF_UNIX datagram queue holds: a blocking send would hang here.
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 5000; ++i) notifier.watchdog();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));

  // Once systemd catches up, notifications go through again.
  while (systemd.next()) {
  }
  notifier.ready();
  EXPECT_EQ(systemd.next(), "READY=1");
}

}  // namespace
}  // namespace sluice::daemon
