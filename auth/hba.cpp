#include "auth/hba.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <charconv>
#include <optional>

#include "auth/text_lines.h"

namespace sluice::auth {
namespace {

struct Token {
  std::string text;
  bool quoted = false;
  bool comma = false;  // a list separator
};

// Splits a line into tokens; '#' outside quotes starts a comment. nullopt: an unterminated quote.
std::optional<std::vector<Token>> tokenize(std::string_view line) {
  std::vector<Token> tokens;
  std::size_t i = 0;
  while (i < line.size()) {
    const char c = line[i];
    if (is_blank(c)) {
      ++i;
    } else if (c == '#') {
      break;
    } else if (c == ',') {
      tokens.push_back({",", false, true});
      ++i;
    } else if (c == '"') {
      Token token{{}, true, false};
      for (++i;; ++i) {
        if (i >= line.size()) return std::nullopt;
        if (line[i] != '"') {
          token.text += line[i];
        } else if (i + 1 < line.size() && line[i + 1] == '"') {
          token.text += '"';
          ++i;
        } else {
          ++i;
          break;
        }
      }
      tokens.push_back(std::move(token));
    } else {
      const std::size_t start = i;
      while (i < line.size() && !is_blank(line[i]) && line[i] != ',' && line[i] != '#' && line[i] != '"') ++i;
      tokens.push_back({std::string(line.substr(start, i - start)), false, false});
    }
  }
  return tokens;
}

class LineParser {
 public:
  LineParser(std::vector<Token> tokens, int line) : tokens_(std::move(tokens)), line_(line) {}

  Result<HbaRule, FileError> parse() {
    HbaRule rule;
    rule.line = line_;
    const Token* type = next();
    if (type->quoted) return error("unknown connection type \"" + type->text + "\"");
    if (type->text == "local") {
      rule.connection = HbaConnection::local;
    } else if (type->text == "host") {
      rule.connection = HbaConnection::host;
    } else if (type->text == "hostssl") {
      rule.connection = HbaConnection::hostssl;
    } else if (type->text == "hostnossl") {
      rule.connection = HbaConnection::hostnossl;
    } else {
      return error("unknown connection type \"" + type->text + "\"");
    }
    if (auto failure = names(rule.databases, true)) return *failure;
    if (auto failure = names(rule.users, false)) return *failure;
    if (rule.connection != HbaConnection::local) {
      if (auto failure = address(rule.address)) return *failure;
    }
    const Token* method = next();
    if (method == nullptr) return error("the method is missing");
    if (method->text == "trust") {
      rule.method = HbaMethod::trust;
    } else if (method->text == "reject") {
      rule.method = HbaMethod::reject;
    } else if (method->text == "peer") {
      rule.method = HbaMethod::peer;
    } else if (method->text == "md5") {
      rule.method = HbaMethod::md5;
    } else if (method->text == "scram-sha-256") {
      rule.method = HbaMethod::scram_sha_256;
    } else if (method->text == "cert") {
      rule.method = HbaMethod::cert;
    } else {
      return error("unsupported authentication method \"" + method->text + "\"");
    }
    if (rule.method == HbaMethod::peer && rule.connection != HbaConnection::local) {
      return error("peer authentication is only supported on local sockets");
    }
    if (rule.method == HbaMethod::cert && rule.connection != HbaConnection::hostssl) {
      return error("cert authentication is only supported on hostssl connections");
    }
    if (position_ < tokens_.size()) return error("unsupported option \"" + tokens_[position_].text + "\"");
    return rule;
  }

 private:
  const Token* next() { return position_ < tokens_.size() ? &tokens_[position_++] : nullptr; }

  [[nodiscard]] Failure<FileError> error(std::string message) const {
    return Failure{FileError{line_, std::move(message)}};
  }

  std::optional<Failure<FileError>> names(HbaNames& out, bool databases) {
    const char* column = databases ? "database" : "user";
    for (;;) {
      const Token* token = next();
      if (token == nullptr || token->comma) return error(std::string("the ") + column + " column is missing");
      const std::string& text = token->text;
      if (!token->quoted && text == "all") {
        out.all = true;
      } else if (!token->quoted && databases && text == "sameuser") {
        out.sameuser = true;
      } else if (!token->quoted && (text == "samerole" || text == "samegroup" || text == "replication")) {
        return error("\"" + text + "\" is not supported");
      } else if (!token->quoted && (text.starts_with('+') || text.starts_with('@'))) {
        return error(std::string(text[0] == '+' ? "group membership (\"" : "file inclusion (\"") + text +
                     "\") is not supported");
      } else {
        out.names.insert(text);
      }
      if (position_ >= tokens_.size() || !tokens_[position_].comma) return std::nullopt;
      ++position_;
    }
  }

