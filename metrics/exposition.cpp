#include "metrics/exposition.h"

#include <charconv>
#include <utility>
#include <vector>

namespace sluice::metrics {
namespace {

enum class Type { counter, gauge, histogram, info };

using Labels = std::vector<std::pair<std::string_view, std::string>>;

std::string_view type_name(Type type) {
  switch (type) {
    case Type::counter:
      return "counter";
    case Type::gauge:
      return "gauge";
    case Type::histogram:
      return "histogram";
    case Type::info:
      return "info";
  }
  return "gauge";
}

// Bytes from [0] that form one well-formed UTF-8 character (RFC 3629: no overlong forms, no
// surrogates, nothing past U+10FFFF), or 0.
std::size_t utf8_length(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return 1;
  std::size_t length = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  if (text.size() < length || byte(1) < low || byte(1) > high) return 0;
  for (std::size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return length;
}

// A label value (or OpenMetrics' HELP text): backslash, quote and newline escaped, and bytes that are
// not UTF-8 — a role or database name is whatever a client's startup packet said — replaced by
// U+FFFD, since one invalid byte makes Prometheus refuse the whole scrape.
void append_escaped(std::string& out, std::string_view value, bool escape_quotes = true) {
  while (!value.empty()) {
    const char c = value.front();
    const std::size_t length = utf8_length(value);
    if (length == 0) {
      out += "\xEF\xBF\xBD";
      value.remove_prefix(1);
      continue;
    }
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"' && escape_quotes) {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.append(value.substr(0, length));
    }
    value.remove_prefix(length);
  }
}

std::string double_text(double value) {
  char buffer[32];
  const auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return error == std::errc() ? std::string(buffer, end) : std::string("NaN");
}

// Writes one family after another. Counters and info metrics are named
// without their suffix: the two formats differ in where it goes.
class Writer {
 public:
  explicit Writer(Format format) : format_(format) {}

  void family(std::string_view name, Type type, std::string_view help) {
    name_ = name;
    type_ = type;
    sample_name_ = name_;
    if (type == Type::counter) sample_name_ += "_total";
    if (type == Type::info) sample_name_ += "_info";
    // The Prometheus text format names a counter's family by its sample, and has no info type.
    const bool om = format_ == Format::openmetrics;
    const std::string& family_name = om ? name_ : sample_name_;
    const std::string_view shown_type = !om && type == Type::info ? "gauge" : type_name(type);
    out_ += "# HELP " + family_name + " ";
    append_escaped(out_, help, /*escape_quotes=*/om);  // OpenMetrics escapes quotes in HELP too
    out_ += "\n";
    out_ += "# TYPE " + family_name + " " + std::string(shown_type) + "\n";
  }

  void value(const Labels& labels, std::uint64_t value) { line(sample_name_, labels, std::to_string(value)); }
  void value(const Labels& labels, double value) { line(sample_name_, labels, double_text(value)); }
  void value(const Labels& labels, int value) { line(sample_name_, labels, std::to_string(value)); }

  void histogram(Labels labels, const LatencyHistogram& histogram) {
    static const auto bounds = bucket_bounds_ns();
    std::array<std::uint64_t, kBoundCount> counts{};
    histogram.cumulative_counts(bounds, counts);
    labels.emplace_back("le", "");
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      labels.back().second = nanos_as_seconds(bounds[i]);
      line(name_ + "_bucket", labels, std::to_string(counts[i]));
    }
    labels.back().second = "+Inf";
    line(name_ + "_bucket", labels, std::to_string(histogram.count()));
    labels.pop_back();
    line(name_ + "_sum", labels, nanos_as_seconds(histogram.sum()));
    line(name_ + "_count", labels, std::to_string(histogram.count()));
  }

  std::string finish() {
    if (format_ == Format::openmetrics) out_ += "# EOF\n";
    return std::move(out_);
  }

