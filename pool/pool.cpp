#include "pool/pool.h"

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <optional>
#include <utility>

#include "common/ascii.h"
#include "common/log.h"
#include "net/turn_clock.h"
#include "protocol/backend_messages.h"
#include "protocol/error_fields.h"
#include "protocol/sqlstate.h"

namespace sluice::pool {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The conninfo's own keywords, then the client's user and database where the
// conninfo names none (DESIGN §7).
void build_connect_params(const std::string& conninfo, const PoolKey& key, std::vector<std::string>& keywords,
                          std::vector<std::string>& values) {
  keywords.clear();
  values.clear();
  bool has_user = false;
  bool has_dbname = false;
  if (PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), nullptr)) {
    for (PQconninfoOption* option = options; option->keyword != nullptr; ++option) {
      if (option->val == nullptr) continue;
      keywords.emplace_back(option->keyword);
      values.emplace_back(option->val);
      has_user = has_user || keywords.back() == "user";
      has_dbname = has_dbname || keywords.back() == "dbname";
    }
    PQconninfoFree(options);
  }
  if (!has_user) {
    keywords.emplace_back("user");
    values.push_back(key.user);
  }
  if (!has_dbname) {
    keywords.emplace_back("dbname");
    values.push_back(key.database);
  }
  // The operator's own `options` come first: a client's setting of the same name wins, as the
  // later -c does in PostgreSQL.
  std::string options;
  for (std::size_t i = 0; i < keywords.size(); ++i) {
    if (keywords[i] != "options") continue;
    options = values[i];
    keywords.erase(keywords.begin() + static_cast<std::ptrdiff_t>(i));
    values.erase(values.begin() + static_cast<std::ptrdiff_t>(i));
    break;
  }
  // The client's startup settings. application_name and client_encoding go as
  // libpq's own keywords: the packet's parameters win over `options` in
  // PostgreSQL, and libpq may send these two from its environment. No fallback
  // application_name: a client that sets none sees none, as directly.
  protocol::StartupSettings in_options;
  for (const auto& [name, value] : key.settings) {
    if (name == "application_name" || name == "client_encoding") {
      keywords.push_back(name);
      values.push_back(value);
    } else {
      in_options.emplace_back(name, value);
    }
  }
  if (!in_options.empty()) {
    if (!options.empty()) options += ' ';
    options += protocol::options_string(in_options);
  }
  if (!options.empty()) {
    keywords.emplace_back("options");
    values.push_back(std::move(options));
  }
}

// Back to the pool's baseline: the login role and the startup settings the
// servers were opened with (RESET ALL returns to those, as PostgreSQL's RESET does).
constexpr std::string_view kSessionReset = "SET SESSION AUTHORIZATION DEFAULT; RESET ALL";
// A pinned session's end: everything a session can hold, SQL prepared statements and sluiced's
// own included (the server's statement cache starts over).
constexpr std::string_view kPinnedReset = "DISCARD ALL";
// Transaction mode without a statement router reads no SQL, so every release also drops the
// backend state a client may have left; its named statements stay, as in PgBouncer.
constexpr std::string_view kUnreadSessionReset =
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; "
    "SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";
// Waiter nodes kept for reuse: enough for a burst of clients, little memory kept (a 40-byte node,
// about 48 with malloc's overhead).
constexpr std::size_t kSpareWaiters = 1024;

