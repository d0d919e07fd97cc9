// `sluiced --check -c FILE` and `sluiced --version`, run as a user would run them: the exit status
// and what lands on stdout and stderr. A broken file must be named with its line and its key.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace harness {
namespace {

struct Outcome {
  int exit_code = -1;  // -1: did not exit normally
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs sluiced with `args`, stdout and stderr captured; fails the test if it does not finish.
Outcome run_sluiced(const std::vector<std::string>& args) {
  const TempDir dir("sluice-check");
  const std::string out_path = dir.path() + "/stdout";
  const std::string err_path = dir.path() + "/stderr";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::vector<std::string> argv_strings{SLUICED_PATH};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(argv_strings.size() + 1);
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, SLUICED_PATH, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) throw std::runtime_error("posix_spawn " + std::string(SLUICED_PATH) + " failed");

  int status = 0;
  const bool exited =
      wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; }, std::chrono::seconds(10));
  if (!exited) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    ADD_FAILURE() << "sluiced did not finish within 10 s; stderr:\n" << slurp(err_path);
  }
  Outcome run;
  run.exit_code = exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = slurp(out_path);
  run.err = slurp(err_path);
  return run;
}

// A config file in a directory of its own.
class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text) : dir_("sluice-check"), path_(dir_.path() + "/sluiced.json") {
    std::ofstream out(path_);
    out << text;
  }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] Outcome check() const { return run_sluiced({"--check", "-c", path_}); }

 private:
  TempDir dir_;
  std::string path_;
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(PoolerCheckTest, ValidConfigWithCommentsPasses) {
  const ConfigFile file(R"(// sluiced configuration: every section, with comments
{
  "listen": {"unix_socket_dir": "/tmp/sluice-check-socket", "port": 6432},  /* a block comment */
  "control": {"socket": "/tmp/sluice-check-socket/control.sock"},
  "pool": {"query_wait_timeout_ms": 5000, "reset_query": "DISCARD ALL"},
  "databases": {
    // missing user and dbname mean the client's
    "app": {"conninfo": "host=/tmp port=5432", "pool_size": 5, "pool_mode": "session"},
    "reports": {"conninfo": "host=/tmp port=5432 dbname=analytics", "pool_mode": "transaction"}
  },
  "teardown": {"sla_ms": 5},
  "drain": {"timeout_s": 10},
  "auth": {"type": "peer"},
  "limits": {"max_client_conn": 100, "login_timeout_ms": 2000}
}
)");
  const Outcome run = file.check();
  EXPECT_EQ(run.exit_code, 0) << "stderr: " << run.err;
  EXPECT_TRUE(run.err.empty()) << run.err;
  EXPECT_FALSE(std::filesystem::exists("/tmp/sluice-check-socket/.s.PGSQL.6432"))
      << "--check started listening";
}

TEST(PoolerCheckTest, MinimalConfigPasses) {
  const ConfigFile file(R"({"databases": {"app": {"conninfo": ""}}})");
  const Outcome run = file.check();
  EXPECT_EQ(run.exit_code, 0) << "stderr: " << run.err;
}

struct BrokenCase {
  const char* name;
  const char* text;
  std::vector<std::string> expected;  // all in stderr, after "FILE:LINE: "
};

class PoolerCheckBrokenTest : public ::testing::TestWithParam<BrokenCase> {};

TEST_P(PoolerCheckBrokenTest, ExitsNonZeroNamingTheLineAndKey) {
  const BrokenCase& broken = GetParam();
  const ConfigFile file(broken.text);
  const Outcome run = file.check();
  EXPECT_NE(run.exit_code, 0) << "a broken config passed --check";
  EXPECT_NE(run.exit_code, -1) << "sluiced did not exit normally";
  EXPECT_TRUE(contains(run.err, file.path() + ":3:")) << "stderr does not name line 3 of the file:\n"
                                                      << run.err;
  for (const std::string& part : broken.expected)
    EXPECT_TRUE(contains(run.err, part)) << part << " not in:\n" << run.err;
}

