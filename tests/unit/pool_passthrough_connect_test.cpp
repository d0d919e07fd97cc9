// Where a SCRAM pass-through login connects and what its StartupMessage carries, read from the
// pool's connect keywords as libpq would.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <string>
#include <vector>

#include "pool/passthrough_connect.h"

namespace sluice::pool {
namespace {

struct Params {
  std::vector<std::string> keywords;
  std::vector<std::string> values;
  Params& add(std::string keyword, std::string value) {
    keywords.push_back(std::move(keyword));
    values.push_back(std::move(value));
    return *this;
  }
};

TEST(PoolPassthroughConnect, SocketDirectoryAndPortMakeTheSocketPath) {
  const auto target = passthrough_address(Params().add("host", "/run/pg").add("port", "6543").keywords,
                                          Params().add("host", "/run/pg").add("port", "6543").values);
  ASSERT_TRUE(target) << target.error();
  EXPECT_EQ(target->description, "/run/pg/.s.PGSQL.6543");
  const auto* address = reinterpret_cast<const sockaddr_un*>(&target->address);
  EXPECT_EQ(address->sun_family, AF_UNIX);
  EXPECT_STREQ(address->sun_path, "/run/pg/.s.PGSQL.6543");
}

TEST(PoolPassthroughConnect, HostaddrWinsOverTheResolvedHost) {
  Params params;
  params.add("host", "db.example").add("port", "5433").add("hostaddr", "10.1.2.3");
  const auto target = passthrough_address(params.keywords, params.values);
  ASSERT_TRUE(target) << target.error();
  EXPECT_EQ(target->description, "10.1.2.3:5433");
  const auto* address = reinterpret_cast<const sockaddr_in*>(&target->address);
  EXPECT_EQ(address->sin_family, AF_INET);
  EXPECT_EQ(ntohs(address->sin_port), 5433);

  Params v6;
  v6.add("host", "::1");
  const auto loopback = passthrough_address(v6.keywords, v6.values);
  ASSERT_TRUE(loopback) << loopback.error();
  EXPECT_EQ(loopback->address.ss_family, AF_INET6);
}

TEST(PoolPassthroughConnect, SeveralHostsOrABadPortAreRefused) {
  Params hosts;
  hosts.add("host", "/a,/b");
  const auto several = passthrough_address(hosts.keywords, hosts.values);
  ASSERT_FALSE(several);
  EXPECT_EQ(several.error(), "SCRAM pass-through connects to one host; the conninfo lists several");
  Params port;
  port.add("host", "127.0.0.1").add("port", "70000");
  EXPECT_FALSE(passthrough_address(port.keywords, port.values));
}

TEST(PoolPassthroughConnect, StartupCarriesWhatLibpqWouldSend) {
  Params params;
  params.add("host", "/run/pg")
      .add("user", "app")
      .add("dbname", "shop")
      .add("application_name", "web")
      .add("options", "-c work_mem=8MB")
      .add("client_encoding", "UTF8");
  EXPECT_EQ(passthrough_startup(params.keywords, params.values),
            (StartupParameters{{"user", "app"},
                               {"database", "shop"},
                               {"options", "-c work_mem=8MB"},
                               {"application_name", "web"},
                               {"client_encoding", "UTF8"}}));
}

TEST(PoolPassthroughConnect, ConninfosThatListHostsKeepLibpqWhateverTheirTls) {
  Params hosts;
  hosts.add("host", "/a,/b");
  EXPECT_FALSE(passthrough_allowed(hosts.keywords, hosts.values)) << "several hosts";
  for (const char* mode : {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}) {
    Params params;
    params.add("sslmode", mode);
    EXPECT_TRUE(passthrough_allowed(params.keywords, params.values)) << mode;
  }
  // GSSAPI encryption is libpq's alone: demanded, the pool keeps libpq's login rather than go without.
  Params gss;
  gss.add("gssencmode", "require");
  EXPECT_FALSE(passthrough_allowed(gss.keywords, gss.values));
}

// A TLS value libpq refuses (from the environment: the config loader checks the conninfo's) refuses
// the connect, as libpq's does — never a plain-text login in its place.
TEST(PoolPassthroughConnect, AValueLibpqRefusesRefusesTheConnect) {
  Params invalid;
  invalid.add("sslmode", "verify_full");
  Params tcp;
  tcp.add("hostaddr", "127.0.0.1").add("port", "1");
  const auto address = passthrough_address(tcp.keywords, tcp.values);
  ASSERT_TRUE(address.ok());
  uv_loop_t loop;
  uv_loop_init(&loop);
  const auto started = PassthroughConnect::start(
      &loop, *address,
      config::ServerTlsContext::load(config::ServerTlsSettings::read(invalid.keywords, invalid.values)),
      ServerLogin({}, auth::ScramKeys{}), [](const std::string&) {});
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error(), "invalid sslmode value: \"verify_full\"");
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

// TLS checks and names the conninfo's host, never its hostaddr; a socket has none.
TEST(PoolPassthroughConnect, TheHostNameIsTheConninfosHost) {
  Params named;
  named.add("host", "db.example").add("hostaddr", "10.1.2.3");
  EXPECT_EQ(passthrough_address(named.keywords, named.values)->host_name, "db.example");
  Params ip;
  ip.add("host", "127.0.0.1");
  EXPECT_EQ(passthrough_address(ip.keywords, ip.values)->host_name, "127.0.0.1");
  Params only_hostaddr;
  only_hostaddr.add("hostaddr", "10.1.2.3");
  EXPECT_EQ(passthrough_address(only_hostaddr.keywords, only_hostaddr.values)->host_name, "");
  Params socket;
  socket.add("host", "/run/pg");
  EXPECT_EQ(passthrough_address(socket.keywords, socket.values)->host_name, "");
}

}  // namespace
}  // namespace sluice::pool