  std::optional<Failure<FileError>> address(HbaAddress& out) {
    const Token* token = next();
    if (token == nullptr) return error("the address is missing");
    if (!token->quoted && token->text == "all") {
      out.all = true;
      return std::nullopt;
    }
    std::string text = token->text;
    std::optional<std::string> bits;
    if (const std::size_t slash = text.find('/'); slash != std::string::npos) {
      bits = text.substr(slash + 1);
      text.resize(slash);
    }
    if (inet_pton(AF_INET, text.c_str(), out.address.data()) == 1) {
      out.family = AF_INET;
    } else if (inet_pton(AF_INET6, text.c_str(), out.address.data()) == 1) {
      out.family = AF_INET6;
    } else {
      return error("invalid IP address \"" + text +
                   "\" (host names, samehost and samenet are not supported)");
    }
    const int width = out.family == AF_INET ? 32 : 128;
    if (bits) {
      int count = -1;
      const auto [end, failure] = std::from_chars(bits->data(), bits->data() + bits->size(), count);
      if (failure != std::errc() || end != bits->data() + bits->size() || count < 0 || count > width) {
        return error("invalid CIDR mask in address \"" + token->text + "\"");
      }
      for (int i = 0; i < count; ++i) out.mask[static_cast<std::size_t>(i / 8)] |= 0x80 >> (i % 8);
    } else {
      const Token* mask = next();
      if (mask == nullptr || inet_pton(out.family, mask->text.c_str(), out.mask.data()) != 1) {
        return error("the address \"" + text + "\" needs a CIDR mask or a mask column of the same family");
      }
    }
    // As PostgreSQL: the address's bits outside the mask are ignored, never matched.
    for (std::size_t i = 0; i < out.address.size(); ++i) out.address[i] &= out.mask[i];
    return std::nullopt;
  }

  std::vector<Token> tokens_;
  std::size_t position_ = 0;
  int line_;
};

bool names_match(const HbaNames& names, std::string_view name, std::string_view user) {
  return names.all || (names.sameuser && name == user) || names.names.contains(name);
}

bool address_matches(const HbaAddress& rule, const HbaClient& client) {
  if (rule.all) return true;
  if (rule.family != client.family) return false;
  const std::size_t size = rule.family == AF_INET ? 4 : 16;
  for (std::size_t i = 0; i < size; ++i) {
    if ((client.address[i] & rule.mask[i]) != rule.address[i]) return false;
  }
  return true;
}

}  // namespace

std::string_view hba_method_name(HbaMethod method) {
  switch (method) {
    case HbaMethod::trust:
      return "trust";
    case HbaMethod::reject:
      return "reject";
    case HbaMethod::peer:
      return "peer";
    case HbaMethod::md5:
      return "md5";
    case HbaMethod::scram_sha_256:
      return "scram-sha-256";
    case HbaMethod::cert:
      return "cert";
  }
  return "reject";
}

Result<HbaRules, FileError> parse_hba(std::string_view text) {
  HbaRules rules;
  TextLines lines(text);
  for (std::string_view line; lines.next(line);) {
    const int number = lines.number();
    auto tokens = tokenize(line);
    if (!tokens) return Failure{FileError{number, "unterminated quoted string"}};
    if (tokens->empty()) continue;
    auto rule = LineParser(std::move(*tokens), number).parse();
    if (!rule) return Failure{rule.error()};
    rules.rules.push_back(std::move(*rule));
  }
  return rules;
}

const HbaRule* HbaRules::match(const HbaClient& client) const {
  for (const HbaRule& rule : rules) {
    if (client.local != (rule.connection == HbaConnection::local)) continue;
    if (rule.connection == HbaConnection::hostssl && !client.tls) continue;
    if (rule.connection == HbaConnection::hostnossl && client.tls) continue;
    if (!client.local && !address_matches(rule.address, client)) continue;
    if (!names_match(rule.databases, client.database, client.user)) continue;
    if (!names_match(rule.users, client.user, {})) continue;
    return &rule;
  }
  return nullptr;
}

}  // namespace sluice::auth
