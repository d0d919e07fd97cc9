// Scraping sluiced's /metrics in the integration tests: raw HTTP over a Unix socket or TCP, and
// every answer parsed by prometheus_client's strict parser (tests/metrics/parse_metrics.py).
#pragma once

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace harness {

struct HttpAnswer {
  int status = 0;  // 0: no status line came back
  std::string head;
  std::string body;
};

// Connects to `address` (a path with a '/' is a Unix socket, else "host:port"), sends `request`
// and reads until the server closes. Throws if it cannot connect.
HttpAnswer http_exchange(const std::string& address, const std::string& request,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));
HttpAnswer http_get(const std::string& address, const std::string& path = "/metrics",
                    const std::string& extra_headers = "");

// The default config with metrics.listen on <dir>/metrics.sock (or `listen` when given).
SluicedConfig metrics_config(const PoolOptions& options = {}, const std::string& listen = "");
std::string metrics_socket(const Sluiced& sluiced);  // <dir>/metrics.sock

// One scrape, parsed strictly: each sample by name, with its labels.
class Metrics {
 public:
  struct Sample {
    std::map<std::string, std::string> labels;
    double value = 0;
  };
  // Throws (with the parser's message) when the text does not parse.
  static Metrics parse(const std::string& text, bool openmetrics = false);

  // The value of the one sample `name` whose labels include `labels`; throws when none or several.
  [[nodiscard]] double value(const std::string& name,
                             const std::map<std::string, std::string>& labels = {}) const;
  // Same, or `otherwise` when there is none.
  [[nodiscard]] double value_or(const std::string& name, const std::map<std::string, std::string>& labels,
                                double otherwise) const;
  [[nodiscard]] bool has_sample(const std::string& name) const { return samples_.contains(name); }
  [[nodiscard]] const std::map<std::string, std::string>& families() const { return families_; }
  [[nodiscard]] const std::vector<Sample>& samples(const std::string& name) const;

 private:
  std::map<std::string, std::vector<Sample>> samples_;
  std::map<std::string, std::string> families_;  // name -> type, as the parser names them
};

// GET /metrics from `address`, expecting 200, parsed.
Metrics scrape(const std::string& address, bool openmetrics = false);

}  // namespace harness
