#include "config/config_loader.h"

#include <libpq-fe.h>
#include <sys/un.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "config/auth_files.h"
#include "config/file_text.h"
#include "config/key_locator.h"
#include "config/tls_context.h"

namespace sluice::config {

namespace {

using Json = nlohmann::json;

// Room for the NUL that sockaddr_un needs: a longer path fails only at bind().
constexpr std::size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;
// More loops than this would only contend for cores a pooler does not have.
constexpr int kMaxWorkers = 64;

std::string json_string(std::string_view text) { return Json(text).dump(); }

// "an integer", "a string", ... or the number itself when it is fractional.
std::string describe(const Json& value) {
  switch (value.type()) {
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::null:
      return "null";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return value.dump();
    default:
      return "an unsupported value";
  }
}

// "key 'listen.port'", or "the top level" for the document itself.
std::string key_name(const KeyPath& path) {
  return path.empty() ? "the top level" : "key '" + dotted(path) + "'";
}

// Keeps the problem that stands first in the file: nlohmann hands keys over
// alphabetically, but people read and fix a file from the top.
class Problems {
 public:
  Problems(const std::string& source_name, const KeyLocator& keys) : source_name_(source_name), keys_(keys) {}

  // `message` follows "FILE:LINE: "; `at` chooses the line.
  void add(const KeyPath& at, const std::string& message) {
    const std::optional<int> line = keys_.line_of(at);
    const int order = line.value_or(INT_MAX);  // a key never located sorts last
    if (!first_.empty() && order >= first_order_) return;
    first_order_ = order;
    first_ = source_name_ + (line ? ":" + std::to_string(*line) : "") + ": " + message;
  }

  [[nodiscard]] bool any() const { return !first_.empty(); }
  [[nodiscard]] const std::string& first() const { return first_; }

 private:
  const std::string& source_name_;
  const KeyLocator& keys_;
  std::string first_;
  int first_order_ = INT_MAX;
};

enum class Empty { allowed, rejected };

// One JSON object of the config. Each key a reader asks for counts as known;
// read_object() reports the others once the reading callback returns. Readers
// leave `out` untouched when the key is absent or invalid and return whether
// they stored a value.
class Section {
 public:
  using Reader = std::function<void(Section&)>;

  Section(Problems& problems, const Json& object, KeyPath path)
      : problems_(problems), object_(object), path_(std::move(path)) {}

  bool integer(std::string_view key, int& out, int min, int max = INT_MAX) {
    const Json* value = take(key);
    if (value == nullptr) return false;
    if (!value->is_number_integer()) {
      report(key, "expected an integer, got " + describe(*value));
      return false;
    }
    // Non-negative numbers arrive unsigned; past INT64_MAX they would wrap negative.
    const bool huge = value->is_number_unsigned() && value->get<std::uint64_t>() > INT64_MAX;
    const std::int64_t number = huge ? INT64_MAX : value->get<std::int64_t>();
    const bool too_small = number < min;
    if (too_small || number > max) {
      std::string rule = "must be between " + std::to_string(min) + " and " + std::to_string(max);
      if (max == INT_MAX) {  // no upper bound in the schema, only int's
        rule =
            too_small ? "must be at least " + std::to_string(min) : "must be at most " + std::to_string(max);
      }
      report(key, rule + ", got " + value->dump());
      return false;
    }
    out = static_cast<int>(number);
    return true;
  }

  bool string(std::string_view key, std::string& out, Empty empty = Empty::allowed) {
    const Json* value = take(key);
    if (value == nullptr) return false;
    if (!value->is_string()) {
      report(key, "expected a string, got " + describe(*value));
      return false;
    }
    if (empty == Empty::rejected && value->get_ref<const std::string&>().empty()) {
      report(key, "must not be empty");
      return false;
    }
    out = value->get<std::string>();
    return true;
  }

  bool string(std::string_view key, std::optional<std::string>& out, Empty empty = Empty::allowed) {
    std::string value;
    if (!string(key, value, empty)) return false;
    out = std::move(value);
    return true;
  }