// libpq's text spans lines (a DETAIL, a hint, LOCATION): a client message and a log record are one line.
std::string one_line(std::string_view text) {
  std::string line;
  for (const char c : text) {
    const bool space = c == '\n' || c == '\t' || c == ' ';
    if (space && (line.empty() || line.back() == ' ')) continue;
    line.push_back(space ? ' ' : c);
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

// libpq (or SCRAM pass-through, in its words) refusing the server's TLS as the conninfo asks for it (a
// certificate that does not verify or name the host, a missing root certificate or key file, no TLS
// offered, a handshake OpenSSL refused for its versions, an encryption sluiced cannot carry): a
// direct connection fails at once, and retrying would not change it. A handshake cut short (a
// restarting server: "unexpected eof", "connection closed") is retried as any refused connect.
bool tls_setup_refused(std::string_view libpq_text) {
  constexpr std::array<std::string_view, 11> kRefusals = {
      "certificate",
      "private key file",
      "server does not support SSL, but SSL was required",
      "alert",
      "unsupported protocol",
      "no protocols available",
      "wrong version number",
      "host name must be specified for a verified SSL connection",
      "invalid sslmode value",
      "invalid channel_binding value",
      "GSSAPI encryption to the server is not supported"};
  return std::ranges::any_of(kRefusals, [&](std::string_view refusal) {
    return libpq_text.find(refusal) != std::string_view::npos;
  });
}

std::string describe(const ServerConnection& server) {
  return "server " + std::to_string(server.id()) + " (backend pid " + std::to_string(server.backend_pid()) +
         ")";
}

}  // namespace

Pool::Pool(PoolContext& context, PoolKey key, config::DatabaseConfig database,
           std::shared_ptr<ServerBudget> budget)
    : context_(context),
      key_(std::move(key)),
      name_(key_.name()),
      database_(std::move(database)),
      budget_(std::move(budget)),
      seats_(context_.counts->join(key_.database, key_.user)),
      conninfo_user_(conninfo_user(database_.conninfo)) {
  build_connect_params(database_.conninfo, key_, connect_keywords_, connect_values_);
  passthrough_possible_ = may_pass_through();
  budget_->join(this);
  context_.pools.push_back(this);
}

Pool::~Pool() {
  budget_->servers -= total_servers();
  for (std::size_t i = total_servers(); i > 0; --i) give_back_places();
  for (std::size_t i = departing_.size(); i > 0; --i) free_departed_places();
  set_starved_on(nullptr);
  context_.counts->leave(key_.database, key_.user);
  budget_->leave(this);
  std::erase(context_.pools, this);
  for (List* list : {&connecting_, &idle_, &active_, &resetting_, &closing_}) {
    for (auto& server : *list) server->close_connection();
  }
}

std::size_t Pool::base_size_limit() const {
  return static_cast<std::size_t>(std::max(1, database_.pool.pool_size));
}

std::size_t Pool::size_limit() const {
  return base_size_limit() + (reserve_open_ ? static_cast<std::size_t>(database_.pool.reserve_pool_size) : 0);
}

// Its part of pool_size beside its siblings: in proportion to its clients (at
// least one while it has any). A pool under its share may take a sibling's idle
// server, a pool over it gives one up. Clients, not the moment's waiters, set
// the shares: two busy settings sets then keep their servers instead of trading
// them back and forth, a new PostgreSQL session each time.
std::size_t Pool::fair_share() const {
  std::size_t clients = 0;
  for (const Pool* pool : budget_->pools) clients += pool->clients_;
  if (clients_ == 0) return 0;
  return std::max<std::size_t>(1, size_limit() * clients_ / clients);
}

// A pool with no server at all may always have one: progress before fairness.
bool Pool::wants_sibling_server() const { return total_servers() < fair_share() || total_servers() == 0; }

bool Pool::can_spare_server_for(const Pool& taker) const {
  return !idle_.empty() && (total_servers() > fair_share() || taker.total_servers() == 0);
}

bool Pool::take_idle_from_sibling() {
  if (!wants_sibling_server()) return false;
  Pool* donor = nullptr;
  for (Pool* sibling : budget_->pools) {
    if (sibling == this || !sibling->can_spare_server_for(*this)) continue;
    // The one idle longest: its clients are the least likely to want it back soon.
    if (donor == nullptr || sibling->idle_.front()->state_since() < donor->idle_.front()->state_since()) {
      donor = sibling;
    }
  }
  if (donor == nullptr) return false;
  donor->close_server(*donor->idle_.front(), "its place is needed by clients with other startup settings");
  return true;
}

// After a failure (which may come before connect() returns) one connect probes at a time,
// once per server_login_retry_ms: a refusing server is not asked once per waiter.
bool Pool::can_launch_now() const {
  if (paused_ || total_servers() >= size_limit()) return false;
  return !connect_failure_ || (connecting_.empty() && Clock::now() >= next_connect_at_);
}

void Pool::give_idle_to_sibling() {
  if (budget_->servers < size_limit()) return;
  for (Pool* sibling : budget_->pools) {
    if (sibling == this || sibling->waiters_.size() <= sibling->connecting_.size() ||
        !sibling->wants_sibling_server() || !can_spare_server_for(*sibling) || !sibling->can_launch_now()) {
      continue;
    }
    close_server(*idle_.front(), "its place is needed by clients with other startup settings");
    return sibling->launch_connections();
  }
}

void Pool::update(config::DatabaseConfig database) {
  const bool target_changed = database.conninfo != database_.conninfo;
  database_ = std::move(database);
  close_idle_over_size();
  give_owed_places();
  if (!target_changed) return;
  conninfo_user_ = conninfo_user(database_.conninfo);
  build_connect_params(database_.conninfo, key_, connect_keywords_, connect_values_);
  passthrough_possible_ = may_pass_through();
  // Servers point at the old target: the idle ones go now, the busy ones at release (a new
  // generation), and the first new one tells the welcome's parameters (another server may run
  // another version, encoding or time zone).
  close_idle("conninfo changed on reload");
  ++target_generation_;
  parameter_statuses_.reset();
}

Pool::List& Pool::list_for(ServerState state) {
  switch (state) {
    case ServerState::connecting:
      return connecting_;
    case ServerState::idle:
      return idle_;
    case ServerState::active:
      return active_;
    case ServerState::resetting:
      return resetting_;
    case ServerState::closing:
      return closing_;
  }
  return closing_;
}

const Pool::List& Pool::list_for(ServerState state) const {
  return const_cast<Pool*>(this)->list_for(state);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
}

std::size_t Pool::total_servers() const {
  return connecting_.size() + idle_.size() + active_.size() + resetting_.size();
}

std::optional<Pool::Clock::time_point> Pool::oldest_wait() const {
  if (waiters_.empty()) return std::nullopt;
  return waiters_.front().since;
}

// The one place a server changes state: it moves between the state lists.
void Pool::transition(ServerConnection& server, ServerState next) {
  List& from = list_for(server.state_);
  List& to = list_for(next);
  to.splice(to.end(), from, server.position_);
  server.state_ = next;
  server.state_since_ = net::turn_clock::now();
}

void Pool::close_server(ServerConnection& server, std::string_view reason) {
  if (server.state_ == ServerState::closing) return;
  log::info("pool ", name_, ": closing ", describe(server), " because: ", reason);
  // Copied before the goodbye closes it: a limit's places wait for the backend to go. Not a server
  // still connecting: its socket may lead to no backend yet (a connect to an unreachable host would
  // hold them for nothing).
  const int socket_copy = limited() && server.state_ != ServerState::connecting ? server.copy_socket() : -1;
  server.close_connection();
  forget_server(server, socket_copy);
}

void Pool::forget_server(ServerConnection& server, int socket_copy) {
  --budget_->servers;
  if (socket_copy >= 0) {
    hold_places(describe(server), socket_copy);
  } else {
    give_back_places();
  }
  transition(server, ServerState::closing);
  // Freed on the next loop turn: a callback of this server may be on the stack.
  context_.deleter->defer(std::move(*server.position_));
  closing_.erase(server.position_);
}

std::optional<Pool::WaitTicket> Pool::acquire(ScopeWaiter& waiter, std::uint64_t client_id) {
  if (!idle_.empty() && waiters_.empty() && !paused_ && !due_for_check(*idle_.back())) {
    ServerConnection& server = *idle_.back();
    transition(server, ServerState::active);
    context_.stats->scope_started();
    waiter.on_scope_granted(Scope(*this, server, client_id));
    return std::nullopt;
  }
  const auto ticket = enqueue_waiter({&waiter, client_id, net::turn_clock::now()});
  if (!idle_.empty() && !paused_ && waiters_.size() == 1) start_check(*idle_.back());
  launch_connections();
  return ticket;
}

Pool::WaitTicket Pool::enqueue_waiter(const Waiter& waiter) {
  if (spare_waiters_.empty()) return waiters_.insert(waiters_.end(), waiter);
  waiters_.splice(waiters_.end(), spare_waiters_, spare_waiters_.begin());
  waiters_.back() = waiter;
  return std::prev(waiters_.end());
}

void Pool::retire_waiter(WaitTicket ticket) {
  if (spare_waiters_.size() >= kSpareWaiters) {
    waiters_.erase(ticket);
  } else {
    spare_waiters_.splice(spare_waiters_.end(), waiters_, ticket);
  }
}

void Pool::launch_connections() {
  // A server under its check serves the next waiter, most likely: no connection for that one.
  while (waiters_.size() > connecting_.size() + checks_in_flight_ && can_launch_now()) {
    if (budget_->servers >= size_limit() && !take_idle_from_sibling()) return;
    if (!open_server()) return;
  }
}

bool Pool::open_server() {
  if (!take_places()) return false;
  if (total_servers() >= base_size_limit()) ++limit_counts_.reserve_servers_opened;
  ++budget_->servers;
  auto owned =
      std::make_unique<ServerConnection>(*this, context_.server_ids->fetch_add(1, std::memory_order_relaxed));
  ServerConnection& server = *owned;
  connecting_.push_back(std::move(owned));
  server.position_ = std::prev(connecting_.end());
  server.state_ = ServerState::connecting;
  server.target_generation_ = target_generation_;
  log::debug("pool ", name_, ": opening server ", server.id());
  const std::uint64_t failures_before = metrics_.connects_failed;
  server.connect(connect_keywords_, connect_values_, passthrough_keys());
  // It failed before connect() returned (a refused socket): the next try waits for
  // server_login_retry_ms, even when that is 0 — then for the janitor's next turn.
  return metrics_.connects_failed == failures_before;
}

void Pool::learn_parameters(const ServerConnection& server) {
  if (parameter_statuses_ || server.target_generation_ != target_generation_) return;
  std::string encoded;
  protocol::append_parameter_statuses(encoded, server.parameters());
  parameter_statuses_ = std::move(encoded);
}

void Pool::set_paused(bool paused) {
  paused_ = paused;
  if (!paused_) serve_waiters();
}

void Pool::serve_waiters() {
  if (paused_) return;
  if (limited()) [[unlikely]]
    give_owed_places();
  while (!waiters_.empty() && !idle_.empty()) {
    ServerConnection& server = *idle_.back();
    if (due_for_check(server)) {
      start_check(server);
      continue;
    }
    const Waiter waiter = waiters_.front();
    retire_waiter(waiters_.begin());
    transition(server, ServerState::active);
    metrics_.wait.record(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(server.state_since_ - waiter.since).count()));
    context_.stats->scope_started();
    waiter.waiter->on_scope_granted(Scope(*this, server, waiter.client_id));
  }
  launch_connections();
  if (!waiters_.empty()) return;
  stop_starving();
  give_idle_to_sibling();
}

