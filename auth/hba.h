// auth.hba_file: the part of PostgreSQL's pg_hba.conf syntax that applies to a pooler, as
// PgBouncer reads it (its src/hba.c). Lines: connection type (local, host, hostssl, hostnossl),
// databases, users, an address for the host types (CIDR, address and mask, or "all"), a method
// (trust, reject, peer, md5, scram-sha-256, cert). Names are comma lists, "all", or (databases)
// "sameuser"; a quoted name is a name, never a keyword. First match wins.
//
// Not supported, and refused with the line: +group membership (would need the server's
// catalog), @file inclusions, samerole/samegroup, replication, host names, samehost/samenet,
// options after the method (map=, clientcert=, ...).
#pragma once

#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "auth/auth_file.h"
#include "common/result.h"

namespace sluice::auth {

enum class HbaConnection { local, host, hostssl, hostnossl };
enum class HbaMethod { trust, reject, peer, md5, scram_sha_256, cert };
std::string_view hba_method_name(HbaMethod method);

struct HbaNames {
  bool all = false;
  bool sameuser = false;  // databases only: the database named as the user
  std::set<std::string, std::less<>> names;
};

struct HbaAddress {
  bool all = false;
  int family = 0;  // AF_INET or AF_INET6
  std::array<std::uint8_t, 16> address{};
  std::array<std::uint8_t, 16> mask{};
};

struct HbaRule {
  int line = 0;
  HbaConnection connection = HbaConnection::local;
  HbaNames databases;
  HbaNames users;
  HbaAddress address;  // host types only
  HbaMethod method = HbaMethod::reject;
};

// Who is connecting: over the Unix socket, or from an address (4 or 16 bytes), on TLS or not.
struct HbaClient {
  bool local = true;
  bool tls = false;
  int family = 0;
  std::array<std::uint8_t, 16> address{};
  std::string_view database;
  std::string_view user;
};

struct HbaRules {
  std::vector<HbaRule> rules;

  // The first rule that matches, or nullptr.
  [[nodiscard]] const HbaRule* match(const HbaClient& client) const;
};

Result<HbaRules, FileError> parse_hba(std::string_view text);

}  // namespace sluice::auth
