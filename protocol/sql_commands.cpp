// A token-level imitation of PostgreSQL's scan.l, just enough to find where
// statements start: quotes, comments and dollar quotes are skipped exactly as
// the server skips them, so a ';' or keyword inside them is never mistaken for
// one outside. Every read is bounds-checked and every byte is visited a bounded
// number of times, since this text comes straight from clients.
#include "protocol/sql_commands.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/ascii.h"

namespace sluice::protocol {
namespace {

enum class TokenKind {
  word,            // unquoted identifier or keyword
  string_literal,  // '...', E'...', U&'...' or $tag$...$tag$
  open_paren,
  close_paren,
  semicolon,
  other,  // numbers, operators, parameters, quoted identifiers
  end,    // end of input, or an unterminated quote or comment
};

struct Token {
  TokenKind kind = TokenKind::end;
  std::string_view text;
};

constexpr bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool is_ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_high_bit(char c) { return (static_cast<unsigned char>(c) & 0x80U) != 0; }

// scan.l's ident_start and dolq_start: letters, '_' and any non-ASCII byte.
constexpr bool is_identifier_start(char c) { return is_ascii_letter(c) || c == '_' || is_high_bit(c); }
// Dollar-quote tags may not contain '$'; identifiers may.
constexpr bool is_tag_char(char c) { return is_identifier_start(c) || is_digit(c); }
constexpr bool is_identifier_char(char c) { return is_tag_char(c) || c == '$'; }

// PostgreSQL folds only ASCII letters when matching keywords.
bool is_keyword(const Token& token, std::string_view lowercase_keyword) {
  return token.kind == TokenKind::word && token.text.size() == lowercase_keyword.size() &&
         std::equal(token.text.begin(), token.text.end(), lowercase_keyword.begin(),
                    [](char written, char keyword) { return ascii_lower(written) == keyword; });
}

class Lexer {
 public:
  explicit Lexer(std::string_view sql) : sql_(sql) {}

  Token next() {
    skip_blanks_and_comments();
    if (at_end()) return {TokenKind::end, {}};
    const std::size_t start = pos_;
    const TokenKind kind = scan_token();
    // A token cut short by the end of input is an unterminated quote: stop there.
    if (kind != TokenKind::end) return {kind, sql_.substr(start, pos_ - start)};
    pos_ = sql_.size();
    return {TokenKind::end, {}};
  }

 private:
  [[nodiscard]] bool at_end() const { return pos_ >= sql_.size(); }
  [[nodiscard]] char peek(std::size_t ahead = 0) const {
    return pos_ + ahead < sql_.size() ? sql_[pos_ + ahead] : '\0';
  }

  void skip_blanks_and_comments() {
    while (!at_end()) {
      if (is_space(peek())) {
        ++pos_;
      } else if (peek() == '-' && peek(1) == '-') {
        while (!at_end() && peek() != '\n' && peek() != '\r') ++pos_;
      } else if (peek() == '/' && peek(1) == '*') {
        skip_block_comment();
      } else {
        return;
      }
    }
  }

  // Block comments nest in PostgreSQL, unlike the SQL standard's C-like reading.
  void skip_block_comment() {
    std::size_t depth = 0;
    while (!at_end()) {
      if (peek() == '/' && peek(1) == '*') {
        ++depth;
        pos_ += 2;
      } else if (peek() == '*' && peek(1) == '/') {
        pos_ += 2;
        if (--depth == 0) return;
      } else {
        ++pos_;
      }
    }
  }

  // Consumes one token starting at pos_; returns end when a quote runs off the input.
  TokenKind scan_token() {
    const char c = peek();
    switch (c) {
      case ';':
        ++pos_;
        return TokenKind::semicolon;
      case '(':
        ++pos_;
        return TokenKind::open_paren;
      case ')':
        ++pos_;
        return TokenKind::close_paren;
      case '\'':
        return skip_quoted('\'', /*backslash_escapes=*/false) ? TokenKind::string_literal : TokenKind::end;
      case '"':
        return skip_quoted('"', /*backslash_escapes=*/false) ? TokenKind::other : TokenKind::end;
      case '$':
        return scan_dollar();
      default:
        break;
    }
    // E'...' only when the E starts the token: "typeE'x'" is an identifier and a plain string.
    if ((c == 'e' || c == 'E') && peek(1) == '\'') {
      ++pos_;
      return skip_quoted('\'', /*backslash_escapes=*/true) ? TokenKind::string_literal : TokenKind::end;
    }
    // U&'...' counts as a string literal for PREPARE TRANSACTION; U&"..." is an identifier.
    if ((c == 'u' || c == 'U') && peek(1) == '&' && (peek(2) == '\'' || peek(2) == '"')) {
      pos_ += 2;
      const bool is_string = peek() == '\'';
      if (!skip_quoted(peek(), /*backslash_escapes=*/false)) return TokenKind::end;
      return is_string ? TokenKind::string_literal : TokenKind::other;
    }
    if (is_identifier_start(c)) {
      while (!at_end() && is_identifier_char(peek())) ++pos_;
      return TokenKind::word;
    }
    if (is_digit(c)) {
      while (!at_end() && is_digit(peek())) ++pos_;
      return TokenKind::other;
    }
    ++pos_;  // an operator character; "--" and "/*" were already taken as comments
    return TokenKind::other;
  }

