#include "frontend/secret_lookup.h"

#include "common/log.h"
#include "daemon/worker.h"
#include "pool/pool.h"
#include "protocol/backend_messages.h"

namespace sluice::frontend {
namespace {

// More (database, role) answers than this and the expired ones go; a flood of made-up names
// cannot grow the cache without bound.
constexpr std::size_t kMaxCached = 10000;

// An E'' literal in ASCII only: quotes and backslashes doubled, every other byte outside printable
// ASCII as \xNN. Whatever standard_conforming_strings says, and whatever client_encoding the lookup
// connection has: in SJIS or GBK a raw byte 0x95 would swallow the backslash after it.
std::string quoted_literal(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string literal = "E'";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\'' || c == '\\') {
      literal += c;
      literal += c;
    } else if (byte < 0x20 || byte >= 0x7f) {
      literal += "\\x";
      literal += kHex[byte >> 4];
      literal += kHex[byte & 0xf];
    } else {
      literal += c;
    }
  }
  return literal + "'";
}

// auth.query with every $1 standing for the role name.
std::string query_for(std::string_view query, std::string_view role) {
  std::string out;
  for (std::size_t at = 0; at < query.size();) {
    const std::size_t found = query.find("$1", at);
    if (found == std::string_view::npos) {
      out.append(query.substr(at));
      break;
    }
    out.append(query.substr(at, found - at)).append(quoted_literal(role));
    at = found + 2;
  }
  return out;
}

// The first row's second column (PgBouncer's shape: name, secret), or its only one.
LookedUpSecret read_answer(const std::optional<std::vector<protocol::QueryReply>>& replies,
                           const std::string& role) {
  if (!replies || replies->size() != 1) return {std::nullopt, "the auth.query reply could not be read", true};
  const protocol::QueryReply& reply = (*replies)[0];
  if (reply.error) return {std::nullopt, "auth.query failed: " + reply.error->describe(), true};
  if (reply.rows.empty() || reply.rows[0].empty())
    return {std::nullopt, "Role \"" + role + "\" was not found by auth.query.", false};
  const auto& row = reply.rows[0];
  const std::optional<std::string>& value = row.size() >= 2 ? row[1] : row[0];
  if (!value) return {std::nullopt, "User \"" + role + "\" has no password (auth.query).", false};
  auto secret = auth::parse_secret(*value);
  if (!secret) {
    return {std::nullopt,
            "User \"" + role +
                "\" has a password from auth.query that is neither a SCRAM verifier nor an md5 hash.",
            false};
  }
  return {std::move(secret), {}, false};
}

}  // namespace

class SecretLookup::Request {
 public:
  explicit Request(Done done) : done_(std::move(done)) {}
  void answer(const LookedUpSecret& found) const { done_(found); }

 private:
  Done done_;
};

