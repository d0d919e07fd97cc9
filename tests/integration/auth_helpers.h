// Helpers shared by the authentication tests (auth_*_test.cpp).
#pragma once

#include <string>

namespace authtest {

// Writes `text` to a temporary name and renames it into place: a reload never reads half a file.
void write_file(const std::string& path, const std::string& text);

// Until 127.0.0.1:`port` accepts: sluiced opens its TCP listener just after the Unix socket the
// harness waits for.
void wait_for_tcp(int port);

// libpq's message for a login `conninfo` is refused with; "" when it logged in.
std::string refusal(const std::string& conninfo);

bool contains(const std::string& text, const std::string& part);

// Makes `role` (LOGIN) in the test's PostgreSQL with `password` stored as `encryption`
// ("scram-sha-256" or "md5"), or changes its password if it exists.
void set_role(const std::string& role, const std::string& password, const std::string& encryption);
// Puts `line` first in the test PostgreSQL's pg_hba.conf and reloads it (once per line and binary).
// Callers await its effect: PostgreSQL applies a reload a moment later.
void prepend_hba_line(const std::string& line);
// Its auth.file line, its secret copied from pg_authid as the README says: "role" "secret".
std::string auth_file_line(const std::string& role);

}  // namespace authtest