  // pos_ is on the opening quote. A doubled quote is an escaped quote; in E'...' strings a
  // backslash escapes whatever follows it. Returns false when the closing quote is missing.
  bool skip_quoted(char quote, bool backslash_escapes) {
    ++pos_;
    while (!at_end()) {
      const char c = peek();
      if (backslash_escapes && c == '\\') {
        pos_ += 2;
      } else if (c == quote) {
        ++pos_;
        if (peek() != quote) return true;
        ++pos_;
      } else {
        ++pos_;
      }
    }
    return false;
  }

  // pos_ is on a '$': a positional parameter ($1), a dollar-quoted string ($tag$...$tag$),
  // or a lone '$' when no tag follows (scan.l then rescans what follows it).
  TokenKind scan_dollar() {
    if (is_digit(peek(1))) {
      ++pos_;
      while (!at_end() && is_digit(peek())) ++pos_;
      return TokenKind::other;
    }
    std::size_t tag_end = pos_ + 1;
    if (tag_end < sql_.size() && is_identifier_start(sql_[tag_end])) {
      while (tag_end < sql_.size() && is_tag_char(sql_[tag_end])) ++tag_end;
    }
    if (tag_end >= sql_.size() || sql_[tag_end] != '$') {
      ++pos_;
      return TokenKind::other;
    }
    const std::string_view delimiter = sql_.substr(pos_, tag_end + 1 - pos_);
    pos_ = tag_end + 1;
    return skip_to_delimiter(delimiter) ? TokenKind::string_literal : TokenKind::end;
  }

  // Linear even for long tags: a partial match covers only tag characters, which contain no
  // '$', so the next candidate cannot start inside it and the scan resumes where matching failed.
  bool skip_to_delimiter(std::string_view delimiter) {
    while (!at_end()) {
      if (peek() != '$') {
        ++pos_;
        continue;
      }
      std::size_t matched = 1;
      while (matched < delimiter.size() && pos_ + matched < sql_.size() &&
             sql_[pos_ + matched] == delimiter[matched]) {
        ++matched;
      }
      if (matched == delimiter.size()) {
        pos_ += matched;
        return true;
      }
      pos_ += matched;
    }
    return false;
  }

  std::string_view sql_;
  std::size_t pos_ = 0;
};

// Reads one statement's tokens and decides, as early as its leading words allow, what it does
// with prepared statements. The grammar followed is PostgreSQL's gram.y for these commands.
class StatementClassifier {
 public:
  // Takes the statement's next token (a semicolon or end token finishes it) and returns the
  // statement's use at the token that settles it; none for every other token.
  SqlPreparedUse feed(const Token& token) {
    switch (state_) {
      case State::statement_start:
        return on_first_word(token);
      case State::explain_options:
        if (is_keyword(token, "analyze") || is_keyword(token, "analyse") || is_keyword(token, "verbose")) {
          return {};
        }
        if (token.kind == TokenKind::open_paren) {
          state_ = State::explain_option_list;
          paren_depth_ = 1;
          return {};
        }
        return on_first_word(token);
      case State::explain_option_list:
        if (token.kind == TokenKind::open_paren) ++paren_depth_;
        if (token.kind == TokenKind::close_paren && --paren_depth_ == 0) state_ = State::statement_start;
        return {};
      case State::after_prepare:
        // PREPARE TRANSACTION 'gid' is two-phase commit; PREPARE transaction AS ... is a statement.
        if (is_keyword(token, "transaction")) {
          state_ = State::after_prepare_transaction;
          return {};
        }
        return settle(SqlPreparedCommand::prepare);
      case State::after_prepare_transaction:
        if (token.kind == TokenKind::string_literal) return settle(SqlPreparedCommand::none);
        return settle(SqlPreparedCommand::prepare);
      case State::after_deallocate:
        if (is_keyword(token, "all")) return settle(SqlPreparedCommand::deallocate_all);
        if (is_keyword(token, "prepare")) {
          state_ = State::after_deallocate_prepare;
          return {};
        }
        return settle(SqlPreparedCommand::deallocate);
      case State::after_deallocate_prepare:
        // With nothing after it, "prepare" is the name: DEALLOCATE prepare.
        if (is_keyword(token, "all")) return settle(SqlPreparedCommand::deallocate_all);
        return settle(SqlPreparedCommand::deallocate);
      case State::after_discard:
        return settle(is_keyword(token, "all") ? SqlPreparedCommand::discard_all : SqlPreparedCommand::none);
      case State::create_table_options:
        return on_create_word(token);
      case State::create_table_target:
        // create_as_target (name, columns, USING, WITH, ON COMMIT, TABLESPACE) never contains a
        // top-level AS, so the first one begins the query; a later one may be a column alias.
        if (token.kind == TokenKind::open_paren) ++paren_depth_;
        if (token.kind == TokenKind::close_paren && paren_depth_ > 0) --paren_depth_;
        if (paren_depth_ == 0 && is_keyword(token, "as")) state_ = State::create_table_query;
        return {};
      case State::create_table_query:
        if (is_keyword(token, "execute")) {
          keyword_ = token.text;
          return settle(SqlPreparedCommand::execute);
        }
        return settle(SqlPreparedCommand::none);
      case State::settled:
        return {};
    }
    return {};
  }

