#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#ifndef SLUICED_PATH
#error "SLUICED_PATH must name the sluiced binary (CMakeLists.txt defines it)"
#endif

namespace harness {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kPostgresReadyTimeout{60'000};
constexpr milliseconds kPostgresStopTimeout{60'000};
constexpr milliseconds kSluicedReadyTimeout{20'000};
constexpr milliseconds kKillTimeout{10'000};
constexpr milliseconds kMaxPollInterval{50};
constexpr int kDefaultDrainTimeoutS = 2;
constexpr int kSluicedDrainTimeoutFallbackS = 30;  // the daemon's own default
constexpr std::size_t kLogTailLines = 40;

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }
[[noreturn]] void fail_errno(const std::string& what) { fail(what + ": " + std::strerror(errno)); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string tail(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  for (std::size_t seen = 0; pos > 0 && seen <= lines;) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
    ++seen;
  }
  return text.substr(pos + 1);
}

// A libpq conninfo value, quoted so paths with spaces or quotes survive.
std::string quote_conninfo(const std::string& value) {
  std::string quoted = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "'";
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

std::string invoking_user() {
  const passwd* pw = getpwuid(geteuid());
  if (pw == nullptr) fail("no passwd entry for uid " + std::to_string(geteuid()));
  return pw->pw_name;
}

// PostgreSQL refuses to run as root; as root we run it as `postgres`, as anyone else as ourselves.
struct Credentials {
  uid_t uid;
  gid_t gid;
};

std::optional<Credentials> postgres_credentials() {
  if (geteuid() != 0) return std::nullopt;
  const passwd* pw = getpwnam("postgres");
  if (pw == nullptr) fail("running as root, but there is no 'postgres' user to run PostgreSQL as");
  return Credentials{pw->pw_uid, pw->pw_gid};
}

std::string postgres_bindir() {
  if (const char* env = std::getenv("SLUICE_PG_BINDIR"); env != nullptr && *env != '\0') return env;
  std::string debian = "/usr/lib/postgresql/15/bin";
  if (access((debian + "/postgres").c_str(), X_OK) == 0) return debian;
  std::string bindir;
  if (FILE* pipe = popen("pg_config --bindir 2>/dev/null", "r"); pipe != nullptr) {
    std::array<char, 4096> line{};
    if (fgets(line.data(), static_cast<int>(line.size()), pipe) != nullptr) bindir = line.data();
    pclose(pipe);
  }
  while (!bindir.empty() && (bindir.back() == '\n' || bindir.back() == '\r')) bindir.pop_back();
  if (bindir.empty() || access((bindir + "/postgres").c_str(), X_OK) != 0) {
    fail("PostgreSQL server binaries not found (looked in " + debian +
         " and pg_config --bindir; set SLUICE_PG_BINDIR)");
  }
  return bindir;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&&) = delete;
  Fd& operator=(Fd&&) = delete;
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0] without a '/' is looked up in PATH
  std::string log_path;           // stdout and stderr are appended here
  std::optional<Credentials> run_as;
  int parent_death_signal = SIGKILL;  // sent to the child if the spawning thread dies first
  int descriptor_3 = -1;              // when set, the child's descriptor 3 (sluiced --upgrade-fd 3)
};

// What run_capture() adds to a SpawnSpec.
struct SpawnExtras {
  std::string err_path;          // when set, stderr goes here instead of the log
  std::vector<std::string> env;  // "NAME=value", added to (or replacing in) the environment
};

// `program` as a path: itself when it has a '/', else the first executable of that name in PATH.
std::string resolve_program(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* env_path = std::getenv("PATH");
  std::istringstream dirs(env_path != nullptr ? env_path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  fail(program + ": not found in PATH");
}

// The environment with `extra` ("NAME=value") added, replacing variables of the same name.
std::vector<std::string> environment_with(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** var = environ; *var != nullptr; ++var) {
    const std::string_view entry(*var);
    const auto replaced = std::any_of(extra.begin(), extra.end(), [&](const std::string& added) {
      const std::size_t eq = added.find('=');
      return entry.substr(0, entry.find('=')) == std::string_view(added).substr(0, eq);
    });
    if (!replaced) env.emplace_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

pid_t spawn(const SpawnSpec& spec, const SpawnExtras& extras = {}) {
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<char*> argv;
  argv.reserve(spec.argv.size() + 1);
  for (const std::string& arg : spec.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const std::string program = resolve_program(spec.argv[0]);
  const std::vector<std::string> env_strings = environment_with(extras.env);
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (const std::string& var : env_strings) envp.push_back(const_cast<char*>(var.c_str()));
  envp.push_back(nullptr);
  const Fd log(open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (log.get() < 0) fail_errno("open " + spec.log_path);
  const std::string& err_path = extras.err_path.empty() ? spec.log_path : extras.err_path;
  const Fd err(open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (err.get() < 0) fail_errno("open " + err_path);
  const Fd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null.get() < 0) fail_errno("open /dev/null");
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) fail_errno("fork");
  if (pid > 0) return pid;

  if (spec.run_as) {
    const gid_t gid = spec.run_as->gid;
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(spec.run_as->uid) != 0) _exit(126);
  }
  // After setuid, which clears it; the getppid check closes the race with a parent that just died.
  if (prctl(PR_SET_PDEATHSIG, spec.parent_death_signal) != 0 || getppid() != parent) _exit(126);
  if (dup2(null.get(), STDIN_FILENO) < 0 || dup2(log.get(), STDOUT_FILENO) < 0 ||
      dup2(err.get(), STDERR_FILENO) < 0) {
    _exit(126);
  }
  if (spec.descriptor_3 >= 0) {
    // dup2 onto itself keeps close-on-exec: cleared by hand then.
    if (spec.descriptor_3 == 3 ? fcntl(3, F_SETFD, 0) != 0 : dup2(spec.descriptor_3, 3) != 3) _exit(126);
  }
  close_range(spec.descriptor_3 >= 0 ? 4 : 3, ~0U, 0);  // no test-side descriptors leak into the child
  execve(program.c_str(), argv.data(), envp.data());
  constexpr std::string_view kExecFailed = "harness: exec failed\n";
  [[maybe_unused]] const ssize_t written = write(STDERR_FILENO, kExecFailed.data(), kExecFailed.size());
  _exit(127);
}

// Reaps `pid` once it exits, waiting at most `timeout`: the wait status, or nullopt if it still runs.
// A pidfd makes the wait a condition; without one (old kernel, seccomp) it falls back to polling.
std::optional<int> reap(pid_t pid, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  for (;;) {
    int status = 0;
    const pid_t reaped = waitpid(pid, &status, WNOHANG);
    if (reaped == pid) return status;
    if (reaped < 0 && errno != EINTR) fail_errno("waitpid " + std::to_string(pid));
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left <= milliseconds::zero()) return std::nullopt;
    if (pidfd.get() >= 0) {
      pollfd wake{.fd = pidfd.get(), .events = POLLIN, .revents = 0};
      poll(&wake, 1, static_cast<int>(left.count()));
    } else {
      std::this_thread::sleep_for(std::min(left, milliseconds(5)));
    }
  }
}

// Signals and reaps `pid`, escalating to SIGKILL if it outlives `timeout`. Returns the wait status.
int terminate(pid_t pid, int signo, milliseconds timeout) {
  kill(pid, signo);
  if (auto status = reap(pid, timeout)) return *status;
  kill(pid, SIGKILL);
  if (auto status = reap(pid, kKillTimeout)) return *status;
  fail("process " + std::to_string(pid) + " survived SIGKILL");
}

void run_to_completion(const SpawnSpec& spec, milliseconds timeout) {
  const pid_t pid = spawn(spec);
  const auto status = reap(pid, timeout);
  if (!status) {
    terminate(pid, SIGKILL, kKillTimeout);
    fail(spec.argv[0] + " did not finish in " + std::to_string(timeout.count()) + " ms; log " +
         spec.log_path + ":\n" + tail(read_file(spec.log_path), kLogTailLines));
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    fail(spec.argv[0] + " failed (" + describe_status(*status) + "); log " + spec.log_path + ":\n" +
         tail(read_file(spec.log_path), kLogTailLines));
  }
}

bool accepts_connections(const std::string& socket_path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) fail("socket path too long: " + socket_path);
  std::copy(socket_path.begin(), socket_path.end(), addr.sun_path);
  const Fd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) fail_errno("socket");
  return ::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
}

// Lets libpq's default user (the OS user) in: initdb made only `postgres`.
void create_invoking_role(const PostgresServer& server) {
  const std::string user = invoking_user();
  if (user == "postgres") return;
  const PgConn conn = connect(server.conninfo("postgres", "postgres"));
  char* quoted = PQescapeIdentifier(conn.get(), user.c_str(), user.size());
  if (quoted == nullptr) fail(PQerrorMessage(conn.get()));
  const std::string role = quoted;
  PQfreemem(quoted);
  exec_ok(conn, "CREATE ROLE " + role + " SUPERUSER LOGIN");
}

// The one PostgresServer of this binary, owned by the environment below.
std::unique_ptr<PostgresServer> g_postgres;

class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    try {
      g_postgres = std::make_unique<PostgresServer>(default_postgres_port());
    } catch (const std::exception& e) {
      // A failure here makes GoogleTest skip every test and fail the run.
      FAIL() << "could not start the throwaway PostgreSQL: " << e.what();
    }
  }
  void TearDown() override { g_postgres.reset(); }
};

