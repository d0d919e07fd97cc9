// libFuzzer target: an auth.hba_file's text (auth/hba.h). What parses must describe itself
// consistently, and evaluating it for a few clients must not crash.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "auth/hba.h"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto rules = sluice::auth::parse_hba(text);
  if (!rules) {
    check(rules.error().line >= 1 && !rules.error().message.empty());
    return 0;
  }
  int previous_line = 0;
  for (const auto& rule : rules->rules) {
    check(rule.line > previous_line);  // in file order, one rule a line
    previous_line = rule.line;
    check(rule.method != sluice::auth::HbaMethod::peer ||
          rule.connection == sluice::auth::HbaConnection::local);
  }
  using sluice::auth::HbaClient;
  const HbaClient local{
      .local = true, .tls = false, .family = 0, .address = {}, .database = "app", .user = "app"};
  const HbaClient v4{.local = false,
                     .tls = false,
                     .family = AF_INET,
                     .address = {127, 0, 0, 1},
                     .database = "db",
                     .user = "u"};
  const HbaClient v6{
      .local = false, .tls = true, .family = AF_INET6, .address = {0xfe, 0x80}, .database = "a", .user = "a"};
  for (const auto& client : {local, v4, v6}) {
    if (const auto* rule = rules->match(client)) {
      check(client.local == (rule->connection == sluice::auth::HbaConnection::local));
    }
  }
  return 0;
}