// One role's lookup: a scope on the pool of (database, auth.user), one Query, the scope ended.
class SecretLookup::Query final : pool::ScopeWaiter, pool::ServerUser {
 public:
  Query(SecretLookup& owner, Key key) : owner_(owner), key_(std::move(key)) {}
  ~Query() {
    if (ticket_ && pool_ != nullptr) pool_->cancel_wait(*ticket_);
    if (scope_) scope_.end("auth.query lookup abandoned");
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  std::vector<std::weak_ptr<Request>> requests;

  void start() {
    const config::AuthConfig& auth = owner_.worker_.config().auth;
    pool_ = owner_.worker_.pool_for(key_.first, *auth.user, {});
    // No secret rather than a failure: the mock exchange answers as for an unknown role, so a client
    // that has not logged in cannot tell configured databases from others.
    if (pool_ == nullptr)
      return finish(
          {std::nullopt, "database \"" + key_.first + "\" is not configured for auth.query", false});
    query_.clear();
    protocol::append_query(query_, query_for(auth.query, key_.second));
    // The pool may grant or fail before acquire returns (both callbacks run inside it): only a
    // waiter still queued keeps its ticket, as ClientSession::ask_for_scope.
    const auto ticket = pool_->acquire(*this, 0);
    if (ticket && !scope_ && !finished_) ticket_ = ticket;
  }

 private:
  // pool::ScopeWaiter
  void on_scope_granted(pool::Scope scope) override {
    ticket_.reset();
    scope_ = std::move(scope);
    scope_.server().attach(this);
    if (!scope_.server().send_lookup_query(protocol::as_bytes(query_))) {
      scope_.discard("could not send auth.query");
      finish({std::nullopt, "could not send auth.query to the server", true});
    }
  }
  void on_scope_failed(const char* /*sqlstate*/, const std::string& message) override {
    ticket_.reset();
    finish({std::nullopt, "no server for auth.query: " + message, true});
  }
  // pool::ServerUser
  void on_server_data(protocol::Bytes /*bytes*/) override {}  // notices; the answer comes whole below
  void on_server_ready() override {}
  void on_server_answered() override {}  // the lookup's own query: not a client request to time
  void on_server_drained() override {}
  void on_server_backed_up() override {}
  void on_server_lost(const std::string& reason) override {
    scope_.discard(reason);
    finish({std::nullopt, "auth.query's server connection was lost: " + reason, true});
  }
  void on_own_query_done(std::optional<std::vector<protocol::QueryReply>> replies) override {
    const LookedUpSecret found = read_answer(replies, key_.second);
    if (found.failed) {
      scope_.discard(found.why_none);
    } else {
      scope_.end("auth.query answered");
    }
    finish(found);
  }

  // Hands the answer over; the owner frees this after the current callback.
  void finish(const LookedUpSecret& found) {
    finished_ = true;
    owner_.finished(key_, found);
  }

  SecretLookup& owner_;
  Key key_;
  pool::Pool* pool_ = nullptr;
  std::optional<pool::Pool::WaitTicket> ticket_;
  pool::Scope scope_;
  std::string query_;
  bool finished_ = false;
};

SecretLookup::SecretLookup(daemon::Worker& worker) : worker_(worker), deleter_(worker.loop()) {}

SecretLookup::~SecretLookup() { running_.clear(); }

SecretLookup::RequestPtr SecretLookup::find(const std::string& database, const std::string& user, Done done) {
  Key key{database, user};
  auto request = std::make_shared<Request>(std::move(done));
  if (const auto cached = cache_.find(key); cached != cache_.end()) {
    if (cached->second.expires_ms > uv_now(worker_.loop())) {
      request->answer(cached->second.found);
      return request;
    }
    cache_.erase(cached);
  }
  auto& query = running_[key];
  const bool first = query == nullptr;
  if (first) query = std::make_unique<Query>(*this, key);
  query->requests.push_back(request);
  if (first) query->start();  // may finish at once
  return request;
}

void SecretLookup::finished(const Key& key, const LookedUpSecret& found) {
  const auto it = running_.find(key);
  if (it == running_.end()) return;
  std::unique_ptr<Query> query = std::move(it->second);
  running_.erase(it);
  if (!found.failed) remember(key, found);
  if (found.failed)
    log::warning("auth.query for role \"", key.second, "\" in ", key.first, ": ", found.why_none);
  for (const auto& weak : query->requests) {
    if (const auto request = weak.lock()) request->answer(found);
  }
  deleter_.defer(std::move(query));
}

void SecretLookup::remember(const Key& key, const LookedUpSecret& found) {
  const int cache_s = worker_.config().auth.cache_s;
  if (cache_s == 0) return;
  const std::uint64_t now = uv_now(worker_.loop());
  if (cache_.size() >= kMaxCached) {
    std::erase_if(cache_, [now](const auto& entry) { return entry.second.expires_ms <= now; });
    if (cache_.size() >= kMaxCached) cache_.clear();
  }
  cache_[key] = Cached{found, now + static_cast<std::uint64_t>(cache_s) * 1000};
}

}  // namespace sluice::frontend
