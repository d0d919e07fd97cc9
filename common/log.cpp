#include "common/log.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

namespace sluice::log {
namespace {

const char* level_name(Level level) {
  switch (level) {
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warning:
      return "warning";
    case Level::error:
      return "error";
  }
  return "info";
}

std::string format_line(Level level, std::string_view message) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[48];
  const std::size_t length = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(stamp + length, sizeof stamp - length, ".%03dZ ", static_cast<int>(millis));
  std::string line = stamp;
  line += level_name(level);
  line += ": ";
  // One record, one line: libpq's messages carry their own newlines and tabs.
  for (const char c : message) {
    const bool space = c == '\n' || c == '\r' || c == '\t';
    if (space && (line.back() == ' ')) continue;
    line.push_back(space ? ' ' : c);
  }
  while (line.back() == ' ') line.pop_back();
  line.push_back('\n');
  return line;
}

// A record is written at once when that cannot block: stderr is a regular
// file, or a pipe, socket or terminal written without blocking (a pipe or
// terminal through a descriptor of its own, opened O_NONBLOCK, so the flags of
// the one shared with our parent stay as they are). What the reader of stderr
// does not take at once — a pipe nobody drains, a stuck journal — waits in a
// bounded queue for a writer thread, so no event loop ever waits for stderr;
// when the queue is full, records are dropped and counted, and the count is
// written once writing works again.
class Sink {
 public:
  // A burst of a few thousand records; more than that while stderr is stuck is dropped.
  static constexpr std::size_t kMaxQueued = std::size_t{256} << 10;

  Sink() {
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0) return;
    if (S_ISSOCK(st.st_mode)) {
      socket_ = true;
    } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
      const int fd = ::open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
      direct_ = fd >= 0;  // else every record goes through the writer thread
      if (direct_) fd_ = fd;
    }
  }

  void push(std::string line) {
    {
      const std::lock_guard lock(mutex_);
      if (queue_.empty() && !writing_ && direct_) {
        const ssize_t n = write_some(line.data(), line.size());
        if (n == static_cast<ssize_t>(line.size())) return;
        if (n > 0) line.erase(0, static_cast<std::size_t>(n));
      }
      if (!started_) {
        started_ = true;
        try {
          std::thread([this] { run(); }).detach();  // the Sink is never freed: it may outlive main
        } catch (const std::system_error&) {
          // No writer: whatever cannot be written at once is counted as dropped.
        }
      }
      if (queue_.size() + line.size() > kMaxQueued) {
        ++dropped_;
        return;
      }
      queue_ += line;
    }
    wake_.notify_one();
  }

  bool flush(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return idle_.wait_for(lock, timeout, [this] { return queue_.empty() && !writing_; });
  }

 private:
  ssize_t write_some(const char* bytes, std::size_t size) const {
    for (;;) {
      const ssize_t n =
          socket_ ? ::send(fd_, bytes, size, MSG_DONTWAIT | MSG_NOSIGNAL) : ::write(fd_, bytes, size);
      if (n >= 0 || errno != EINTR) return n;
    }
  }

  void run() {
    std::string batch;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        writing_ = false;
        idle_.notify_all();
        wake_.wait(lock, [this] { return !queue_.empty() || dropped_ > 0; });
        batch.swap(queue_);
        if (dropped_ > 0) {
          batch += format_line(Level::warning,
                               std::to_string(dropped_) + " log records dropped: stderr was not writable");
          dropped_ = 0;
        }
        writing_ = true;
      }
      write_all(batch);
      batch.clear();
    }
  }

  // Waiting for the reader is this thread's job; a closed or broken stderr loses the records.
  void write_all(const std::string& bytes) const {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = write_some(bytes.data() + done, bytes.size() - done);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EAGAIN) {
        pollfd writable{.fd = fd_, .events = POLLOUT, .revents = 0};
        ::poll(&writable, 1, 1000);
      } else {
        return;
      }
    }
  }

  int fd_ = STDERR_FILENO;
  bool socket_ = false;  // send() with MSG_DONTWAIT
  bool direct_ = true;   // records may be written by the caller when nothing waits
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::string queue_;
  std::size_t dropped_ = 0;
  bool started_ = false;
  bool writing_ = false;
};

Sink& sink() {
  static Sink* const instance = new Sink;  // NOLINT(cppcoreguidelines-owning-memory): lives until exit
  return *instance;
}

}  // namespace

void set_level(Level level) { detail::g_level.store(level, std::memory_order_relaxed); }

void write(Level level, std::string_view message) { sink().push(format_line(level, message)); }

bool flush(std::chrono::milliseconds timeout) { return sink().flush(timeout); }

Level level_from_name(std::string_view name) {
  if (name == "debug") return Level::debug;
  if (name == "warning") return Level::warning;
  if (name == "error") return Level::error;
  return Level::info;
}

}  // namespace sluice::log