void Pool::fail_waiters(const char* sqlstate, const std::string& message) {
  std::list<Waiter> failed;
  failed.swap(waiters_);
  for (const Waiter& waiter : failed) waiter.waiter->on_scope_failed(sqlstate, message);
}

bool Pool::return_to_idle(ServerConnection& server) {
  server.detach();
  return return_detached_to_idle(server);
}

// The idle-list invariant (DESIGN §1) is checked here, on the only way in;
// false when the guard closed the server instead.
bool Pool::return_detached_to_idle(ServerConnection& server) {
  if (server.target_generation_ != target_generation_) [[unlikely]] {
    close_server(server, "conninfo changed on reload");
    return false;
  }
  if (!server.idle_clean() || !server.scanner_.at_boundary() || server.has_pending_output() ||
      server.cancel_pending()) {
    close_server(server, "not clean at release (invariant guard)");
    return false;
  }
  server.session_changed_ = false;  // reset on the way here when it was set
  server.functions_changed_ = false;
  server.carries_client_settings_ = false;
  server.note_holds_backend_state(false);  // proven empty on the way here when it may have held some
  server.set_reading(true);                // an idle server that speaks or hangs up is closed
  transition(server, ServerState::idle);
  close_idle_over_size();  // a clean release all the same: the pool was shrunk on reload
  return true;
}