// Registered at static initialisation, as GoogleTest documents, so every test binary linking the
// harness gets its PostgreSQL without a main() of its own. GoogleTest owns the environment.
[[maybe_unused]] ::testing::Environment* const g_environment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

}  // namespace

// ---- TempDir ----

TempDir::TempDir(const std::string& prefix) {
  std::string templ = "/tmp/" + prefix + ".XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) fail_errno("mkdtemp " + templ);
  path_ = templ;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    TempDir discarded(std::move(*this));
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

// ---- PostgresServer ----

int default_postgres_port() { return 54000 + (getpid() % 1000); }
int default_sluiced_port() { return 55000 + (getpid() % 1000); }

PostgresServer& postgres() {
  if (!g_postgres) fail("the throwaway PostgreSQL is not running (only tests may use harness::postgres())");
  return *g_postgres;
}

PostgresServer::PostgresServer(int port, std::optional<PostgresTls> tls)
    : dir_("sluice-pg"), port_(port), tls_(std::move(tls)) {
  if (const auto owner = postgres_credentials()) {
    if (chown(dir_.path().c_str(), owner->uid, owner->gid) != 0) fail_errno("chown " + dir_.path());
  }
  start();
}

PostgresServer::~PostgresServer() {
  try {
    stop();
  } catch (const std::exception& e) {
    std::cerr << "harness: stopping PostgreSQL: " << e.what() << '\n';
  }
}

std::string PostgresServer::conninfo(const std::string& dbname, const std::string& user) const {
  std::string info = "host=" + quote_conninfo(dir_.path()) + " port=" + std::to_string(port_) +
                     " dbname=" + quote_conninfo(dbname);
  if (!user.empty()) info += " user=" + quote_conninfo(user);
  return info;
}

std::string PostgresServer::log() const { return read_file(dir_.path() + "/postgres.log"); }

void PostgresServer::start() {
  if (running()) return;
  const std::string data = dir_.path() + "/data";
  const bool fresh = !std::filesystem::exists(data + "/PG_VERSION");
  if (fresh) init_cluster();
  pid_ = spawn({.argv = {postgres_bindir() + "/postgres", "-D", data},
                .log_path = dir_.path() + "/postgres.log",
                .run_as = postgres_credentials(),
                .parent_death_signal = SIGINT});  // fast shutdown, should the tests die first
  try {
    wait_ready();
    if (fresh) create_invoking_role(*this);
  } catch (...) {
    stop();
    throw;
  }
}

void PostgresServer::stop() {
  if (!running()) return;
  // SIGINT is PostgreSQL's fast shutdown: disconnect clients, checkpoint, exit. The postmaster
  // waits for its backends, so once it is reaped nothing of the cluster runs.
  const pid_t pid = std::exchange(pid_, -1);
  terminate(pid, SIGINT, kPostgresStopTimeout);
}

void PostgresServer::restart() {
  stop();
  start();
}

void PostgresServer::init_cluster() {
  const std::string data = dir_.path() + "/data";
  // -U postgres: the usual superuser name, whoever runs the tests; -N: a throwaway needs no fsync.
  run_to_completion({.argv = {postgres_bindir() + "/initdb", "-D", data, "-U", "postgres", "-E", "UTF8",
                              "--locale=C.UTF-8", "-A", "trust", "-N"},
                     .log_path = dir_.path() + "/initdb.log",
                     .run_as = postgres_credentials()},
                    kPostgresReadyTimeout);
  std::ofstream conf(data + "/postgresql.conf", std::ios::app);
  conf << "\n# sluice integration tests: Unix socket only, durability traded for speed\n"
       << "listen_addresses = ''\n"
       << "unix_socket_directories = '" << dir_.path() << "'\n"
       << "port = " << port_ << '\n'
       << "fsync = off\n"
       << "synchronous_commit = off\n"
       << "full_page_writes = off\n"
       << "max_connections = 200\n";
  if (tls_) {
    conf << "listen_addresses = '127.0.0.1'\n"
         << "ssl = on\n"
         << "ssl_cert_file = 'server.crt'\n"
         << "ssl_key_file = 'server.key'\n";
    for (const auto& [from, to] :
         {std::pair{tls_->cert_file, "server.crt"}, std::pair{tls_->key_file, "server.key"}}) {
      const std::string path = data + "/" + to;
      std::filesystem::copy_file(from, path, std::filesystem::copy_options::overwrite_existing);
      chmod(path.c_str(), 0600);  // PostgreSQL refuses a key others may read
      if (const auto owner = postgres_credentials();
          owner && chown(path.c_str(), owner->uid, owner->gid) != 0)
        fail_errno("chown " + path);
    }
    std::ofstream(data + "/pg_hba.conf") << "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
  }
  if (!conf.flush()) fail("cannot write " + data + "/postgresql.conf");
}

void PostgresServer::wait_ready() {
  const std::string info = conninfo("postgres", "postgres");
  const bool ready = wait_until(
      [&] {
        if (PQping(info.c_str()) == PQPING_OK) return true;
        if (auto status = reap(pid_, milliseconds::zero())) {
          pid_ = -1;
          fail("postgres exited during startup (" + describe_status(*status) + "); log:\n" +
               tail(log(), kLogTailLines));
        }
        return false;
      },
      kPostgresReadyTimeout);
  if (!ready) fail("postgres not ready after " + std::to_string(kPostgresReadyTimeout.count()) + " ms");
}

// ---- Sluiced ----

SluicedConfig default_config(const PoolOptions& options) {
  SluicedConfig config{.dir = TempDir("sluice-it"), .port = default_sluiced_port(), .text = {}};
  const PostgresServer& pg = postgres();
  const std::string& dir = config.dir.path();
  nlohmann::json json = {
      {"listen", {{"unix_socket_dir", dir}, {"port", config.port}}},
      {"control", {{"socket", dir + "/control.sock"}}},
      {"drain", {{"timeout_s", kDefaultDrainTimeoutS}}},
      {"databases",
       {{options.dbname,
         {{"conninfo", "host=" + quote_conninfo(pg.socket_dir()) + " port=" + std::to_string(pg.port())},
          {"pool_size", options.pool_size},
          {"pool_mode", options.pool_mode}}}}},
  };
  json.merge_patch(options.overrides);
  config.text = json.dump(2) + "\n";
  return config;
}

std::string sluiced_path() {
  const char* other = std::getenv("SLUICE_TEST_SLUICED");
  return other != nullptr && *other != '\0' ? other : SLUICED_PATH;
}

Sluiced::Sluiced(const PoolOptions& options, Wait wait) : Sluiced(default_config(options), wait) {}

Sluiced::Sluiced(SluicedConfig config, Wait wait) : Sluiced(std::move(config), wait, -1) {}

Sluiced::Sluiced(SluicedConfig config, Wait wait, int upgrade_channel) : config_(std::move(config)) {
  {
    std::ofstream out(config_path());
    out << config_.text;
    if (!out.flush()) fail("cannot write " + config_path());
  }
  std::vector<std::string> argv = {sluiced_path(), "-c", config_path()};
  if (upgrade_channel >= 0) argv.insert(argv.end(), {"--upgrade-fd", "3"});
  pid_ = spawn({.argv = std::move(argv),
                .log_path = config_.dir.path() + "/sluiced.log",
                .run_as = std::nullopt,
                .parent_death_signal = SIGKILL,
                .descriptor_3 = upgrade_channel});
  if (wait == Wait::none) return;
  try {
    wait_ready();
  } catch (...) {
    if (!status_) status_ = terminate(pid_, SIGKILL, kKillTimeout);
    throw;
  }
}

Sluiced::~Sluiced() {
  try {
    if (alive()) {
      // SIGTERM drains for up to drain.timeout_s, then sluiced must exit 0 (DESIGN §3).
      int drain_s = kSluicedDrainTimeoutFallbackS;
      const auto json = nlohmann::json::parse(config_.text, nullptr, false, true);
      if (json.is_object()) drain_s = json.value(nlohmann::json::json_pointer("/drain/timeout_s"), drain_s);
      kill(pid_, SIGTERM);
      status_ = reap(pid_, std::chrono::seconds(drain_s) + kKillTimeout);
      if (!status_) {
        ADD_FAILURE() << "sluiced still running " << drain_s << " s after SIGTERM (drain.timeout_s) + "
                      << kKillTimeout.count() << " ms; killing it";
        status_ = terminate(pid_, SIGKILL, kKillTimeout);
      } else if (!WIFEXITED(*status_) || WEXITSTATUS(*status_) != 0) {
        ADD_FAILURE() << "sluiced ended with " << describe_status(*status_) << " after SIGTERM, not exit 0";
      }
    } else if (!exit_expected_) {
      ADD_FAILURE() << "sluiced exited during the test (" << describe_status(status_.value_or(0))
                    << ") with nobody asking it to";
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "stopping sluiced: " << e.what();
  }
  if (::testing::Test::HasFailure()) {
    std::cerr << "---- sluiced log (" << config_.dir.path() << "/sluiced.log) ----\n"
              << log() << "---- end of sluiced log ----\n";
  }
}

std::string Sluiced::socket_path() const {
  return config_.dir.path() + "/.s.PGSQL." + std::to_string(config_.port);
}

std::string Sluiced::control_socket() const { return config_.dir.path() + "/control.sock"; }

std::string Sluiced::config_path() const { return config_.dir.path() + "/sluiced.json"; }

std::string Sluiced::conninfo(const std::string& dbname, const std::string& user) const {
  std::string info = "host=" + quote_conninfo(config_.dir.path()) + " port=" + std::to_string(config_.port) +
                     " dbname=" + quote_conninfo(dbname) + " connect_timeout=10";
  if (!user.empty()) info += " user=" + quote_conninfo(user);
  return info;
}

std::string Sluiced::log() const { return read_file(config_.dir.path() + "/sluiced.log"); }

void Sluiced::send_signal(int signo) {
  if (status_) return;
  exit_expected_ = true;
  kill(pid_, signo);
}

std::optional<int> Sluiced::wait_exit(milliseconds timeout) {
  exit_expected_ = true;
  if (!status_) status_ = reap(pid_, timeout);
  return status_;
}

bool Sluiced::alive() {
  if (!status_) status_ = reap(pid_, milliseconds::zero());
  return !status_;
}

void Sluiced::wait_ready() {
  const std::string path = socket_path();
  const bool ready = wait_until(
      [&] {
        if (accepts_connections(path)) return true;
        if (!alive()) {
          fail("sluiced exited before listening (" + describe_status(*status_) + "); log:\n" +
               tail(log(), kLogTailLines));
        }
        return false;
      },
      kSluicedReadyTimeout);
  if (!ready) {
    fail("sluiced not accepting connections on " + path + " after " +
         std::to_string(kSluicedReadyTimeout.count()) + " ms; log:\n" + tail(log(), kLogTailLines));
  }
}

// ---- libpq helpers ----

PgConn try_connect(const std::string& conninfo) {
  PgConn conn(PQconnectdb(conninfo.c_str()));
  if (!conn) fail("PQconnectdb: out of memory");
  return conn;
}

PgConn connect(const std::string& conninfo) {
  PgConn conn = try_connect(conninfo);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    fail("connect (" + conninfo + "): " + PQerrorMessage(conn.get()));
  }
  return conn;
}

PgResult exec(const PgConn& conn, const std::string& sql) {
  PgResult result(PQexec(conn.get(), sql.c_str()));
  if (!result) fail("PQexec (" + sql + "): " + PQerrorMessage(conn.get()));
  return result;
}

void exec_ok(const PgConn& conn, const std::string& sql) {
  const PgResult result = exec(conn, sql);
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    fail("\"" + sql + "\": " + PQresStatus(status) + ": " + PQresultErrorMessage(result.get()));
  }
}

