// libpq resolves host names synchronously inside PQconnectStart; to keep the
// loop free, names are resolved first with uv_getaddrinfo (on libuv's thread
// pool) and handed to libpq as `hostaddr`, one element per `host` element.
#pragma once

#include <uv.h>

#include <functional>
#include <string>
#include <vector>

#include "common/result.h"

namespace sluice::pool {

// The `host` list when any element of it is a name to look up and no
// `hostaddr` is given; empty when libpq needs no lookup.
std::vector<std::string> hosts_needing_resolution(const std::vector<std::string>& keywords,
                                                  const std::vector<std::string>& values);

// Resolves every name in `hosts` (socket paths and IP literals pass through
// as empty elements) and calls `done` on the loop with the hostaddr list.
void resolve_hostaddrs(uv_loop_t* loop, std::vector<std::string> hosts,
                       std::function<void(Result<std::string>)> done);

}  // namespace sluice::pool
