// sluiced's configuration: the schema with its defaults. Loading and
// validation live in config_loader.h; every key is documented in README.md.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "config/server_tls.h"
#include "config/tls_config.h"

namespace sluice::auth {
struct AuthFile;
struct HbaRules;
}  // namespace sluice::auth

namespace sluice::config {

enum class PoolMode { transaction, session };
// Transaction mode, when a client makes state that lives in its backend (a temporary table, a
// session advisory lock, LISTEN, ...): keep its server until the state is gone, or refuse.
enum class SessionStatePolicy { pin, refuse };
// md5 and scram-sha-256 check the secrets of auth.file; cert: the client's TLS certificate
// (verified against tls.ca_file) names the role in its CN; hba picks one of them per client from
// auth.hba_file (frontend/client_auth.h).
enum class AuthType { trust, peer, md5, scram_sha_256, cert, hba };

// Settings a database inherits from the top-level `pool` section and may override.
struct PoolSettings {
  int pool_size = 20;
  PoolMode pool_mode = PoolMode::transaction;
  int query_wait_timeout_ms = 120000;       // waiting for a server; 0 = forever
  int server_connect_timeout_ms = 15000;    // opening a server connection
  int server_login_retry_ms = 100;          // after a failed connect, before the next attempt
  int server_idle_timeout_s = 600;          // retire servers idle this long; 0 = never
  int server_lifetime_s = 3600;             // retire idle servers older than this; 0 = never
  int idle_transaction_timeout_ms = 0;      // client idle inside a transaction; 0 = off
  int client_idle_timeout_s = 0;            // client idle between transactions; 0 = off
  std::string reset_query = "DISCARD ALL";  // session mode, before a server goes back idle
  int max_prepared_statements = 100;        // per server connection, transaction mode
  SessionStatePolicy session_state = SessionStatePolicy::pin;
  // Limits as PgBouncer's (README "Limits against PgBouncer's names"); 0 = off / unlimited.
  int min_pool_size = 0;      // servers kept open with no client, within every limit
  int reserve_pool_size = 0;  // extra servers once a client waited reserve_pool_timeout_ms
  int reserve_pool_timeout_ms = 5000;
  int max_db_connections = 0;      // servers of the database: every user, pool and worker
  int max_user_connections = 0;    // servers of the user: every database, pool and worker
  int query_timeout_ms = 0;        // a query running this long is cancelled
  int transaction_timeout_ms = 0;  // a transaction open this long: rolled back, client closed
  std::string server_check_query;  // liveness check of a server idle long; empty = an empty Query
  int server_check_delay_s = 30;   // idle this long before it is checked; 0 = never checked

  bool operator==(const PoolSettings&) const = default;
};

struct DatabaseConfig {
  std::string conninfo;  // libpq conninfo; missing user/dbname mean the client's
  PoolSettings pool;
  // TLS to the server for SCRAM pass-through, read by load_config_file (config/server_tls.h).
  ServerTls server_tls;

  bool operator==(const DatabaseConfig&) const = default;
};

// Per client user, as PgBouncer's [users] section: a user's own limit wins over its databases'.
struct UserConfig {
  std::optional<int> max_user_connections;

  bool operator==(const UserConfig&) const = default;
};

struct ListenConfig {
  std::string unix_socket_dir = "/run/sluice";
  int port = 6432;
  std::optional<std::string> tcp;  // "host:port"

  bool operator==(const ListenConfig&) const = default;
};

struct ControlConfig {
  std::string socket = "/run/sluice/control.sock";
  std::optional<std::string> group;  // members may use the socket (mode 0660)

  bool operator==(const ControlConfig&) const = default;
};

struct TeardownConfig {
  int sla_ms = 5;      // budget for one release
  int max_ms = 10000;  // hard deadline: past it the server connection is discarded

  bool operator==(const TeardownConfig&) const = default;
};

struct DrainConfig {
  int timeout_s = 30;

  bool operator==(const DrainConfig&) const = default;
};

struct AuthConfig {
  AuthType type = AuthType::trust;
  bool type_written = false;            // TCP clients get trust only when the config asks for it by name
  std::optional<std::string> file;      // auth.file, as written
  std::optional<std::string> hba_file;  // auth.hba_file, as written
  // auth.query runs as auth.user for roles auth.file does not list (frontend/secret_lookup.h).
  std::optional<std::string> user;
  // PgBouncer's of old, with its newer rule: an expired password (VALID UNTIL) is no password.
  std::string query =
      "SELECT usename, CASE WHEN valuntil < pg_catalog.now() THEN NULL ELSE passwd END FROM pg_shadow "
      "WHERE usename=$1";
  int cache_s = 60;  // how long a looked-up secret (or its absence) is reused; 0 = every login asks
  // Their contents, read by load_config_file (config/auth_files.h): immutable, shared by the workers.
  std::shared_ptr<const auth::AuthFile> secrets;
  std::shared_ptr<const auth::HbaRules> hba;

  bool operator==(const AuthConfig&) const = default;
};

struct LimitsConfig {
  int max_client_conn = 1000;
  int startup_packet_max = 10000;       // bytes, as PostgreSQL's MAX_STARTUP_PACKET_LENGTH
  int message_max = 256 * 1024 * 1024;  // bytes, any one protocol message
  int login_timeout_ms = 10000;         // to finish the startup handshake
  int control_request_max = 65536;      // bytes, one control-socket request line

  bool operator==(const LimitsConfig&) const = default;
};

struct MetricsConfig {
  std::optional<std::string> listen;  // "host:port" or a Unix socket path; off when absent

  bool operator==(const MetricsConfig&) const = default;
};

struct DiagnosticsConfig {
  int slow_callback_ms = 100;

  bool operator==(const DiagnosticsConfig&) const = default;
};

struct Config {
  ListenConfig listen;
  ControlConfig control;
  PoolSettings pool;  // defaults for every database
  std::map<std::string, DatabaseConfig> databases;
  std::map<std::string, UserConfig> users;
  TeardownConfig teardown;
  DrainConfig drain;
  AuthConfig auth;
  TlsConfig tls;
  LimitsConfig limits;
  DiagnosticsConfig diagnostics;
  MetricsConfig metrics;
  int workers = 1;                 // event loops, each on its own thread when more than one
  std::string log_level = "info";  // "debug" | "info" | "warning" | "error"

  bool operator==(const Config&) const = default;
};

}  // namespace sluice::config