  // A string naming one of `options`.
  template <class T>
  bool choice(std::string_view key, T& out, std::initializer_list<std::pair<std::string_view, T>> options) {
    std::string value;
    if (!string(key, value)) return false;
    std::string expected;
    for (std::size_t i = 0; i < options.size(); ++i) {
      const auto& [name, option] = options.begin()[i];
      if (value == name) {
        out = option;
        return true;
      }
      expected += i == 0 ? "" : i + 1 == options.size() ? " or " : ", ";
      expected += json_string(name);
    }
    report(key, "expected " + expected + ", got " + json_string(value));
    return false;
  }

  // Runs `read` on the object at `key`, if there is one.
  void section(std::string_view key, const Reader& read);

  // Runs `read` on every member of this object, each of which must be an
  // object with a non-empty name.
  void each_section(const std::function<void(const std::string& name, Section&)>& read);

  [[nodiscard]] bool has(std::string_view key) const { return object_.contains(key); }

  // Reports on `key`, or on this section's own key when `key` is absent.
  void report(std::string_view key, const std::string& detail) {
    const KeyPath at = has(key) ? child(key) : path_;
    problems_.add(at, key_name(at) + ": " + detail);
  }

  void reject_unknown() const {
    for (const auto& [key, value] : object_.items()) {
      if (!known_.contains(key)) problems_.add(child(key), "unknown key '" + dotted(child(key)) + "'");
    }
  }

 private:
  // The value at `key`, or nullptr; either way `key` is now known.
  const Json* take(std::string_view key) {
    known_.emplace(key);
    const auto found = object_.find(key);
    return found == object_.end() ? nullptr : &*found;
  }

  [[nodiscard]] KeyPath child(std::string_view key) const {
    KeyPath path = path_;
    path.emplace_back(key);
    return path;
  }

  Problems& problems_;
  const Json& object_;
  KeyPath path_;
  std::set<std::string, std::less<>> known_;
};

void read_object(Problems& problems, const Json& value, KeyPath path, const Section::Reader& read) {
  if (!value.is_object()) {
    problems.add(path, key_name(path) + ": expected an object, got " + describe(value));
    return;
  }
  Section section(problems, value, std::move(path));
  read(section);
  section.reject_unknown();
}

void Section::section(std::string_view key, const Reader& read) {
  if (const Json* value = take(key)) read_object(problems_, *value, child(key), read);
}

void Section::each_section(const std::function<void(const std::string& name, Section&)>& read) {
  for (const auto& member : object_.items()) {
    const std::string& name = member.key();  // not a structured binding: clang 15 cannot capture one
    known_.insert(name);
    if (name.empty()) {
      problems_.add(child(name), key_name(path_) + ": names must not be empty");
      continue;
    }
    read_object(problems_, member.value(), child(name), [&](Section& s) { read(name, s); });
  }
}

// "host:port"; an IPv6 host needs brackets ("[::1]:6432") so that the port's
// colon is unambiguous.
std::optional<std::string> host_port_error(std::string_view value) {
  const std::size_t colon = value.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return "expected \"host:port\", got " + json_string(value);
  }
  const std::string_view host = value.substr(0, colon);
  const std::string_view port = value.substr(colon + 1);
  if (host.find(':') != std::string_view::npos && (host.front() != '[' || host.back() != ']')) {
    return "an IPv6 host needs brackets, as in \"[::1]:6432\"";
  }
  int number = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (port.empty() || error != std::errc() || end != port.data() + port.size() || number < 1 ||
      number > 65535) {
    return "port must be between 1 and 65535, got " + json_string(port);
  }
  return std::nullopt;
}

// The values libpq checks only when it connects, for the modes it takes: its words.
std::optional<std::string> mode_error(const PQconninfoOption& option) {
  static const std::map<std::string_view, std::vector<std::string_view>> kModes = {
      {"sslmode", {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}},
      {"gssencmode", {"disable", "prefer", "require"}},
      {"channel_binding", {"disable", "prefer", "require"}}};
  if (option.val == nullptr) return std::nullopt;
  const auto modes = kModes.find(option.keyword);
  if (modes == kModes.end() || std::ranges::find(modes->second, option.val) != modes->second.end())
    return std::nullopt;
  return std::string("invalid ") + option.keyword + " value: \"" + option.val + "\"";
}

// libpq's own parser, so that a conninfo the pool cannot use fails at load
// time rather than on the first connection.
std::optional<std::string> conninfo_error(const std::string& conninfo) {
  char* message = nullptr;
  if (PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &message)) {
    std::optional<std::string> invalid;
    for (const PQconninfoOption* option = options; option->keyword != nullptr && !invalid; ++option)
      invalid = mode_error(*option);
    PQconninfoFree(options);
    if (invalid) return "invalid conninfo: " + *invalid;
    return std::nullopt;
  }
  std::string text = message != nullptr ? message : "out of memory";
  PQfreemem(message);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return "invalid conninfo: " + text;
}

