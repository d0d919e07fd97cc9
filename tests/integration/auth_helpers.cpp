#include "tests/integration/auth_helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "tests/integration/harness.h"

namespace authtest {

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path + ".tmp");
  out << text;
  out.close();
  if (!out || std::rename((path + ".tmp").c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot write " + path);
  }
}

void wait_for_tcp(int port) {
  const bool up = harness::wait_until([port] {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool accepted = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    ::close(fd);
    return accepted;
  });
  if (!up) throw std::runtime_error("nothing listens on 127.0.0.1:" + std::to_string(port));
}

std::string refusal(const std::string& conninfo) {
  const harness::PgConn conn = harness::try_connect(conninfo);
  return PQstatus(conn.get()) == CONNECTION_OK ? "" : PQerrorMessage(conn.get());
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void set_role(const std::string& role, const std::string& password, const std::string& encryption) {
  const harness::PgConn admin = harness::connect(harness::postgres().conninfo());
  harness::exec_ok(admin, "SET password_encryption = '" + encryption + "'");
  const bool exists =
      harness::scalar(admin, "SELECT count(*) FROM pg_roles WHERE rolname = '" + role + "'") == "1";
  harness::exec_ok(admin, std::string(exists ? "ALTER" : "CREATE") + " ROLE " + role + " LOGIN PASSWORD '" +
                              password + "'");
}

void prepend_hba_line(const std::string& line) {
  static std::set<std::string> added;
  if (!added.insert(line).second) return;
  const std::string hba = harness::postgres().socket_dir() + "/data/pg_hba.conf";
  std::ifstream in(hba);
  std::stringstream old;
  old << in.rdbuf();
  write_file(hba, line + "\n" + old.str());
  harness::exec_ok(harness::connect(harness::postgres().conninfo()), "SELECT pg_reload_conf()");
}

std::string auth_file_line(const std::string& role) {
  const harness::PgConn admin = harness::connect(harness::postgres().conninfo());
  return "\"" + role + "\" \"" +
         harness::scalar(admin, "SELECT rolpassword FROM pg_authid WHERE rolname = '" + role + "'") + "\"\n";
}

}  // namespace authtest