 private:
  void line(const std::string& name, const Labels& labels, const std::string& value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      for (std::size_t i = 0; i < labels.size(); ++i) {
        if (i > 0) out_ += ',';
        out_ += labels[i].first;
        out_ += "=\"";
        append_escaped(out_, labels[i].second);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }

  Format format_;
  std::string out_;
  std::string name_;
  std::string sample_name_;
  Type type_ = Type::gauge;
};

Labels pool_labels(const PoolSample& pool) { return {{"database", pool.database}, {"user", pool.user}}; }

Labels with(Labels labels, std::string_view name, std::string value) {
  labels.emplace_back(name, std::move(value));
  return labels;
}

void service(Writer& w, const Snapshot& s) {
  w.family("sluice_build", Type::info, "sluiced's version.");
  w.value({{"version", s.version}}, 1);
  w.family("sluice_start_time_seconds", Type::gauge, "When sluiced started, in Unix time.");
  w.value({}, s.start_time_seconds);
  w.family("sluice_state", Type::gauge, "The service state: 1 for the current one (README \"Drain\").");
  for (const char* state : {"running", "paused", "draining", "drained", "stopped"}) {
    w.value({{"state", state}}, s.state == state ? 1 : 0);
  }
  w.family("sluice_drain_forced_scopes", Type::gauge,
           "Scopes the current or last drain cut at its deadline (cancelled or rolled back).");
  w.value({}, s.drain_forced_scopes);
  w.family("sluice_config_reloads", Type::counter, "Configuration reloads, by result.");
  w.value({{"result", "ok"}}, s.reloads.ok);
  w.value({{"result", "failed"}}, s.reloads.failed);
  w.family("sluice_config_last_reload_success", Type::gauge,
           "1 when the last reload was applied, 0 when it was rejected; absent before the first.");
  if (s.reloads.last_ok) w.value({}, *s.reloads.last_ok ? 1 : 0);
  w.family("sluice_config_last_reload_timestamp_seconds", Type::gauge,
           "When the last reload finished, in Unix time; absent before the first.");
  if (s.reloads.last_ok) w.value({}, s.reloads.last_at_seconds);
}

struct PoolHistogram {
  std::string_view name;
  std::string_view help;
  LatencyHistogram PoolMetrics::*histogram;
};
constexpr PoolHistogram kPoolHistograms[] = {
    {"sluice_client_wait_seconds",
     "Time clients queued for a server (acquisitions that did not get one at once).", &PoolMetrics::wait},
    {"sluice_query_duration_seconds",
     "A client's request until all it sent is answered, as the client sees it through sluiced.",
     &PoolMetrics::query},
    {"sluice_transaction_duration_seconds",
     "A client's first request until ReadyForQuery 'I', as the client sees it through sluiced.",
     &PoolMetrics::transaction},
    {"sluice_server_connect_duration_seconds",
     "Server connections opened: from the start (host lookup included) until ready.", &PoolMetrics::connect},
};

void pools(Writer& w, const Snapshot& s) {
  w.family("sluice_clients", Type::gauge,
           "Logged-in clients by state: active holds a server, waiting is queued.");
  for (const auto& p : s.pools) {
    if (p.departed) continue;
    w.value(with(pool_labels(p), "state", "active"), p.clients_active);
    w.value(with(pool_labels(p), "state", "idle"), p.clients_idle);
    w.value(with(pool_labels(p), "state", "waiting"), p.clients_waiting);
  }
  w.family(
      "sluice_clients_pinned", Type::gauge,
      "Clients that keep their server between transactions (README \"State that cannot move: pinning\").");
  for (const auto& p : s.pools) {
    if (!p.departed) w.value(pool_labels(p), p.clients_pinned);
  }
  w.family("sluice_servers", Type::gauge, "Server connections by state.");
  for (const auto& p : s.pools) {
    if (p.departed) continue;
    w.value(with(pool_labels(p), "state", "active"), p.servers_active);
    w.value(with(pool_labels(p), "state", "idle"), p.servers_idle);
    w.value(with(pool_labels(p), "state", "connecting"), p.servers_connecting);
    w.value(with(pool_labels(p), "state", "resetting"), p.servers_resetting);
    w.value(with(pool_labels(p), "state", "departing"), p.servers_departing);
  }
  w.family("sluice_pool_size", Type::gauge, "The configured pool_size: servers the pool may open.");
  for (const auto& p : s.pools) {
    if (!p.departed) w.value(pool_labels(p), p.pool_size);
  }
  w.family("sluice_prepared_statements", Type::gauge, "Named prepared statements the pool tracks.");
  for (const auto& p : s.pools) {
    if (!p.departed) w.value(pool_labels(p), p.prepared_statements);
  }
  for (const auto& [name, help, histogram] : kPoolHistograms) {
    w.family(name, Type::histogram, help);
    for (const auto& p : s.pools) w.histogram(pool_labels(p), p.metrics.*histogram);
  }
  w.family("sluice_server_connects", Type::counter, "Server connection attempts, by result.");
  for (const auto& p : s.pools) {
    w.value(with(pool_labels(p), "result", "ok"), p.metrics.connect.count());
    w.value(with(pool_labels(p), "result", "failed"), p.metrics.connects_failed);
  }
  w.family("sluice_client_received_bytes", Type::counter, "Bytes received from logged-in clients.");
  for (const auto& p : s.pools) w.value(pool_labels(p), p.metrics.client_bytes_received);
  w.family("sluice_client_sent_bytes", Type::counter, "Bytes of server replies sent to clients.");
  for (const auto& p : s.pools) w.value(pool_labels(p), p.metrics.client_bytes_sent);
}

void clients(Writer& w, const Snapshot& s) {
  w.family("sluice_client_logins", Type::counter, "Client logins, by result.");
  for (std::size_t i = 0; i < kLoginResultCount; ++i) {
    const auto result = static_cast<LoginResult>(i);
    w.value({{"result", std::string(login_result_name(result))}}, s.clients.logins(result));
  }
  w.family("sluice_client_errors", Type::counter,
           "ErrorResponses sent to clients (sluiced's and PostgreSQL's), by SQLSTATE class.");
  for (const auto& [error_class, count] : s.clients.errors()) w.value({{"class", error_class}}, count);
}

void teardown(Writer& w, const Snapshot& s) {
  w.family("sluice_teardown_duration_seconds", Type::histogram,
           "Scope releases: scope end until the server is back idle or closed, by outcome.");
  for (const auto outcome : pool::kAllScopeOutcomes) {
    w.histogram({{"outcome", std::string(pool::outcome_name(outcome))}}, s.teardown.histogram(outcome));
  }
  w.family("sluice_teardown_sla_violations", Type::counter,
           "Releases that took longer than teardown.sla_ms.");
  for (const auto outcome : pool::kAllScopeOutcomes) {
    w.value({{"outcome", std::string(pool::outcome_name(outcome))}}, s.teardown.violations(outcome));
  }
  w.family("sluice_teardown_sla_seconds", Type::gauge, "teardown.sla_ms, the budget for one release.");
  w.value({}, s.teardown_sla_seconds);
}

void loops(Writer& w, const Snapshot& s) {
  w.family("sluice_loop_lag_seconds", Type::histogram,
           "How late each worker loop's 250 ms timer fired: time the loop was busy elsewhere.");
  for (const auto& worker : s.workers)
    w.histogram({{"worker", std::to_string(worker.index)}}, worker.loop_lag);
  w.family("sluice_loop_slow_callbacks", Type::counter,
           "Loop turns that held the loop longer than diagnostics.slow_callback_ms.");
  for (const auto& worker : s.workers)
    w.value({{"worker", std::to_string(worker.index)}}, worker.slow_callbacks);
  w.family("sluice_clients_logging_in", Type::gauge, "Clients in the startup handshake or login.");
  for (const auto& worker : s.workers) {
    w.value({{"worker", std::to_string(worker.index)}}, worker.clients_logging_in);
  }
}

}  // namespace

Format format_for_accept(std::string_view accept) {
  return accept.find("application/openmetrics-text") != std::string_view::npos ? Format::openmetrics
                                                                               : Format::prometheus;
}

std::string_view content_type(Format format) {
  return format == Format::openmetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                       : "text/plain; version=0.0.4; charset=utf-8";
}

std::array<std::uint64_t, kBoundCount> bucket_bounds_ns() {
  std::array<std::uint64_t, kBoundCount> bounds{};
  for (int i = 0; i < kBoundCount; ++i)
    bounds[static_cast<std::size_t>(i)] = std::uint64_t{1} << (kFirstBoundExponent + i);
  return bounds;
}

std::string nanos_as_seconds(std::uint64_t nanos) {
  std::string text = std::to_string(nanos / 1000000000);
  std::string fraction = std::to_string(nanos % 1000000000);
  fraction.insert(0, 9 - fraction.size(), '0');
  while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
  if (!fraction.empty()) text += "." + fraction;
  return text;
}

std::string render(const Snapshot& snapshot, Format format) {
  Writer writer(format);
  service(writer, snapshot);
  pools(writer, snapshot);
  clients(writer, snapshot);
  teardown(writer, snapshot);
  loops(writer, snapshot);
  return writer.finish();
}

}  // namespace sluice::metrics