void Pool::close_idle_over_size() {
  while (budget_->servers > size_limit() && !idle_.empty())
    close_server(*idle_.front(), "above pool_size (lowered on reload, or a reserve server no longer needed)");
}

void Pool::connect_succeeded(ServerConnection& server) {
  log::debug("pool ", name_, ": ", describe(server), " connected");
  metrics_.connect.record(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - server.created_at()).count()));
  connect_failure_.reset();
  learn_parameters(server);
  if (setting_functions_due()) return read_setting_functions_on(server);
  if (return_to_idle(server)) return serve_waiters();
  launch_connections();  // it was closed (opened for a conninfo reloaded since): another one
}

// Only where a statement router reads the clients' SQL: elsewhere every release resets anyway.
bool Pool::setting_functions_due() const {
  return watches_functions() && setting_functions_.due(Clock::now());
}

bool Pool::watches_functions() const {
  return database_.pool.pool_mode == config::PoolMode::transaction &&
         database_.pool.max_prepared_statements > 0;
}

// After a transaction that made, changed or dropped a function the read rides along with its reset
// (its client, which waits for its settings, carries on with the new names). Out of the common
// release's way.
[[gnu::cold]] void Pool::functions_changed_at_release(TeardownPlan& plan, bool server_kept) {
  setting_functions_.mark_stale();
  if (!server_kept || !setting_functions_due()) return;
  plan.read_setting_functions = true;
  setting_functions_.read_started();
}