std::string scalar(const PgConn& conn, const std::string& sql) {
  const PgResult result = exec(conn, sql);
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_TUPLES_OK) {
    fail("\"" + sql + "\": " + PQresStatus(status) + ": " + PQresultErrorMessage(result.get()));
  }
  if (PQntuples(result.get()) != 1 || PQnfields(result.get()) != 1) {
    fail("\"" + sql + "\": expected 1 row of 1 column, got " + std::to_string(PQntuples(result.get())) +
         " rows of " + std::to_string(PQnfields(result.get())) + " columns");
  }
  if (PQgetisnull(result.get(), 0, 0) != 0) fail("\"" + sql + "\": returned NULL");
  return PQgetvalue(result.get(), 0, 0);
}

// ---- child processes ----

bool Captured::succeeded() const { return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

std::string Captured::describe() const {
  return timed_out ? "killed at the timeout" : describe_status(status);
}

Captured run_capture(const std::vector<std::string>& argv, milliseconds timeout,
                     const std::vector<std::string>& env) {
  if (argv.empty()) fail("run_capture: no program");
  const TempDir dir("sluice-run");
  const std::string out_path = dir.path() + "/stdout";
  const std::string err_path = dir.path() + "/stderr";
  const pid_t pid =
      spawn({.argv = argv, .log_path = out_path, .run_as = std::nullopt, .parent_death_signal = SIGKILL},
            {.err_path = err_path, .env = env});
  Captured captured;
  if (auto status = reap(pid, timeout)) {
    captured.status = *status;
  } else {
    captured.timed_out = true;
    captured.status = terminate(pid, SIGKILL, kKillTimeout);
  }
  captured.out = read_file(out_path);
  captured.err = read_file(err_path);
  return captured;
}

int free_tcp_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    const int error = errno;
    if (fd >= 0) close(fd);
    throw std::runtime_error(std::string("free_tcp_port: ") + std::strerror(error));
  }
  close(fd);
  return ntohs(address.sin_port);
}

bool wait_until(const std::function<bool()>& predicate, milliseconds timeout) {
  // Starts fast for conditions that settle quickly, backs off so slow ones cost little.
  const auto deadline = Clock::now() + timeout;
  milliseconds interval{1};
  for (;;) {
    if (predicate()) return true;
    const auto now = Clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min(interval, std::chrono::duration_cast<milliseconds>(deadline - now)));
    interval = std::min(interval * 2, kMaxPollInterval);
  }
}

}  // namespace harness