 private:
  enum class State {
    statement_start,            // the statement's first word, or the statement EXPLAIN explains
    explain_options,            // after EXPLAIN: ANALYZE, VERBOSE or an option list may come first
    explain_option_list,        // inside EXPLAIN ( ... )
    after_prepare,              // PREPARE: a name, or TRANSACTION for two-phase commit
    after_prepare_transaction,  // PREPARE TRANSACTION: a string means two-phase commit
    after_deallocate,           // DEALLOCATE: ALL, PREPARE or a name
    after_deallocate_prepare,   // DEALLOCATE PREPARE: ALL or a name
    after_discard,              // DISCARD: only ALL matters
    create_table_options,       // CREATE: TEMP, UNLOGGED, ... until TABLE
    create_table_target,        // CREATE ... TABLE: up to the top-level AS
    create_table_query,         // CREATE ... TABLE ... AS: EXECUTE or a query
    settled,                    // the rest of the statement cannot change the answer
  };

  SqlPreparedUse on_first_word(const Token& token) {
    // EXPLAIN only wraps EXECUTE and CREATE TABLE AS among these; the rest would be syntax errors.
    if (is_keyword(token, "execute")) {
      keyword_ = token.text;
      return settle(SqlPreparedCommand::execute);
    }
    if (is_keyword(token, "create")) return enter(State::create_table_options);
    if (explaining_) return settle(SqlPreparedCommand::none);
    if (is_keyword(token, "explain")) {
      explaining_ = true;
      return enter(State::explain_options);
    }
    if (is_keyword(token, "prepare")) return enter(State::after_prepare, token.text);
    if (is_keyword(token, "deallocate")) return enter(State::after_deallocate, token.text);
    if (is_keyword(token, "discard")) return enter(State::after_discard, token.text);
    return settle(SqlPreparedCommand::none);
  }

  SqlPreparedUse on_create_word(const Token& token) {
    if (is_keyword(token, "temp") || is_keyword(token, "temporary") || is_keyword(token, "unlogged") ||
        is_keyword(token, "local") || is_keyword(token, "global")) {
      return {};
    }
    if (is_keyword(token, "table")) {
      paren_depth_ = 0;
      return enter(State::create_table_target);
    }
    return settle(SqlPreparedCommand::none);
  }

  SqlPreparedUse enter(State state, std::string_view keyword = {}) {
    state_ = state;
    if (!keyword.empty()) keyword_ = keyword;
    return {};
  }

  SqlPreparedUse settle(SqlPreparedCommand command) {
    state_ = State::settled;
    if (command == SqlPreparedCommand::none) return {};
    return {command, keyword_};
  }