void Pool::read_setting_functions_on(ServerConnection& server) {
  TeardownPlan plan;
  plan.started_at = Clock::now();
  plan.reason = "reading which functions may change settings";
  plan.read_setting_functions = true;
  plan.upkeep = true;
  setting_functions_.read_started();
  transition(server, ServerState::resetting);
  server.begin_teardown(std::move(plan));
}

// PostgreSQL's own refusal (libpq's verbose text carries its SQLSTATE), or a
// socket-level failure. Refusals that pass — too many clients, starting up,
// shutting down, in recovery, a refused socket — are worth waiting out.
void Pool::connect_failed(ServerConnection& server, const std::string& reason) {
  ConnectFailure failure;
  std::string close_reason;
  if (const auto error = protocol::find_verbose_error(reason)) {
    const std::string_view error_class = std::string_view(error->sqlstate).substr(0, 2);
    failure = {error->sqlstate, error->message,
               error_class == "08" || error_class == "53" || error_class == "57"};
    close_reason = "connect failed: " + error->describe();
  } else {
    failure = {sqlstate::kConnectionFailure, "could not connect to server: " + one_line(reason),
               !tls_setup_refused(reason)};
    close_reason = "connect failed: " + one_line(reason);
  }
  passthrough_connect_failed(server, reason, failure);
  close_server(server, close_reason);
  failure.at = Clock::now();
  next_connect_at_ = failure.at + milliseconds(database_.pool.server_login_retry_ms);
  connect_failure_ = failure;
  ++metrics_.connects_failed;
  // A refusal a direct connection would get at once (a bad password, no such
  // database) is told now when nothing else can serve the waiters; a passing
  // one is retried while they wait, up to query_wait_timeout_ms.
  const bool nothing_else = connecting_.empty() && active_.empty() && resetting_.empty() && idle_.empty();
  if (!failure.transient && nothing_else) fail_waiters(failure.sqlstate.c_str(), failure.message);
}

void Pool::server_lost(ServerConnection& server, const std::string& reason) {
  if (server.state_ == ServerState::resetting) {
    return finish_teardown(server, ScopeOutcome::discard, server.plan_.reason + "; then " + reason);
  }
  if (server.state_ == ServerState::active) context_.stats->scope_ended();
  close_server(server, reason);
  launch_connections();
}