std::optional<std::string> socket_path_error(const std::string& path) {
  if (path.size() <= kMaxSocketPath) return std::nullopt;
  return "socket path " + json_string(path) + " is " + std::to_string(path.size()) + " bytes, over the " +
         std::to_string(kMaxSocketPath) + " a Unix socket allows";
}

// Shared by the top-level `pool` section and each database.
void read_pool_settings(Section& s, PoolSettings& pool) {
  s.integer("pool_size", pool.pool_size, 1);
  s.choice("pool_mode", pool.pool_mode,
           {{"transaction", PoolMode::transaction}, {"session", PoolMode::session}});
  s.integer("query_wait_timeout_ms", pool.query_wait_timeout_ms, 0);
  s.integer("server_connect_timeout_ms", pool.server_connect_timeout_ms, 0);
  s.integer("server_login_retry_ms", pool.server_login_retry_ms, 0);
  s.integer("server_idle_timeout_s", pool.server_idle_timeout_s, 0);
  s.integer("server_lifetime_s", pool.server_lifetime_s, 0);
  s.integer("idle_transaction_timeout_ms", pool.idle_transaction_timeout_ms, 0);
  s.integer("client_idle_timeout_s", pool.client_idle_timeout_s, 0);
  s.string("reset_query", pool.reset_query);  // empty: no reset
  s.integer("max_prepared_statements", pool.max_prepared_statements, 0);
  s.choice("session_state", pool.session_state,
           {{"pin", SessionStatePolicy::pin}, {"refuse", SessionStatePolicy::refuse}});
  s.integer("min_pool_size", pool.min_pool_size, 0);
  s.integer("reserve_pool_size", pool.reserve_pool_size, 0);
  s.integer("reserve_pool_timeout_ms", pool.reserve_pool_timeout_ms, 0);
  s.integer("max_db_connections", pool.max_db_connections, 0);
  s.integer("max_user_connections", pool.max_user_connections, 0);
  s.integer("query_timeout_ms", pool.query_timeout_ms, 0);
  s.integer("transaction_timeout_ms", pool.transaction_timeout_ms, 0);
  s.string("server_check_query", pool.server_check_query);
  s.integer("server_check_delay_s", pool.server_check_delay_s, 0);
}

void read_listen(Section& s, ListenConfig& listen) {
  s.string("unix_socket_dir", listen.unix_socket_dir, Empty::rejected);
  s.integer("port", listen.port, 1, 65535);
  if (s.string("tcp", listen.tcp, Empty::rejected)) {
    if (auto error = host_port_error(*listen.tcp)) s.report("tcp", *error);
  }
  // The client socket is this path (as psql and libpq name it).
  const std::string socket = listen.unix_socket_dir + "/.s.PGSQL." + std::to_string(listen.port);
  if (auto error = socket_path_error(socket)) s.report("unix_socket_dir", *error);
}

void read_control(Section& s, ControlConfig& control) {
  if (s.string("socket", control.socket, Empty::rejected)) {
    if (auto error = socket_path_error(control.socket)) s.report("socket", *error);
  }
  s.string("group", control.group, Empty::rejected);
}

void read_database(Section& s, DatabaseConfig& database) {
  if (!s.has("conninfo")) s.report("conninfo", "missing required key 'conninfo'");
  if (s.string("conninfo", database.conninfo)) {
    if (auto error = conninfo_error(database.conninfo)) s.report("conninfo", *error);
  }
  read_pool_settings(s, database.pool);
}

void read_user(Section& s, UserConfig& user) {
  int max_user_connections = 0;
  if (s.integer("max_user_connections", max_user_connections, 0))
    user.max_user_connections = max_user_connections;
}