  State state_ = State::statement_start;
  bool explaining_ = false;
  std::size_t paren_depth_ = 0;
  std::string_view keyword_;  // the word reported with the command
};

bool is_named(SqlPreparedCommand command) {
  return command == SqlPreparedCommand::prepare || command == SqlPreparedCommand::execute ||
         command == SqlPreparedCommand::deallocate;
}

}  // namespace

namespace {

bool word_at(std::string_view sql, std::size_t at, std::string_view lower_word) {
  if (sql.size() - at < lower_word.size()) return false;
  for (std::size_t i = 1; i < lower_word.size(); ++i) {
    if (static_cast<char>(sql[at + i] | 0x20) != lower_word[i]) return false;
  }
  return true;
}

// Which lexer a statement's opening word calls for. Every command the scans report opens its
// statement: PREPARE, EXECUTE, DEALLOCATE, DISCARD, and EXECUTE under EXPLAIN or CREATE TABLE AS;
// SET, RESET, DISCARD, DO, CALL, LOAD; LISTEN, UNLISTEN, DECLARE, CLOSE, CREATE, DROP. The
// exceptions are functions (set_config, the advisory locks, dblink), found by their '_', and
// SELECT INTO TEMP, found by its INTO.
enum CommandWords : unsigned {
  kNoCommandWord = 0,
  kSessionWord = 1,
  kPreparedWord = 2,
  kBackendWord = 4,
  kCatalogWord = 8,  // CREATE, ALTER, DROP: functions and triggers may change
  kEveryWord = 15,
};

// The words that may open the statement starting at `from` (after its blanks). A comment there
// is left to the lexers. A word is matched by its letters, not its end ("settings" is "set"):
// a false match costs a lexer run, never a miss.
unsigned command_words_opening(std::string_view sql, std::size_t from) {
  while (from < sql.size() && is_space(sql[from])) ++from;
  if (from == sql.size()) return kNoCommandWord;
  switch (static_cast<char>(sql[from] | 0x20)) {
    case 's':
      return word_at(sql, from, "set") ? kSessionWord : kNoCommandWord;
    case 'r':
      return word_at(sql, from, "reset") ? kSessionWord : kNoCommandWord;
    case 'l':
      if (word_at(sql, from, "load")) return kSessionWord | kBackendWord;
      return word_at(sql, from, "listen") ? kBackendWord : kNoCommandWord;
    case 'u':
      return word_at(sql, from, "unlisten") ? kBackendWord : kNoCommandWord;
    case 'c':
      if (word_at(sql, from, "call")) return kSessionWord | kBackendWord;
      if (word_at(sql, from, "create")) return kPreparedWord | kBackendWord | kCatalogWord;
      return word_at(sql, from, "close") ? kBackendWord : kNoCommandWord;
    case 'd':
      if (word_at(sql, from, "discard")) return kEveryWord;
      if (word_at(sql, from, "do")) return kSessionWord | kBackendWord;
      if (word_at(sql, from, "deallocate")) return kPreparedWord | kBackendWord;
      if (word_at(sql, from, "drop")) return kBackendWord | kCatalogWord;
      return word_at(sql, from, "declare") ? kBackendWord : kNoCommandWord;
    case 'a':
      return word_at(sql, from, "alter") ? kCatalogWord : kNoCommandWord;
    case 'p':
      return word_at(sql, from, "prepare") ? kPreparedWord | kBackendWord : kNoCommandWord;
    case 'e':
      if (word_at(sql, from, "explain")) return kPreparedWord | kBackendWord;
      return word_at(sql, from, "execute") ? kPreparedWord : kNoCommandWord;
    case '-':
    case '/':
      return kEveryWord;
    default:
      return kNoCommandWord;
  }
}

// Every letter of `lower_word` at `at`, case folded (word_at leaves the first to its caller).
bool letters_at(std::string_view sql, std::size_t at, std::string_view lower_word) {
  return at < sql.size() && ascii_lower(sql[at]) == lower_word[0] && word_at(sql, at, lower_word);
}

bool letters_before(std::string_view sql, std::size_t at, std::string_view lower_word) {
  return at >= lower_word.size() && letters_at(sql, at - lower_word.size(), lower_word);
}

// The function whose '_' is at `at`: set_config (kSessionWord), or pg_advisory_*,
// pg_try_advisory_*, pg_temp, dblink_* (kBackendWord).
unsigned underscore_word_at(std::string_view sql, std::size_t at) {
  const std::size_t after = at + 1;
  if (letters_before(sql, at, "set") && letters_at(sql, after, "config")) return kSessionWord;
  if (letters_before(sql, at, "pg") && (letters_at(sql, after, "advisory") || letters_at(sql, after, "try") ||
                                        letters_at(sql, after, "temp"))) {
    return kBackendWord;
  }
  return letters_before(sql, at, "dblink") ? kBackendWord : kNoCommandWord;
}

// INTO followed by TEMP, TEMPORARY, LOCAL or GLOBAL, its 'i' at `at`: SELECT ... INTO TEMP makes a
// table.
inline bool into_temporary_at(std::string_view sql, std::size_t at) {
  if (at + 1 >= sql.size() || ascii_lower(sql[at + 1]) != 'n' || !word_at(sql, at, "into")) return false;
  std::size_t next = at + 4;
  while (next < sql.size() && is_space(sql[next])) ++next;
  return letters_at(sql, next, "temp") || letters_at(sql, next, "local") || letters_at(sql, next, "global");
}

// What the prefilter below stops at: ';' (a statement opens after it), '_' (set_config,
// pg_advisory_*, pg_try_*, pg_temp, dblink_*), 'i' or 'I' (INTO TEMP). Every query sluiced
// forwards is scanned, so where the CPU allows 16 bytes are compared at once: one pass, where a
// memchr per mark made four.
constexpr std::size_t kMarkBlock = 16;

// Bit i is set when sql[from + i] is a mark, of the (up to) 16 bytes from `from`.
unsigned marks_in_block(std::string_view sql, std::size_t from) {
  const std::size_t length = std::min(kMarkBlock, sql.size() - from);
#if defined(__SSE2__)
  __m128i bytes;
  if (length == kMarkBlock) {
    bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sql.data() + from));
  } else {  // the last bytes, in a block whose zeros are no marks: never a read past the string
    char block[kMarkBlock] = {};
    std::memcpy(block, sql.data() + from, length);
    bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block));
  }
  const __m128i marks = _mm_or_si128(
      _mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(';')), _mm_cmpeq_epi8(bytes, _mm_set1_epi8('_'))),
      // 'I' | 0x20 is 'i', and no other byte is.
      _mm_cmpeq_epi8(_mm_or_si128(bytes, _mm_set1_epi8(0x20)), _mm_set1_epi8('i')));
  return static_cast<unsigned>(_mm_movemask_epi8(marks));
