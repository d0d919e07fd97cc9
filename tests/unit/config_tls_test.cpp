// The `tls` section: schema, the files it names (loaded and checked when the config is), and the
// tls-server-end-point hash SCRAM's channel binding will use.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "config/config_loader.h"
#include "config/tls_context.h"

namespace sluice::config {
namespace {

class ConfigTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char pattern[] = "/tmp/sluice-tls-unit.XXXXXX";
    dir_ = mkdtemp(pattern);
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    run("openssl req -x509" + ec + " -keyout " + dir_ + "/ca.key -out " + dir_ +
        "/ca.crt -subj /CN=ca -days 2");
    for (const std::string digest : {"sha256", "sha384"}) {
      run("openssl req" + ec + " -keyout " + dir_ + "/" + digest + ".key -out " + dir_ + "/" + digest +
          ".csr -subj /CN=localhost");
      run("openssl x509 -req -" + digest + " -in " + dir_ + "/" + digest + ".csr -CA " + dir_ +
          "/ca.crt -CAkey " + dir_ + "/ca.key -set_serial 1 -days 2 -out " + dir_ + "/" + digest + ".crt");
    }
  }
  static void TearDownTestSuite() { std::system(("rm -rf " + dir_).c_str()); }

  static void run(const std::string& command) {
    ASSERT_EQ(std::system((command + " >/dev/null 2>&1").c_str()), 0) << command;
  }
  static std::string path(const std::string& name) { return dir_ + "/" + name; }

  // A config whose tls section stands on lines 2-8, one key a line.
  static std::string config(const std::string& mode, const std::string& cert, const std::string& key,
                            const std::string& extra = "") {
    return "{\n  \"tls\": {\n    \"mode\": \"" + mode + "\",\n    \"cert_file\": \"" + cert +
           "\",\n    \"key_file\": \"" + key + "\"" + extra + "\n  }\n}";
  }
  static std::string error_of(const std::string& text) {
    const auto result = parse_config(text, "cfg.json");
    return result.ok() ? "<no error>" : result.error();
  }

  // The SHA-256 fingerprint `openssl x509 -fingerprint` prints for `file`, as raw bytes.
  static std::string openssl_fingerprint(const std::string& file, const std::string& digest) {
    const std::string command = "openssl x509 -noout -fingerprint -" + digest + " -in " + file;
    FILE* pipe = popen(command.c_str(), "r");
    char line[512] = {};
    const bool read = pipe != nullptr && fgets(line, sizeof line, pipe) != nullptr;
    if (pipe != nullptr) pclose(pipe);
    if (!read) return "";
    const std::string text = line;
    std::string bytes;
    for (std::size_t at = text.find('=') + 1; at + 1 < text.size(); at += 3)
      bytes += static_cast<char>(std::stoi(text.substr(at, 2), nullptr, 16));
    return bytes;
  }

  static inline std::string dir_;
};

TEST_F(ConfigTls, DisabledByDefault) {
  const auto result = parse_config("{}", "cfg.json");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->tls.mode, TlsMode::disable);
  EXPECT_EQ(result->tls.min_version, TlsMinVersion::tls1_2);
  EXPECT_EQ(result->tls.context, nullptr);
}

TEST_F(ConfigTls, LoadsTheFilesAndHashesTheCertificateForChannelBinding) {
  const auto result =
      parse_config(config("require", path("sha256.crt"), path("sha256.key"),
                          ",\n    \"ca_file\": \"" + path("ca.crt") + "\", \"min_version\": \"1.3\""),
                   "cfg.json");
  ASSERT_TRUE(result.ok()) << result.error();
  EXPECT_EQ(result->tls.mode, TlsMode::require);
  EXPECT_EQ(result->tls.min_version, TlsMinVersion::tls1_3);
  ASSERT_NE(result->tls.context, nullptr);
  EXPECT_TRUE(result->tls.context->verifies_clients());
  const auto hash = result->tls.context->server_end_point();
  EXPECT_EQ(std::string(hash.begin(), hash.end()), openssl_fingerprint(path("sha256.crt"), "sha256"));
  EXPECT_NE(result->tls.context->description().find("serial 01"), std::string::npos);
}