void read_teardown(Section& s, TeardownConfig& teardown) {
  s.integer("sla_ms", teardown.sla_ms, 1);
  s.integer("max_ms", teardown.max_ms, 1);
  if (teardown.sla_ms > teardown.max_ms) {
    s.report(s.has("sla_ms") ? "sla_ms" : "max_ms", "teardown.sla_ms (" + std::to_string(teardown.sla_ms) +
                                                        ") must not exceed teardown.max_ms (" +
                                                        std::to_string(teardown.max_ms) + ")");
  }
}

void read_limits(Section& s, LimitsConfig& limits) {
  s.integer("max_client_conn", limits.max_client_conn, 1);
  s.integer("startup_packet_max", limits.startup_packet_max, 1);
  s.integer("message_max", limits.message_max, 1);
  s.integer("login_timeout_ms", limits.login_timeout_ms, 1);
  s.integer("control_request_max", limits.control_request_max, 1);
}

// The files are loaded here too, so that --check and a reload judge them (README "TLS").
void read_tls(Section& s, TlsConfig& tls) {
  s.choice("mode", tls.mode,
           {{"disable", TlsMode::disable}, {"allow", TlsMode::allow}, {"require", TlsMode::require}});
  s.string("cert_file", tls.cert_file, Empty::rejected);
  s.string("key_file", tls.key_file, Empty::rejected);
  s.string("ca_file", tls.ca_file, Empty::rejected);
  s.choice("min_version", tls.min_version, {{"1.2", TlsMinVersion::tls1_2}, {"1.3", TlsMinVersion::tls1_3}});
  if (tls.mode == TlsMode::disable) return;
  for (const char* key : {"cert_file", "key_file"}) {
    if (!s.has(key))
      s.report(key, std::string("missing required key '") + key + "' (tls.mode is not \"disable\")");
  }
  if (tls.cert_file.empty() || tls.key_file.empty()) return;
  auto context = TlsContext::load(tls);
  if (!context) return s.report(context.error().key, context.error().message);
  tls.context = std::move(*context);
}

void read_auth(Section& s, AuthConfig& auth, const TlsConfig& tls) {
  auth.type_written = s.choice("type", auth.type,
                               {{"trust", AuthType::trust},
                                {"peer", AuthType::peer},
                                {"md5", AuthType::md5},
                                {"scram-sha-256", AuthType::scram_sha_256},
                                {"cert", AuthType::cert},
                                {"hba", AuthType::hba}});
  s.string("file", auth.file, Empty::rejected);
  s.string("hba_file", auth.hba_file, Empty::rejected);
  s.string("user", auth.user, Empty::rejected);
  if (s.string("query", auth.query, Empty::rejected) && !auth.user)
    s.report("query", "needs auth.user to run as");
  s.integer("cache_s", auth.cache_s, 0);
  const bool password = auth.type == AuthType::md5 || auth.type == AuthType::scram_sha_256;
  if (password && !auth.file && !auth.user) {
    s.report("type", "a password method needs auth.file or auth.user (where the roles' secrets come from)");
  }
  if (auth.type == AuthType::hba && !auth.hba_file) s.report("type", "\"hba\" needs auth.hba_file");
  if (auth.hba_file && auth.type != AuthType::hba)
    s.report("hba_file", "is read only with auth.type \"hba\"");
  // Secrets with no password method to check them: the operator meant passwords, and would get trust.
  if (!password && auth.type != AuthType::hba) {
    for (const char* key : {"file", "user", "cache_s"}) {
      if (s.has(key)) s.report(key, R"(is read only with auth.type "md5", "scram-sha-256" or "hba")");
    }
  }
  if (auth.type == AuthType::cert && (tls.mode == TlsMode::disable || tls.ca_file.empty()))
    s.report("type", R"("cert" needs tls.mode "allow" or "require" and tls.ca_file)");
}

// A path (it has a '/') is a Unix socket; anything else is "host:port".
void read_metrics(Section& s, MetricsConfig& metrics) {
  if (!s.string("listen", metrics.listen, Empty::rejected)) return;
  const std::string& listen = *metrics.listen;
  const auto error =
      listen.find('/') != std::string::npos ? socket_path_error(listen) : host_port_error(listen);
  if (error) s.report("listen", *error + " (a Unix socket is a path with a '/')");
}