#else
  unsigned marks = 0;
  for (std::size_t i = 0; i < length; ++i) {
    const char c = sql[from + i];
    if (c == ';' || c == '_' || ascii_lower(c) == 'i') marks |= 1U << i;
  }
  return marks;
#endif
}

// The words opening any statement (at the start and after each ';'; one inside a literal only
// costs a look), the functions found by their '_', and INTO TEMP.
unsigned command_words(std::string_view sql) {
  unsigned words = command_words_opening(sql, 0);
  for (std::size_t block = 0; block < sql.size(); block += kMarkBlock) {
    for (unsigned marks = marks_in_block(sql, block); marks != 0; marks &= marks - 1) {
      const std::size_t at = block + static_cast<std::size_t>(std::countr_zero(marks));
      const char mark = sql[at];
      if (mark == ';') {
        words |= command_words_opening(sql, at + 1);
      } else if (mark == '_') {
        if (at == 0) continue;
        // The letter before decides which it could be: se(t)_config, p(g)_..., dblin(k)_.
        const char before = ascii_lower(sql[at - 1]);
        if (before == 't' || before == 'g' || before == 'k') words |= underscore_word_at(sql, at);
      } else if ((words & kBackendWord) == 0 && into_temporary_at(sql, at)) {
        words |= kBackendWord;
      }
    }
  }
  return words;
}

SqlPreparedUse prepared_use(std::string_view sql) {
  Lexer lexer(sql);
  StatementClassifier statement;
  SqlPreparedUse last_reset;  // the latest DEALLOCATE ALL or DISCARD ALL
  for (;;) {
    const Token token = lexer.next();
    const SqlPreparedUse use = statement.feed(token);
    // A named statement cannot follow the client to another server, whatever else the string does.
    if (is_named(use.command)) return use;
    if (use.command != SqlPreparedCommand::none) last_reset = use;
    if (token.kind == TokenKind::end) return last_reset;
    if (token.kind == TokenKind::semicolon) statement = StatementClassifier{};
  }
}

// Hands `visit` each token outside literals and comments with its place in its statement (1 for
// the first word); true as soon as `visit` is.
template <class Visit>
bool any_token(std::string_view sql, Visit visit) {
  Lexer lexer(sql);
  std::size_t position = 0;
  for (Token token = lexer.next(); token.kind != TokenKind::end; token = lexer.next()) {
    if (token.kind == TokenKind::semicolon) {
      position = 0;
    } else if (visit(token, ++position)) {
      return true;
    }
  }
  return false;
}

SqlSessionEffect session_effect(std::string_view sql) {
  bool set_statement = false;
  const bool settings = any_token(sql, [&](const Token& token, std::size_t position) {
    if (is_keyword(token, "set_config")) return true;
    if (position == 1) {
      set_statement = is_keyword(token, "set");
      return is_keyword(token, "reset") || is_keyword(token, "discard") || is_keyword(token, "do") ||
             is_keyword(token, "call") || is_keyword(token, "load");
    }
    return position == 2 && set_statement && !is_keyword(token, "local") &&
           !is_keyword(token, "transaction") && !is_keyword(token, "constraints");
  });
  return settings ? SqlSessionEffect::settings : SqlSessionEffect::none;
}

bool is_any_keyword(const Token& token, std::initializer_list<std::string_view> keywords) {
  return std::any_of(keywords.begin(), keywords.end(),
                     [&](std::string_view keyword) { return is_keyword(token, keyword); });
}

// A function or schema name, written as a word or as a "quoted identifier" (which keeps its case).
bool is_any_name(const Token& token, std::initializer_list<std::string_view> names) {
  if (token.kind == TokenKind::word) return is_any_keyword(token, names);
  const std::string_view text = token.text;
  if (token.kind != TokenKind::other || text.size() < 3 || text.front() != '"' || text.back() != '"')
    return false;
  const std::string_view quoted = text.substr(1, text.size() - 2);
  return std::find(names.begin(), names.end(), quoted) != names.end();
}

// Two effects in one string: the stronger, but a lock taken beside something that may drop state
// is no longer sure to be held: the server is asked, as after any other statement that makes some.
SqlBackendEffect combine(SqlBackendEffect a, SqlBackendEffect b) {
  const auto [weaker, stronger] = std::minmax(a, b);
  if (weaker == SqlBackendEffect::touches && stronger == SqlBackendEffect::takes_session_lock)
    return SqlBackendEffect::creates;
  return stronger;
}