TEST_F(ConfigTls, EndPointHashFollowsTheSignaturesHash) {
  // RFC 5929: a certificate signed with SHA-384 is hashed with SHA-384.
  const auto result = parse_config(config("allow", path("sha384.crt"), path("sha384.key")), "cfg.json");
  ASSERT_TRUE(result.ok()) << result.error();
  EXPECT_FALSE(result->tls.context->verifies_clients());
  const auto hash = result->tls.context->server_end_point();
  EXPECT_EQ(hash.size(), 48U);
  EXPECT_EQ(std::string(hash.begin(), hash.end()), openssl_fingerprint(path("sha384.crt"), "sha384"));
}

TEST_F(ConfigTls, ErrorsNameTheKeyAndLine) {
  EXPECT_EQ(error_of(config("sometimes", path("sha256.crt"), path("sha256.key"))),
            "cfg.json:3: key 'tls.mode': expected \"disable\", \"allow\" or \"require\", got \"sometimes\"");
  EXPECT_EQ(error_of(config("require", path("missing.crt"), path("sha256.key"))),
            "cfg.json:4: key 'tls.cert_file': cannot read \"" + path("missing.crt") +
                "\": No such file or directory");
  EXPECT_EQ(error_of(config("require", "/dev/null", path("sha256.key"))),
            "cfg.json:4: key 'tls.cert_file': \"/dev/null\" is not a regular file");
  EXPECT_EQ(error_of(config("require", path("sha256.key"), path("sha256.key"))).substr(0, 57),
            "cfg.json:4: key 'tls.cert_file': no usable certificate in");
  EXPECT_EQ(error_of(config("require", path("sha256.crt"), path("sha384.key"))),
            "cfg.json:5: key 'tls.key_file': the private key in \"" + path("sha384.key") +
                "\" does not match the certificate in \"" + path("sha256.crt") + "\"");
  EXPECT_EQ(
      error_of(config("require", path("sha256.crt"), path("sha256.key"), ",\n    \"min_version\": \"1.1\"")),
      "cfg.json:6: key 'tls.min_version': expected \"1.2\" or \"1.3\", got \"1.1\"");
  EXPECT_EQ(error_of(config("require", path("sha256.crt"), path("sha256.key"),
                            ",\n    \"ca_file\": \"" + path("nowhere.crt") + "\"")),
            "cfg.json:6: key 'tls.ca_file': cannot read \"" + path("nowhere.crt") +
                "\": No such file or directory");
  EXPECT_EQ(error_of("{\n  \"tls\": { \"mode\": \"allow\" }\n}"),
            "cfg.json:2: key 'tls': missing required key 'cert_file' (tls.mode is not \"disable\")");
  // With mode disable the files are not read.
  EXPECT_EQ(error_of(config("disable", path("missing.crt"), path("missing.key"))), "<no error>");
}

TEST_F(ConfigTls, CertAuthenticationNeedsTlsAndACa) {
  EXPECT_EQ(error_of("{\n  \"auth\": {\n    \"type\": \"cert\"\n  }\n}"),
            "cfg.json:3: key 'auth.type': \"cert\" needs tls.mode \"allow\" or \"require\" and tls.ca_file");
  const std::string tls = config("require", path("sha256.crt"), path("sha256.key"),
                                 ",\n    \"ca_file\": \"" + path("ca.crt") + "\"");
  const auto result =
      parse_config(tls.substr(0, tls.size() - 2) + ",\n  \"auth\": { \"type\": \"cert\" }\n}", "cfg.json");
  ASSERT_TRUE(result.ok()) << result.error();
  EXPECT_EQ(result->auth.type, AuthType::cert);
}

}  // namespace
}  // namespace sluice::config
