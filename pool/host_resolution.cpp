#include "pool/host_resolution.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <memory>

namespace sluice::pool {
namespace {

std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> items;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = list.find(',', start);
    items.push_back(list.substr(start, comma - start));
    if (comma == std::string::npos) return items;
    start = comma + 1;
  }
}

bool is_ip_literal(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 || inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

bool is_name(const std::string& host) {
  return !host.empty() && host.front() != '/' && host.front() != '@' && !is_ip_literal(host);
}

// One lookup batch: answers when every name has been tried.
struct Batch {
  std::vector<std::string> hosts;
  std::vector<std::string> addresses;
  std::size_t pending = 0;
  std::string error;
  std::function<void(Result<std::string>)> done;

  void finish_one() {
    if (--pending > 0) return;
    if (!error.empty()) return done(fail(error));
    std::string list;
    for (std::size_t i = 0; i < addresses.size(); ++i) list += (i > 0 ? "," : "") + addresses[i];
    done(list);
  }
};

struct Lookup {
  uv_getaddrinfo_t request{};
  std::shared_ptr<Batch> batch;
  std::size_t index = 0;
};

}  // namespace

std::vector<std::string> hosts_needing_resolution(const std::vector<std::string>& keywords,
                                                  const std::vector<std::string>& values) {
  std::string host;
  for (std::size_t i = 0; i < keywords.size(); ++i) {
    if (keywords[i] == "hostaddr" && !values[i].empty()) return {};
    if (keywords[i] == "host") host = values[i];
  }
  std::vector<std::string> hosts = split_list(host);
  for (const auto& item : hosts) {
    if (is_name(item)) return hosts;
  }
  return {};
}

void resolve_hostaddrs(uv_loop_t* loop, std::vector<std::string> hosts,
                       std::function<void(Result<std::string>)> done) {
  auto batch = std::make_shared<Batch>();
  batch->addresses.resize(hosts.size());
  batch->done = std::move(done);
  batch->hosts = std::move(hosts);
  batch->pending = 1;  // held until every lookup is started
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  for (std::size_t i = 0; i < batch->hosts.size(); ++i) {
    if (!is_name(batch->hosts[i])) continue;
    auto* lookup = new Lookup{{}, batch, i};
    ++batch->pending;
    const int rc = uv_getaddrinfo(
        loop, &lookup->request,
        [](uv_getaddrinfo_t* request, int status, addrinfo* result) {
          std::unique_ptr<Lookup> owned(reinterpret_cast<Lookup*>(request));
          Batch& b = *owned->batch;
          if (status != 0 || result == nullptr) {
            b.error = "could not translate host name \"" + b.hosts[owned->index] +
                      "\" to address: " + uv_strerror(status);
          } else {
            char text[INET6_ADDRSTRLEN] = {};
            uv_ip_name(result->ai_addr, text, sizeof text);
            b.addresses[owned->index] = text;
          }
          uv_freeaddrinfo(result);
          b.finish_one();
        },
        batch->hosts[i].c_str(), nullptr, &hints);
    if (rc != 0) {
      delete lookup;
      batch->error = "could not resolve \"" + batch->hosts[i] + "\": " + uv_strerror(rc);
      --batch->pending;
    }
  }
  batch->finish_one();
}

}  // namespace sluice::pool