// One statement's effect on backend state, read token by token (gram.y's shapes, loosely: a
// false "touches" costs a query to the server, a false "creates" a refusal under session_state
// "refuse"; a miss is worse, so the functions count wherever they appear).
class BackendStatement {
 public:
  void feed(const Token& token) {
    if (explaining_) {  // EXPLAIN [ANALYZE] (options) <statement>: the statement is what counts
      if (!is_any_name(token, {"select", "with", "create", "execute", "declare", "insert", "update", "delete",
                               "merge", "values", "table"})) {
        return;
      }
      explaining_ = false;
    }
    ++position_;
    if (is_any_name(token, {"pg_advisory_lock", "pg_advisory_lock_shared"})) {
      // Only a plain SELECT surely runs it (not EXPLAIN, a view, a cursor, a GRANT, a WITH that
      // may not use it): elsewhere the server is asked.
      raise(plain_select_ ? SqlBackendEffect::takes_session_lock : SqlBackendEffect::creates);
    } else if (is_any_name(token, {"pg_try_advisory_lock", "pg_try_advisory_lock_shared"})) {
      raise(SqlBackendEffect::creates);  // it may have taken nothing
    } else if (is_any_name(token, {"dblink_connect", "dblink_connect_u"})) {
      raise(SqlBackendEffect::loads_library);  // a connection no query can see, nor DISCARD close
    } else if (is_any_name(token, {"pg_advisory_unlock", "pg_advisory_unlock_shared",
                                   "pg_advisory_unlock_all", "dblink_disconnect", "pg_temp"})) {
      raise(SqlBackendEffect::touches);  // pg_temp in a search_path makes a plain CREATE temporary
    }
    if (position_ == 1) return on_first_word(token);
    if (selects_ && is_keyword(previous_, "into") &&
        is_any_keyword(token, {"temp", "temporary", "local", "global", "pg_temp"})) {
      raise(SqlBackendEffect::creates);  // SELECT ... INTO TEMP makes a table
    }
    switch (kind_) {
      case Kind::prepare:
        // PREPARE TRANSACTION 'gid' is two-phase commit.
        if (position_ == 3 &&
            !(is_keyword(previous_, "transaction") && token.kind == TokenKind::string_literal))
          raise(SqlBackendEffect::creates);
        if (position_ == 2 && !is_keyword(token, "transaction")) raise(SqlBackendEffect::creates);
        break;
      case Kind::declare:
        if (is_keyword(previous_, "with") && is_keyword(token, "hold")) raise(SqlBackendEffect::creates);
        break;
      case Kind::create:
        if (!past_create_options_ && is_any_keyword(token, {"temp", "temporary"})) temporary_ = true;
        past_create_options_ =
            past_create_options_ || !is_any_keyword(token, {"or", "replace", "global", "local"});
        if (is_any_name(token, {"pg_temp"})) temporary_ = true;
        if (is_keyword(previous_, "commit") && is_keyword(token, "drop")) dropped_at_commit_ = true;
        break;
      case Kind::other:
        break;
    }
    previous_ = token;
  }

  [[nodiscard]] bool creates_an_object() const { return kind_ == Kind::create; }

  [[nodiscard]] SqlBackendEffect effect() const {
    if (temporary_)
      return combine(effect_, dropped_at_commit_ ? SqlBackendEffect::touches : SqlBackendEffect::creates);
    return effect_;
  }

 private:
  enum class Kind { other, prepare, declare, create };

  void on_first_word(const Token& token) {
    previous_ = token;
    selects_ = is_any_keyword(token, {"select", "with"}) || token.kind == TokenKind::open_paren;
    plain_select_ = is_keyword(token, "select") && !explained_;
    if (is_keyword(token, "explain")) {
      explaining_ = true;
      explained_ = true;
      position_ = 0;
      return;
    }
    if (is_keyword(token, "listen")) return raise(SqlBackendEffect::creates);
    if (is_keyword(token, "load")) return raise(SqlBackendEffect::loads_library);
    if (is_any_keyword(token, {"unlisten", "deallocate", "close", "discard", "drop", "do", "call"}))
      return raise(SqlBackendEffect::touches);
    if (is_keyword(token, "prepare")) kind_ = Kind::prepare;
    if (is_keyword(token, "declare")) kind_ = Kind::declare;
    if (is_keyword(token, "create")) kind_ = Kind::create;
  }

  void raise(SqlBackendEffect effect) { effect_ = combine(effect_, effect); }

  std::size_t position_ = 0;
  Kind kind_ = Kind::other;
  bool selects_ = false;
  bool explaining_ = false;
  bool explained_ = false;     // under EXPLAIN, with or without ANALYZE
  bool plain_select_ = false;  // a SELECT, not under EXPLAIN
  Token previous_;
  SqlBackendEffect effect_ = SqlBackendEffect::none;
  bool past_create_options_ = false;
  bool temporary_ = false;
  bool dropped_at_commit_ = false;
};