void Pool::end_scope(ServerConnection& server, std::uint64_t client_id, std::string_view reason,
                     bool client_mid_message, bool force_discard) {
  const auto started_at = Clock::now();
  context_.stats->scope_ended();
  const bool own_query_only = server.busy_with_own_query();
  server.detach();
  const bool session_mode = database_.pool.pool_mode == config::PoolMode::session;
  // Session mode resets every session; transaction mode a server whose client may have changed
  // session state or had its settings put on it, or all of them when no statement router reads
  // the client's SQL.
  const bool needs_reset = session_mode || server.session_changed() || server.carries_client_settings() ||
                           server.capture_ || !server.tracks_statements() || server.may_hold_backend_state();
  force_discard = force_discard || server.library_loaded();  // no reset undoes LOAD

  // The common case, once per transaction: clean and nothing to run. No plan, no allocation.
  if (!force_discard && !client_mid_message && server.idle_clean() && !needs_reset &&
      !server.cancel_pending()) {
    const bool idle = return_detached_to_idle(server);
    record_release(idle ? ScopeOutcome::clean : ScopeOutcome::discard, started_at, client_id,
                   idle ? reason : "closed at release (its close is logged with the reason)");
    return serve_waiters();
  }

  TeardownPlan plan;
  plan.started_at = started_at;
  plan.client_id = client_id;
  plan.reason = std::string(reason);
  if (server.library_loaded()) plan.reason += "; a library was loaded (LOAD), which no reset undoes";
  if (needs_reset) plan.reset_query = reset_query_for(session_mode);
  if (!session_mode && server.may_hold_backend_state()) {
    plan.reset_query = kPinnedReset;
    server.statements().start_new_generation();
  } else if (!session_mode && !server.tracks_statements()) {
    plan.reset_query = kUnreadSessionReset;
  }
  plan.prove_no_backend_state = session_mode || server.may_hold_backend_state();
  plan.capture = std::move(server.capture_);
  // Proven where sluiced cannot know what the reset undoes: a client's own SETs, a whole session.
  // Settings sluiced restored itself are undone by the reset alone (its reply proves it ran).
  plan.prove_reset = needs_reset && (session_mode || plan.capture != nullptr || server.session_changed());
  if (server.functions_changed()) functions_changed_at_release(plan, !force_discard && !client_mid_message);
  if (force_discard || client_mid_message) {
    if (client_mid_message) plan.reason += " (client stopped mid-message)";
    server.plan_ = std::move(plan);
    return finish_teardown(server, ScopeOutcome::discard, server.plan_.reason);
  }
  if (server.busy() && !own_query_only) {
    plan.outcome = ScopeOutcome::cancel;
    plan.send_cancel = true;
  } else if (server.transaction_status() != 'I') {
    plan.outcome = ScopeOutcome::rollback;
  } else {
    // Reused only once the client's own cancel has reached the server, so it cannot stop the next query.
    plan.outcome = server.cancel_pending() ? ScopeOutcome::cancel : ScopeOutcome::clean;
  }
  transition(server, ServerState::resetting);
  server.begin_teardown(std::move(plan));
}

// Session mode runs reset_query too; DISCARD ALL already covers the settings.
std::string Pool::reset_query_for(bool session_mode) const {
  const std::string& configured = database_.pool.reset_query;
  if (!session_mode || configured.empty()) return std::string(kSessionReset);
  const std::string lowered = ascii_lowered(configured);
  if (lowered == "discard all" || lowered == "discard all;") return configured;
  return std::string(kSessionReset) + "; " + configured;
}

void Pool::teardown_finished(ServerConnection& server, bool ok, const std::string& reason) {
  const ScopeOutcome outcome = ok ? server.plan_.outcome : ScopeOutcome::discard;
  finish_teardown(server, outcome, ok ? server.plan_.reason : server.plan_.reason + "; then " + reason);
}

