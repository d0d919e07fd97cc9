#include "tests/integration/metrics_scrape.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <stdexcept>

namespace harness {
namespace {

int connect_to(const std::string& address) {
  if (address.find('/') != std::string::npos) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, address.c_str(), sizeof un.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&un), sizeof un) != 0) {
      ::close(fd);
      throw std::runtime_error("cannot connect to " + address + ": " + std::strerror(errno));
    }
    return fd;
  }
  const std::size_t colon = address.rfind(':');
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
  ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &in.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&in), sizeof in) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot connect to " + address + ": " + std::strerror(errno));
  }
  return fd;
}

}  // namespace

HttpAnswer http_exchange(const std::string& address, const std::string& request,
                         std::chrono::milliseconds timeout) {
  const int fd = connect_to(address);
  std::size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close early (an oversized request): read its answer
    sent += static_cast<std::size_t>(n);
  }
  std::string received;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buffer[16384];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    received.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  HttpAnswer answer;
  const std::size_t head_end = received.find("\r\n\r\n");
  answer.head = received.substr(0, head_end);
  if (head_end != std::string::npos) answer.body = received.substr(head_end + 4);
  if (received.rfind("HTTP/1.1 ", 0) == 0) answer.status = std::stoi(received.substr(9, 3));
  return answer;
}

HttpAnswer http_get(const std::string& address, const std::string& path, const std::string& extra_headers) {
  return http_exchange(address, "GET " + path + " HTTP/1.1\r\nHost: sluiced\r\n" + extra_headers + "\r\n");
}

SluicedConfig metrics_config(const PoolOptions& options, const std::string& listen) {
  SluicedConfig config = default_config(options);
  auto json = nlohmann::json::parse(config.text);
  json["metrics"]["listen"] = listen.empty() ? config.dir.path() + "/metrics.sock" : listen;
  config.text = json.dump(2) + "\n";
  return config;
}

std::string metrics_socket(const Sluiced& sluiced) { return sluiced.socket_dir() + "/metrics.sock"; }

Metrics Metrics::parse(const std::string& text, bool openmetrics) {
  const TempDir dir("sluice-metrics");
  const std::string path = dir.path() + "/metrics.txt";
  std::ofstream(path) << text;
  std::vector<std::string> argv = {"/usr/bin/python3", SLUICE_SOURCE_DIR "/tests/metrics/parse_metrics.py",
                                   path};
  if (openmetrics) argv.emplace_back("--openmetrics");
  const Captured run = run_capture(argv, std::chrono::seconds(30));
  if (!run.succeeded()) throw std::runtime_error("parse_metrics.py: " + run.describe() + ": " + run.err);
  const auto parsed = nlohmann::json::parse(run.out);
  Metrics metrics;
  for (const auto& [name, type] : parsed["families"].items())
    metrics.families_[name] = type.get<std::string>();
  for (const auto& row : parsed["samples"]) {
    Sample sample;
    for (const auto& [key, value] : row[1].items()) sample.labels[key] = value.get<std::string>();
    sample.value = row[2].get<double>();
    metrics.samples_[row[0].get<std::string>()].push_back(std::move(sample));
  }
  return metrics;
}

const std::vector<Metrics::Sample>& Metrics::samples(const std::string& name) const {
  static const std::vector<Sample> none;
  const auto found = samples_.find(name);
  return found == samples_.end() ? none : found->second;
}

double Metrics::value_or(const std::string& name, const std::map<std::string, std::string>& labels,
                         double otherwise) const {
  const Sample* match = nullptr;
  for (const auto& sample : samples(name)) {
    bool matches = true;
    for (const auto& [key, value] : labels) {
      const auto found = sample.labels.find(key);
      matches = matches && found != sample.labels.end() && found->second == value;
    }
    if (!matches) continue;
    if (match != nullptr) throw std::runtime_error("several samples " + name + " match the labels");
    match = &sample;
  }
  return match != nullptr ? match->value : otherwise;
}

double Metrics::value(const std::string& name, const std::map<std::string, std::string>& labels) const {
  std::string wanted;
  for (const auto& [key, value] : labels) wanted += key + "=" + value + " ";
  const double missing = -1e300;
  const double found = value_or(name, labels, missing);
  if (found == missing) throw std::runtime_error("no sample " + name + " { " + wanted + "}");
  return found;
}

Metrics scrape(const std::string& address, bool openmetrics) {
  const HttpAnswer answer = http_get(
      address, "/metrics", openmetrics ? "Accept: application/openmetrics-text; version=1.0.0\r\n" : "");
  if (answer.status != 200) throw std::runtime_error("GET /metrics: status " + std::to_string(answer.status));
  return Metrics::parse(answer.body, openmetrics);
}

}  // namespace harness