SqlBackendEffect backend_effect(std::string_view sql) {
  Lexer lexer(sql);
  SqlBackendEffect effect = SqlBackendEffect::none;
  BackendStatement statement;
  // After a CREATE, a ';' may be inside its body (BEGIN ATOMIC, a rule's actions): what follows
  // may not run now, so a lock there is asked about.
  bool after_create = false;
  for (Token token = lexer.next();; token = lexer.next()) {
    if (token.kind == TokenKind::end || token.kind == TokenKind::semicolon) {
      const SqlBackendEffect own = statement.effect();
      effect = combine(effect, after_create && own == SqlBackendEffect::takes_session_lock
                                   ? SqlBackendEffect::creates
                                   : own);
      if (token.kind == TokenKind::end) return effect;
      after_create = after_create || statement.creates_an_object();
      statement = BackendStatement{};
      continue;
    }
    statement.feed(token);
  }
}

// CREATE [OR REPLACE] / ALTER / DROP of what decides which functions may change settings: the
// object's kind is within its statement's first few words (CREATE CONSTRAINT TRIGGER, DROP
// FUNCTION IF EXISTS, CREATE OR REPLACE anything).
bool changes_functions(std::string_view sql) {
  bool catalog_statement = false;
  return any_token(sql, [&](const Token& token, std::size_t position) {
    if (position == 1) catalog_statement = is_any_keyword(token, {"create", "alter", "drop"});
    return catalog_statement && position > 1 && position <= 4 &&
           is_any_keyword(token, {"function", "procedure", "routine", "trigger", "extension", "replace"});
  });
}

// The words that open a statement which may write to a table (a trigger's function runs), or hide
// one (WITH, EXPLAIN ANALYZE): the cheap look before the lexer.
bool opens_with_write(std::string_view sql, std::size_t from) {
  static constexpr std::array<std::string_view, 8> kWords = {"insert", "update", "delete",  "merge",
                                                             "copy",   "with",   "explain", "truncate"};
  while (from < sql.size() && is_space(sql[from])) ++from;
  if (from == sql.size()) return false;
  if (sql[from] == '-' || sql[from] == '/') return true;  // a comment: left to the lexer
  return std::any_of(kWords.begin(), kWords.end(),
                     [&](std::string_view word) { return letters_at(sql, from, word); });
}

bool may_write(std::string_view sql) {
  if (opens_with_write(sql, 0)) return true;
  for (std::size_t semicolon = sql.find(';'); semicolon != std::string_view::npos;
       semicolon = sql.find(';', semicolon + 1)) {
    if (opens_with_write(sql, semicolon + 1)) return true;
  }
  return false;
}

// A function or table name as written: a word, or a quoted identifier's inside (empty for
// anything else).
std::string_view name_of(const Token& token) {
  if (token.kind == TokenKind::word) return token.text;
  const std::string_view text = token.text;
  if (token.kind == TokenKind::other && text.size() >= 3 && text.front() == '"' && text.back() == '"')
    return text.substr(1, text.size() - 2);
  return {};
}

// `name` in `sorted` (lower case), ASCII letters compared without regard to case.
bool contains_folded(const std::vector<std::string>& sorted, std::string_view name) {
  if (name.empty() || sorted.empty()) return false;
  const auto less = [](std::string_view a, std::string_view b) {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                        [](char x, char y) { return ascii_lower(x) < ascii_lower(y); });
  };
  const auto found =
      std::lower_bound(sorted.begin(), sorted.end(), name,
                       [&](const std::string& entry, std::string_view key) { return less(entry, key); });
  return found != sorted.end() && !less(name, *found);
}

bool is_write_keyword(const Token& token) {
  return is_any_keyword(token, {"insert", "update", "delete", "merge", "copy", "truncate"});
}

bool scan_calls(std::string_view sql, const WatchedNames& watched) {
  Lexer lexer(sql);
  Token previous;
  bool writes = false;       // in this statement
  bool names_table = false;  // a watched table, in this statement
  for (Token token = lexer.next();; token = lexer.next()) {
    if (token.kind == TokenKind::end || token.kind == TokenKind::semicolon) {
      if (writes && (names_table || watched.everything)) return true;
      if (token.kind == TokenKind::end) return false;
      writes = false;
      names_table = false;
    } else if (token.kind == TokenKind::open_paren) {
      const std::string_view name = name_of(previous);
      if (!name.empty() && (watched.everything || contains_folded(watched.functions, name))) return true;
    } else {
      writes = writes || is_write_keyword(token);
      names_table = names_table || contains_folded(watched.tables, name_of(token));
    }
    previous = token;
  }
}

}  // namespace

SqlPreparedUse find_sql_prepared_use(std::string_view sql) {
  return (command_words(sql) & kPreparedWord) != 0 ? prepared_use(sql) : SqlPreparedUse{};
}