void read_config(Section& root, Config& config) {
  root.section("listen", [&](Section& s) { read_listen(s, config.listen); });
  root.section("control", [&](Section& s) { read_control(s, config.control); });
  // Before the databases, wherever it stands in the file: they inherit it.
  root.section("pool", [&](Section& s) { read_pool_settings(s, config.pool); });
  root.section("databases", [&](Section& databases) {
    databases.each_section([&](const std::string& name, Section& s) {
      DatabaseConfig database{.conninfo = {}, .pool = config.pool, .server_tls = {}};
      read_database(s, database);
      config.databases.emplace(name, std::move(database));
    });
  });
  root.section("users", [&](Section& users) {
    users.each_section([&](const std::string& name, Section& s) { read_user(s, config.users[name]); });
  });
  root.section("teardown", [&](Section& s) { read_teardown(s, config.teardown); });
  root.section("drain", [&](Section& s) { s.integer("timeout_s", config.drain.timeout_s, 0); });
  root.section("tls", [&](Section& s) { read_tls(s, config.tls); });  // before auth: cert needs it
  root.section("auth", [&](Section& s) { read_auth(s, config.auth, config.tls); });
  root.section("limits", [&](Section& s) { read_limits(s, config.limits); });
  root.section("diagnostics",
               [&](Section& s) { s.integer("slow_callback_ms", config.diagnostics.slow_callback_ms, 1); });
  root.section("metrics", [&](Section& s) { read_metrics(s, config.metrics); });
  root.integer("workers", config.workers, 1, kMaxWorkers);
  root.choice("log_level", config.log_level,
              {{"debug", "debug"}, {"info", "info"}, {"warning", "warning"}, {"error", "error"}});
}

// nlohmann says "[json.exception.parse_error.101] parse error at line 3,
// column 7: syntax error while parsing value - unexpected ','; ...". Keep what
// follows " - ", and count the line from the byte offset ourselves.
std::string syntax_error(std::string_view text, const std::string& source_name,
                         const Json::parse_error& error) {
  std::string_view detail = error.what();
  if (const std::size_t dash = detail.find(" - "); dash != std::string_view::npos) {
    detail.remove_prefix(dash + 3);
  } else if (const std::size_t bracket = detail.find("] "); bracket != std::string_view::npos) {
    detail.remove_prefix(bracket + 2);
  }
  // error.byte counts the offending byte itself, 1-based.
  const std::size_t before = std::min<std::size_t>(error.byte > 0 ? error.byte - 1 : 0, text.size());
  const auto newlines = std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(before), '\n');
  return source_name + ":" + std::to_string(newlines + 1) + ": syntax error: " + std::string(detail);
}

Result<Config> parse_unguarded(std::string_view text, const std::string& source_name) {
  Json document;
  try {
    document = Json::parse(text, nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const Json::parse_error& error) {
    return fail(syntax_error(text, source_name, error));
  } catch (const Json::exception& error) {  // e.g. out_of_range for 1e999: no position
    std::string_view detail = error.what();
    if (const std::size_t bracket = detail.find("] "); bracket != std::string_view::npos) {
      detail.remove_prefix(bracket + 2);
    }
    return fail(source_name + ": syntax error: " + std::string(detail));
  }

  const KeyLocator keys(text);
  if (const auto& duplicate = keys.first_duplicate()) {
    return fail(source_name + ":" + std::to_string(duplicate->line) + ": duplicate key '" +
                dotted(duplicate->path) + "'");
  }

  Problems problems(source_name, keys);
  Config config;
  read_object(problems, document, {}, [&](Section& root) { read_config(root, config); });
  if (problems.any()) return fail(problems.first());
  return config;
}

}  // namespace

Result<Config> parse_config(std::string_view text, const std::string& source_name) {
  // The contract is a Result, never an exception: sluiced reports it and keeps
  // the old config on reload. This catches what is left, e.g. bad_alloc.
  try {
    return parse_unguarded(text, source_name);
  } catch (const std::exception& error) {
    return fail(source_name + ": " + error.what());
  }
}

Result<Config> load_config_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) return fail(path + ": cannot read: " + text.error());
  auto config = parse_config(*text, path);
  if (!config) return config;
  // The files the config names, read with it: a reload takes them all or none.
  if (auto error = load_auth_files(config->auth, path, *text)) return fail(*error);
  load_server_tls(*config);
  return config;
}

}  // namespace sluice::config
