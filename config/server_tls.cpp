#include "config/server_tls.h"

#include <libpq-fe.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <pwd.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "auth/crypto.h"
#include "config/config.h"
#include "config/file_text.h"

namespace sluice::config {
namespace {

constexpr const char* kEitherProvideTheFile =
    "\nEither provide the file or change sslmode to disable server certificate verification.";

std::string setting(const std::vector<std::string>& keywords, const std::vector<std::string>& values,
                    std::string_view keyword, const char* env, const char* fallback) {
  const std::string* found = nullptr;
  for (std::size_t i = 0; i < keywords.size(); ++i) {
    if (keywords[i] == keyword && !values[i].empty()) found = &values[i];  // the last one wins, as in libpq
  }
  if (found != nullptr) return *found;
  const char* from_env = env != nullptr ? std::getenv(env) : nullptr;
  return from_env != nullptr && *from_env != '\0' ? from_env : fallback;
}

// libpq's names; 0 for one it does not know.
int protocol_version(const std::string& name) {
  for (const auto& [known, version] :
       {std::pair{"TLSv1", TLS1_VERSION}, std::pair{"TLSv1.1", TLS1_1_VERSION},
        std::pair{"TLSv1.2", TLS1_2_VERSION}, std::pair{"TLSv1.3", TLS1_3_VERSION}}) {
    if (::strcasecmp(name.c_str(), known) == 0) return version;
  }
  return 0;
}

// libpq 15's pqGetHomeDirectory: the passwd entry's, not $HOME. Empty when there is none.
std::string home_directory() {
  std::array<char, 4096> buffer{};
  passwd entry{};
  passwd* found = nullptr;
  if (::getpwuid_r(::geteuid(), &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr)
    return {};
  return found->pw_dir;
}

// A file setting, else libpq's default for it under ~/.postgresql ("" without a home directory).
std::string file_or_default(const std::string& setting, const std::string& home, const char* name) {
  if (!setting.empty()) return setting;
  return home.empty() ? std::string() : home + "/.postgresql/" + name;
}

// OpenSSL's reason for the oldest error on this thread's queue, as libpq's SSLerrmessage words it.
std::string ssl_error() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no SSL error reported";
  const char* reason = ERR_reason_error_string(code);
  return reason != nullptr ? reason : "SSL error code " + std::to_string(code);
}

// The key file's password (sslpassword). Always installed: OpenSSL's default would ask the terminal.
int key_password(char* buffer, int size, int /*rwflag*/, void* userdata) {
  const auto* password = static_cast<const std::string*>(userdata);
  const int length = std::min(size - 1, static_cast<int>(password->size()));
  if (length < 0) return 0;
  std::memcpy(buffer, password->data(), static_cast<std::size_t>(length));
  buffer[length] = '\0';
  return length;
}

}  // namespace

ServerTlsSettings ServerTlsSettings::read(const std::vector<std::string>& keywords,
                                          const std::vector<std::string>& values) {
  ServerTlsSettings settings;
  const std::string mode = setting(keywords, values, "sslmode", "PGSSLMODE", "prefer");
  const std::array<std::pair<const char*, SslMode>, 6> modes = {{{"disable", SslMode::disable},
                                                                 {"allow", SslMode::allow},
                                                                 {"prefer", SslMode::prefer},
                                                                 {"require", SslMode::require},
                                                                 {"verify-ca", SslMode::verify_ca},
                                                                 {"verify-full", SslMode::verify_full}}};
  const auto* const known =
      std::find_if(modes.begin(), modes.end(), [&](const auto& m) { return mode == m.first; });
  if (known != modes.end()) {
    settings.mode = known->second;
  } else {
    settings.invalid = "invalid sslmode value: \"" + mode + "\"";
  }
  using Policy = auth::ClientChannelBinding::Policy;
  const std::string binding = setting(keywords, values, "channel_binding", "PGCHANNELBINDING", "prefer");
  if (binding == "disable" || binding == "require") {
    settings.channel_binding = binding == "disable" ? Policy::disable : Policy::require;
  } else if (binding != "prefer" && settings.invalid.empty()) {
    settings.invalid = "invalid channel_binding value: \"" + binding + "\"";
  }
  settings.sni = setting(keywords, values, "sslsni", "PGSSLSNI", "1").starts_with('1');
  settings.root_cert = setting(keywords, values, "sslrootcert", "PGSSLROOTCERT", "");
  settings.crl = setting(keywords, values, "sslcrl", "PGSSLCRL", "");
  settings.crl_dir = setting(keywords, values, "sslcrldir", "PGSSLCRLDIR", "");
  settings.cert = setting(keywords, values, "sslcert", "PGSSLCERT", "");
  settings.key = setting(keywords, values, "sslkey", "PGSSLKEY", "");
  settings.password = setting(keywords, values, "sslpassword", nullptr, "");
  settings.min_version =
      setting(keywords, values, "ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION", "TLSv1.2");
  settings.max_version = setting(keywords, values, "ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION", "");
  for (const auto& [name, value] : {std::pair{"ssl_min_protocol_version", &settings.min_version},
                                    std::pair{"ssl_max_protocol_version", &settings.max_version}}) {
    if (!value->empty() && protocol_version(*value) == 0 && settings.invalid.empty())
      settings.invalid = std::string("invalid ") + name + " value: \"" + *value + "\"";
  }
  if (settings.invalid.empty() && !settings.max_version.empty() &&
      protocol_version(settings.min_version) > protocol_version(settings.max_version))
    settings.invalid = "invalid SSL protocol version range";
  return settings;
}

ServerTlsContext::~ServerTlsContext() { SSL_CTX_free(context_); }

std::shared_ptr<const ServerTlsContext> ServerTlsContext::load(const ServerTlsSettings& settings) {
  std::shared_ptr<ServerTlsContext> loaded(new ServerTlsContext);
  loaded->settings_ = settings;
  for (const std::string* part :
       {&settings.root_cert, &settings.crl, &settings.crl_dir, &settings.cert, &settings.key,
        &settings.password, &settings.min_version, &settings.max_version, &settings.invalid}) {
    loaded->fingerprint_ += *part;
    loaded->fingerprint_.push_back('\0');
  }
  loaded->fingerprint_ += std::to_string(static_cast<int>(settings.mode)) +
                          std::to_string(static_cast<int>(settings.channel_binding)) +
                          (settings.sni ? "1" : "0");
  if (!settings.invalid.empty()) {
    loaded->failure_ = settings.invalid;
    return loaded;
  }
  if (settings.mode == SslMode::disable) return loaded;

  ERR_clear_error();
  SSL_CTX* context = SSL_CTX_new(TLS_client_method());
  if (context == nullptr) {
    loaded->failure_ = "could not create SSL context: " + ssl_error();
    return loaded;
  }
  loaded->context_ = context;
  // As libpq: no compression, its minimum version. Writes resume from a buffer that moves; one
  // read(2) takes several records. Record buffers stay (no SSL_MODE_RELEASE_BUFFERS, unlike the
  // clients' contexts): a pool has few servers and they are busy, a buffer freed after every read
  // would cost a malloc per message.
  SSL_CTX_set_options(context, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_read_ahead(context, 1);
  SSL_CTX_set_default_passwd_cb(context, key_password);
  SSL_CTX_set_default_passwd_cb_userdata(context, &loaded->settings_.password);
  if (SSL_CTX_set_min_proto_version(context, protocol_version(settings.min_version)) != 1) {
    loaded->failure_ = "could not set minimum SSL protocol version: " + ssl_error();
  } else if (!settings.max_version.empty() &&
             SSL_CTX_set_max_proto_version(context, protocol_version(settings.max_version)) != 1) {
    loaded->failure_ = "could not set maximum SSL protocol version: " + ssl_error();
  }
  const bool needs_home = settings.root_cert.empty() || settings.cert.empty() || settings.key.empty() ||
                          (settings.crl.empty() && settings.crl_dir.empty());
  const std::string home = needs_home ? home_directory() : std::string();
  if (loaded->failure_.empty() && loaded->load_root_certificate(home)) loaded->load_client_certificate(home);
  if (!loaded->failure_.empty()) {
    SSL_CTX_free(loaded->context_);
    loaded->context_ = nullptr;
  }
  ERR_clear_error();
  return loaded;
}

// libpq's rule: a root certificate file that exists is used, whatever the mode; verify-ca and
// verify-full need one.
bool ServerTlsContext::load_root_certificate(const std::string& home) {
  const std::string path = file_or_default(settings_.root_cert, home, "root.crt");
  struct stat info {};
  if (path.empty() || ::stat(path.c_str(), &info) != 0) {
    remember(path);  // absent: a reload that finds it there takes it up
    if (settings_.mode != SslMode::verify_ca && settings_.mode != SslMode::verify_full) return true;
    failure_ = path.empty() ? std::string("could not get home directory to locate root certificate file") +
                                  kEitherProvideTheFile
                            : "root certificate file \"" + path + "\" does not exist" + kEitherProvideTheFile;
    return false;
  }
  if (SSL_CTX_load_verify_locations(context_, path.c_str(), nullptr) != 1) {
    failure_ = "could not read root certificate file \"" + path + "\": " + ssl_error();
    return false;
  }
  remember(path);
  // Revocation lists where libpq looks; none is no error.
  const std::string crl =
      settings_.crl_dir.empty() ? file_or_default(settings_.crl, home, "root.crl") : settings_.crl;
  X509_STORE* store = SSL_CTX_get_cert_store(context_);
  if ((!crl.empty() || !settings_.crl_dir.empty()) &&
      X509_STORE_load_locations(store, crl.empty() ? nullptr : crl.c_str(),
                                settings_.crl_dir.empty() ? nullptr : settings_.crl_dir.c_str()) == 1) {
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  }
  // Loaded or not (none is no error): a list that appears or changes is taken up by a reload.
  remember(crl);
  remember(settings_.crl_dir);
  ERR_clear_error();
  SSL_CTX_set_verify(context_, SSL_VERIFY_PEER, nullptr);
  verifies_chain_ = true;
  return true;
}

// A certificate that is not there is none (the server may not ask); one that is there must load,
// with its key, which others must not be able to read.
bool ServerTlsContext::load_client_certificate(const std::string& home) {
  const std::string cert = file_or_default(settings_.cert, home, "postgresql.crt");
  struct stat info {};
  if (cert.empty()) return true;
  if (::stat(cert.c_str(), &info) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      remember(cert);  // absent: a reload that finds it there takes it up
      return true;
    }
    failure_ = "could not open certificate file \"" + cert + "\": " + std::strerror(errno);
    return false;
  }
  if (SSL_CTX_use_certificate_chain_file(context_, cert.c_str()) != 1) {
    failure_ = "could not read certificate file \"" + cert + "\": " + ssl_error();
    return false;
  }
  const std::string key = file_or_default(settings_.key, home, "postgresql.key");
  if (::stat(key.c_str(), &info) != 0) {
    failure_ = errno == ENOENT ? "certificate present, but not private key file \"" + key + "\""
                               : "could not stat private key file \"" + key + "\": " + std::strerror(errno);
    return false;
  }
  if (!S_ISREG(info.st_mode)) {
    failure_ = "private key file \"" + key + "\" is not a regular file";
    return false;
  }
  if (info.st_uid == 0 ? (info.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO)) != 0
                       : (info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    failure_ = "private key file \"" + key +
               "\" has group or world access; file must have permissions u=rw (0600) or less if owned by "
               "the current user, or permissions u=rw,g=r (0640) or less if owned by root";
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(context_, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    const std::string pem_error = ssl_error();
    if (SSL_CTX_use_PrivateKey_file(context_, key.c_str(), SSL_FILETYPE_ASN1) != 1) {
      failure_ = "could not load private key file \"" + key + "\": " + pem_error;
      return false;
    }
  }
  if (SSL_CTX_check_private_key(context_) != 1) {
    failure_ = "certificate does not match private key file \"" + key + "\": " + ssl_error();
    return false;
  }
  remember(cert);
  remember(key);
  return true;
}

// Every file probed, there or not: its name, and a hash of its contents when it could be read.
void ServerTlsContext::remember(const std::string& path) {
  if (path.empty()) return;
  fingerprint_ += '\0' + path + '\0';
  const auto text = read_file(path);  // a directory (sslcrldir) counts by its name
  if (text) fingerprint_ += auth::base64_encode(auth::sha256(auth::as_bytes(*text)));
}

bool ServerTls::operator==(const ServerTls& other) const {
  if (context == nullptr || other.context == nullptr) return context == other.context;
  return context->same_as(*other.context);
}

void load_server_tls(Config& config) {
  std::vector<std::shared_ptr<const ServerTlsContext>> loaded;
  for (auto& [name, database] : config.databases) {
    std::vector<std::string> keywords;
    std::vector<std::string> values;
    PQconninfoOption* options = PQconninfoParse(database.conninfo.c_str(), nullptr);
    if (options == nullptr) continue;  // the loader has refused it already
    for (PQconninfoOption* option = options; option->keyword != nullptr; ++option) {
      if (option->val == nullptr) continue;
      keywords.emplace_back(option->keyword);
      values.emplace_back(option->val);
    }
    PQconninfoFree(options);
    // A password in the conninfo: libpq logs in, with its own TLS.
    if (std::find(keywords.begin(), keywords.end(), "password") != keywords.end()) continue;
    const ServerTlsSettings settings = ServerTlsSettings::read(keywords, values);
    const auto same = std::find_if(loaded.begin(), loaded.end(),
                                   [&](const auto& context) { return context->settings() == settings; });
    database.server_tls.context =
        same != loaded.end() ? *same : loaded.emplace_back(ServerTlsContext::load(settings));
  }
}

}  // namespace sluice::config