// Ends a teardown: idle again (or closed), timed up to that moment and
// counted, and only then handed to the next waiter.
void Pool::finish_teardown(ServerConnection& server, ScopeOutcome outcome, const std::string& reason) {
  const auto started_at = server.plan_.started_at;
  const std::uint64_t client_id = server.plan_.client_id;
  const auto capture = std::move(server.plan_.capture);
  auto captured = std::move(server.captured_settings_);
  // Known before the client that made a function carries on (it waits for its capture).
  if (server.plan_.read_setting_functions) {
    auto read = std::exchange(server.setting_functions_read_, std::nullopt);
    setting_functions_.read_finished(
        read ? std::move(*read)
             : Result<SettingFunctions>(
                   fail("its server's teardown failed before the reply was read: " + reason)),
        Clock::now());
  }
  const bool upkeep = server.plan_.upkeep;
  if (server.plan_.server_check) check_finished(outcome);
  std::string why = reason;
  if (outcome == ScopeOutcome::discard) {
    close_server(server, reason);
  } else if (!return_to_idle(server)) {
    outcome = ScopeOutcome::discard;
    why += "; then not clean at release";
  }
  if (!upkeep) record_release(outcome, started_at, client_id, why);
  serve_waiters();
  // Last: the client may ask for a server at once.
  if (capture && capture->receiver != nullptr)
    capture->receiver->on_settings_captured(std::move(captured), why);
}

void Pool::record_release(ScopeOutcome outcome, Clock::time_point started_at, std::uint64_t client_id,
                          std::string_view reason) {
  const auto duration = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started_at);
  context_.stats->record(outcome, duration, name_, client_id, reason);
  if (log::enabled(log::Level::debug)) {
    log::debug("pool ", name_, ": scope of client ", client_id, " ended ", outcome_name(outcome), " in ",
               duration.count() / 1000, " us: ", reason);
  }
}

void Pool::close_idle(std::string_view reason) {
  while (!idle_.empty()) close_server(*idle_.front(), reason);
}

void Pool::tick(Clock::time_point now) {
  const auto& settings = database_.pool;
  janitor_now_ = now;
  update_reserve(now);
  if (settings.query_wait_timeout_ms > 0 && !paused_) {
    const auto limit = milliseconds(settings.query_wait_timeout_ms);
    while (!waiters_.empty() && now - waiters_.front().since >= limit) {
      const Waiter waiter = waiters_.front();
      retire_waiter(waiters_.begin());
      // Connects kept failing meanwhile: PostgreSQL's own words say more than the timeout.
      if (connect_failure_ && connect_failure_->at >= waiter.since) {
        waiter.waiter->on_scope_failed(connect_failure_->sqlstate.c_str(), connect_failure_->message);
        continue;
      }
      waiter.waiter->on_scope_failed(sqlstate::kProtocolViolation,
                                     "query_wait_timeout: no server connection available in pool \"" + name_ +
                                         "\" within " + std::to_string(settings.query_wait_timeout_ms) +
                                         " ms");
    }
  }
  const auto connect_limit = milliseconds(settings.server_connect_timeout_ms);
  while (settings.server_connect_timeout_ms > 0 && !connecting_.empty() &&
         now - connecting_.front()->created_at() >= connect_limit) {
    connect_failed(
        *connecting_.front(),
        "server_connect_timeout (" + std::to_string(settings.server_connect_timeout_ms) + " ms) passed");
  }
  const auto teardown_limit = milliseconds(context_.teardown_max_ms);
  while (!resetting_.empty() && now - resetting_.front()->state_since() >= teardown_limit) {
    finish_teardown(*resetting_.front(), ScopeOutcome::discard,
                    resetting_.front()->plan_.reason + "; then teardown.max_ms passed");
  }
  // Retire idle servers only: one in use is never touched. Idle ones within min_pool_size stay;
  // old ones go all the same (keep_warm opens their successors).
  for (auto it = idle_.begin(); it != idle_.end();) {
    ServerConnection& server = **it++;
    if (settings.server_idle_timeout_s > 0 && total_servers() > min_size() &&
        now - server.state_since() >= seconds(settings.server_idle_timeout_s)) {
      close_server(server, "server_idle_timeout");
    } else if (settings.server_lifetime_s > 0 &&
               now - server.created_at() >= seconds(settings.server_lifetime_s)) {
      close_server(server, "server_lifetime");
    }
  }
  give_up_on_departures(now);
  if (!waiters_.empty()) launch_connections();
  if (waiters_.empty()) stop_starving();  // they timed out or left
  if (limited()) give_owed_places();
  keep_warm();
  // On the most recently used server: the least used ones keep aging towards server_idle_timeout_s.
  if (!paused_ && !idle_.empty() && setting_functions_due()) read_setting_functions_on(*idle_.back());
}

}  // namespace sluice::pool