INSTANTIATE_TEST_SUITE_P(Pooler, PoolerCheckBrokenTest,
                         ::testing::Values(BrokenCase{"syntax_error_trailing_comma",
                                                      "{\n"
                                                      "  \"listen\": {\"port\": 6432},\n"
                                                      "  \"pool\": {\"pool_size\": 5,},\n"
                                                      "  \"databases\": {}\n"
                                                      "}\n",
                                                      {"syntax error"}},
                                           BrokenCase{"syntax_error_missing_colon",
                                                      "{\n"
                                                      "  // a comment line\n"
                                                      "  \"listen\" {\"port\": 6432}\n"
                                                      "}\n",
                                                      {"syntax error"}},
                                           BrokenCase{"unknown_key",
                                                      "{\n"
                                                      "  \"listen\": {\n"
                                                      "    \"prot\": 6432\n"
                                                      "  }\n"
                                                      "}\n",
                                                      {"listen.prot", "unknown key"}},
                                           BrokenCase{"unknown_section",
                                                      "{\n"
                                                      "  \"listen\": {\"port\": 6432},\n"
                                                      "  \"pools\": {\"pool_size\": 5}\n"
                                                      "}\n",
                                                      {"'pools'", "unknown key"}},
                                           BrokenCase{"wrong_type_string_for_integer",
                                                      "{\n"
                                                      "  \"listen\": {\n"
                                                      "    \"port\": \"6432\"\n"
                                                      "  }\n"
                                                      "}\n",
                                                      {"listen.port", "expected an integer"}},
                                           BrokenCase{"wrong_type_integer_for_string",
                                                      "{\n"
                                                      "  \"databases\": {\n"
                                                      "    \"app\": {\"conninfo\": 5432}\n"
                                                      "  }\n"
                                                      "}\n",
                                                      {"databases.app.conninfo", "expected a string"}},
                                           BrokenCase{"bad_conninfo",
                                                      "{\n"
                                                      "  \"databases\": {\n"
                                                      "    \"app\": {\"conninfo\": \"host\"}\n"
                                                      "  }\n"
                                                      "}\n",
                                                      {"databases.app.conninfo", "conninfo"}},
                                           BrokenCase{"bad_conninfo_unknown_keyword",
                                                      "{\n"
                                                      "  \"databases\": {\n"
                                                      "    \"app\": {\"conninfo\": \"hots=/tmp\"}\n"
                                                      "  }\n"
                                                      "}\n",
                                                      {"databases.app.conninfo", "hots"}},
                                           BrokenCase{"bad_pool_mode",
                                                      "{\n"
                                                      "  \"databases\": {\"app\": {\"conninfo\": \"\",\n"
                                                      "    \"pool_mode\": \"statement\"}}\n"
                                                      "}\n",
                                                      {"databases.app.pool_mode", "statement"}},
                                           BrokenCase{"port_out_of_range",
                                                      "{\n"
                                                      "  \"listen\": {\n"
                                                      "    \"port\": 70000\n"
                                                      "  }\n"
                                                      "}\n",
                                                      {"listen.port", "70000"}},
                                           BrokenCase{"bad_auth_type",
                                                      "{\n"
                                                      "  \"auth\": {\n"
                                                      "    \"type\": \"ldap\"\n"
                                                      "  }\n"
                                                      "}\n",
                                                      {"auth.type", "ldap"}},
                                           BrokenCase{"negative_pool_size",
                                                      "{\n"
                                                      "  \"databases\": {\"app\": {\"conninfo\": \"\",\n"
                                                      "    \"pool_size\": 0}}\n"
                                                      "}\n",
                                                      {"databases.app.pool_size"}},
                                           BrokenCase{"missing_conninfo",
                                                      "{\n"
                                                      "  \"databases\": {\n"
                                                      "    \"app\": {\"pool_size\": 3}\n"
                                                      "  }\n"
                                                      "}\n",
                                                      {"databases.app", "conninfo"}},
                                           BrokenCase{"top_level_not_an_object_member_type",
                                                      "{\n"
                                                      "  \"listen\": {\"port\": 6432},\n"
                                                      "  \"limits\": [1, 2]\n"
                                                      "}\n",
                                                      {"limits", "expected an object"}}),
                         [](const ::testing::TestParamInfo<BrokenCase>& param_info) {
                           return std::string(param_info.param.name);
                         });

TEST(PoolerCheckTest, MissingFileIsReported) {
  const TempDir dir("sluice-check");
  const std::string path = dir.path() + "/absent.json";
  const Outcome run = run_sluiced({"--check", "-c", path});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.exit_code, -1);
  EXPECT_TRUE(contains(run.err, path)) << run.err;
}

TEST(PoolerCheckTest, CheckWithoutAConfigFileFails) {
  const Outcome run = run_sluiced({"--check"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.exit_code, -1);
  EXPECT_FALSE(run.err.empty());
}

TEST(PoolerCheckTest, VersionPrintsAVersion) {
  const Outcome run = run_sluiced({"--version"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(std::regex_search(run.out, std::regex(R"(^sluiced [0-9]+\.[0-9]+(\.[0-9]+)?)"))) << run.out;
}

}  // namespace
}  // namespace harness