SqlSessionEffect find_sql_session_effect(std::string_view sql) {
  return (command_words(sql) & kSessionWord) != 0 ? session_effect(sql) : SqlSessionEffect::none;
}

SqlBackendEffect find_sql_backend_effect(std::string_view sql) {
  return (command_words(sql) & kBackendWord) != 0 ? backend_effect(sql) : SqlBackendEffect::none;
}

SqlCommands find_sql_commands(std::string_view sql) {
  const unsigned words = command_words(sql);
  SqlCommands commands;
  if ((words & kPreparedWord) != 0) commands.prepared = prepared_use(sql);
  if ((words & kSessionWord) != 0) commands.session = session_effect(sql);
  if ((words & kBackendWord) != 0) commands.backend = backend_effect(sql);
  if ((words & kCatalogWord) != 0) commands.changes_functions = changes_functions(sql);
  return commands;
}

bool may_call_functions(std::string_view sql) {
  return sql.find('(') != std::string_view::npos || may_write(sql);
}

bool calls_watched(std::string_view sql, const WatchedNames& watched) {
  if (watched.none()) return false;
  const bool calls =
      (watched.everything || !watched.functions.empty()) && sql.find('(') != std::string_view::npos;
  if (!calls && !((watched.everything || !watched.tables.empty()) && may_write(sql))) return false;
  return scan_calls(sql, watched);
}

namespace {

// A name token's value: a word folded, a "quoted identifier" unescaped.
std::optional<std::string> identifier_value(const Token& token) {
  if (token.kind == TokenKind::word) {
    return ascii_lowered(token.text);
  }
  const std::string_view text = token.text;
  if (token.kind != TokenKind::other || text.size() < 3 || text.front() != '"' || text.back() != '"') {
    return std::nullopt;  // not a quoted identifier, or the empty one PostgreSQL rejects
  }
  std::string name;
  for (std::size_t i = 1; i + 1 < text.size(); ++i) {
    name += text[i];
    if (text[i] == '"') ++i;  // "" inside the quotes is one "
  }
  return name;
}

// A '...' literal's text, doubled quotes undone; nullopt for any other token (E'...' included).
std::optional<std::string> plain_string_value(const Token& token) {
  const std::string_view text = token.text;
  if (token.kind != TokenKind::string_literal || text.size() < 2 || text.front() != '\'') return std::nullopt;
  std::string value;
  for (std::size_t i = 1; i + 1 < text.size(); ++i) {
    value += text[i];
    if (text[i] == '\'') ++i;
  }
  return value;
}

// A setting's name, `first` being its first part: parts joined by '.', each folded like an
// identifier. `after` gets the token that follows the name.
std::optional<std::string> dotted_name(Lexer& lexer, const Token& first, Token& after) {
  std::string name;
  Token part = first;
  for (;;) {
    const auto value = identifier_value(part);
    if (!value) {
      after = part;
      return std::nullopt;
    }
    name += *value;
    after = lexer.next();
    if (after.kind != TokenKind::other || after.text != ".") return name;
    name += '.';
    part = lexer.next();
  }
}

}  // namespace

std::vector<std::string> find_custom_setting_names(std::string_view sql) {
  Lexer lexer(sql);
  std::vector<std::string> names;
  const auto keep = [&](std::optional<std::string> name) {
    if (name && name->find('.') != std::string::npos) names.push_back(std::move(*name));
  };
  bool statement_start = true;
  Token token = lexer.next();
  while (token.kind != TokenKind::end) {
    const bool at_start = statement_start;
    statement_start = token.kind == TokenKind::semicolon;
    if (is_keyword(token, "set_config")) {
      token = lexer.next();
      if (token.kind != TokenKind::open_paren) continue;  // looked at again
      token = lexer.next();
      keep(plain_string_value(token));
      continue;
    }
    if (at_start && (is_keyword(token, "set") || is_keyword(token, "reset"))) {
      token = lexer.next();
      if (is_keyword(token, "session") || is_keyword(token, "local")) token = lexer.next();
      Token after;
      keep(dotted_name(lexer, token, after));
      token = after;  // looked at again: it may end the statement
      continue;
    }
    token = lexer.next();
  }
  return names;
}

std::optional<std::string> lone_deallocate_name(std::string_view sql) {
  Lexer lexer(sql);
  if (!is_keyword(lexer.next(), "deallocate")) return std::nullopt;
  Token name = lexer.next();
  Token after = lexer.next();
  // PREPARE is a noise word, unless it is the name itself ("DEALLOCATE prepare").
  if (is_keyword(name, "prepare") && after.kind != TokenKind::semicolon && after.kind != TokenKind::end) {
    name = after;
    after = lexer.next();
  }
  if (after.kind == TokenKind::semicolon) after = lexer.next();
  if (after.kind != TokenKind::end) return std::nullopt;
  return identifier_value(name);
}

}  // namespace sluice::protocol
