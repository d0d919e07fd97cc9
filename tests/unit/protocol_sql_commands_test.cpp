// The SQL-level prepared-statement finder decides which simple queries transaction pooling
// refuses: a miss lets a client's statement vanish with its server, a false hit refuses a
// harmless query. Each lexing rule of PostgreSQL it imitates gets a case here.
#include <gtest/gtest.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/sql_commands.h"

namespace sluice::protocol {
namespace {

using enum SqlPreparedCommand;

SqlPreparedCommand command_of(std::string_view sql) { return find_sql_prepared_use(sql).command; }

TEST(SqlCommandsTest, NamedCommandsAtStatementStart) {
  EXPECT_EQ(command_of("PREPARE foo AS SELECT 1"), prepare);
  EXPECT_EQ(command_of("prepare foo (int) AS SELECT $1"), prepare);
  EXPECT_EQ(command_of("EXECUTE foo"), execute);
  EXPECT_EQ(command_of("execute foo(1, 'a')"), execute);
  EXPECT_EQ(command_of("DEALLOCATE foo"), deallocate);
  EXPECT_EQ(command_of("DEALLOCATE PREPARE foo"), deallocate);
  EXPECT_EQ(command_of("DEALLOCATE \"ALL\""), deallocate);  // a quoted ALL is a name
}

TEST(SqlCommandsTest, KeywordsAreCaseInsensitive) {
  EXPECT_EQ(command_of("PrEpArE foo AS SELECT 1"), prepare);
  EXPECT_EQ(command_of("eXeCuTe foo"), execute);
  EXPECT_EQ(command_of("Deallocate Prepare All"), deallocate_all);
  EXPECT_EQ(command_of("DiScArD aLl"), discard_all);
}

TEST(SqlCommandsTest, KeywordIsReportedAsWritten) {
  const std::string sql = "  prepare foo AS SELECT 1";
  const SqlPreparedUse use = find_sql_prepared_use(sql);
  EXPECT_EQ(use.command, prepare);
  EXPECT_EQ(use.keyword, "prepare");
  // The view points into the caller's text, not at a copy.
  EXPECT_EQ(use.keyword.data(), sql.data() + 2);

  EXPECT_EQ(find_sql_prepared_use("EXECUTE q").keyword, "EXECUTE");
  EXPECT_EQ(find_sql_prepared_use("DeAllocate prepare ALL").keyword, "DeAllocate");
  EXPECT_EQ(find_sql_prepared_use("discard ALL").keyword, "discard");
  EXPECT_EQ(find_sql_prepared_use("explain Execute q").keyword, "Execute");
  EXPECT_EQ(find_sql_prepared_use("create table t as execute q").keyword, "execute");
  EXPECT_TRUE(find_sql_prepared_use("SELECT 1").keyword.empty());
}

TEST(SqlCommandsTest, EmptyAndPlainQueriesAreNone) {
  EXPECT_EQ(command_of(""), none);
  EXPECT_EQ(command_of("   \n\t"), none);
  EXPECT_EQ(command_of(";;;"), none);
  EXPECT_EQ(command_of("SELECT 1"), none);
  EXPECT_EQ(command_of("SELECT 1; SELECT 2"), none);
  EXPECT_EQ(command_of("BEGIN; UPDATE t SET a = 1; COMMIT"), none);
  EXPECT_EQ(command_of("SELECT prepare, execute FROM t"), none);  // not leading words
  EXPECT_EQ(command_of("SELECT 1 AS execute"), none);
}

TEST(SqlCommandsTest, WordsMustBeWhole) {
  EXPECT_EQ(command_of("PREPARED_X"), none);
  EXPECT_EQ(command_of("EXECUTES foo"), none);
  EXPECT_EQ(command_of("prepare_foo AS SELECT 1"), none);
  EXPECT_EQ(command_of("prepare$1 x"), none);  // '$' continues an identifier
  EXPECT_EQ(command_of("DISCARD ALLX"), none);
  EXPECT_EQ(command_of("DEALLOCATE ALL_OF_THEM"), deallocate);  // a name, not ALL
  // A keyword ends at whitespace, a comment, '(' or the end of input.
  EXPECT_EQ(command_of("PREPARE"), prepare);
  EXPECT_EQ(command_of("EXECUTE(1)"), execute);
  EXPECT_EQ(command_of("EXECUTE/* c */q"), execute);
  EXPECT_EQ(command_of("EXECUTE--c\nq"), execute);
  EXPECT_EQ(command_of("EXECUTE;"), execute);
}

TEST(SqlCommandsTest, CommentsAreSkippedBeforeAndBetweenWords) {
  EXPECT_EQ(command_of("  /* c /* nested */ */ execute foo(1)"), execute);
  EXPECT_EQ(command_of("-- PREPARE x\nSELECT 1"), none);
  EXPECT_EQ(command_of("-- comment\r\nPREPARE x AS SELECT 1"), prepare);
  EXPECT_EQ(command_of("/* PREPARE x */ SELECT 1"), none);
  EXPECT_EQ(command_of("DEALLOCATE /* x */ PREPARE -- y\n ALL"), deallocate_all);
  EXPECT_EQ(command_of("DISCARD/**/ALL"), discard_all);
  // Nesting: the first */ closes only the inner comment.
  EXPECT_EQ(command_of("/* a /* b */ PREPARE x */ SELECT 1"), none);
  EXPECT_EQ(command_of("/* a /* b */ c */ PREPARE x AS SELECT 1"), prepare);
  EXPECT_EQ(command_of("/*/ still a comment */ EXECUTE q"), execute);
  EXPECT_EQ(command_of("SELECT 1 --; PREPARE x\n"), none);
  EXPECT_EQ(command_of("SELECT 1 /*; PREPARE x */"), none);
}

TEST(SqlCommandsTest, OperatorsEndAtCommentStarts) {
  EXPECT_EQ(command_of("SELECT 1+--; PREPARE x\n2"), none);
  EXPECT_EQ(command_of("SELECT 1 -/* ; */ 2; EXECUTE q"), execute);
  EXPECT_EQ(command_of("SELECT 4 / 2; SELECT 4 - 2"), none);
}

TEST(SqlCommandsTest, StatementsSplitOnSemicolons) {
  EXPECT_EQ(command_of("SELECT 1; deallocate foo"), deallocate);
  EXPECT_EQ(command_of("SELECT 1;PREPARE x AS SELECT 1"), prepare);
  EXPECT_EQ(command_of("SELECT (1; EXECUTE q"), execute);  // every unquoted ';' splits
  EXPECT_EQ(command_of("SELECT 1; ; EXECUTE q;"), execute);
}

TEST(SqlCommandsTest, StringLiteralsAreSkipped) {
  EXPECT_EQ(command_of("SELECT 'PREPARE x'; SELECT 1"), none);
  EXPECT_EQ(command_of("SELECT ';PREPARE x AS SELECT 1'"), none);
  EXPECT_EQ(command_of("SELECT 'it''s; PREPARE x'"), none);
  EXPECT_EQ(command_of("SELECT 'a'''; PREPARE x AS SELECT 1"), prepare);
  // Standard strings keep backslashes literally, so this quote closes the string.
  EXPECT_EQ(command_of("SELECT 'a\\'; PREPARE x AS SELECT 1"), prepare);
  EXPECT_EQ(command_of("SELECT B'101'; EXECUTE q"), execute);
  EXPECT_EQ(command_of("SELECT X'1f'';EXECUTE q'"), none);
  EXPECT_EQ(command_of("SELECT N'x;EXECUTE q'"), none);
}

TEST(SqlCommandsTest, EscapeStringsAllowBackslashEscapes) {
  EXPECT_EQ(command_of("E'\\';PREPARE'"), none);
  EXPECT_EQ(command_of("SELECT e'\\'; EXECUTE q'"), none);
  EXPECT_EQ(command_of("SELECT E'\\\\'; EXECUTE q"), execute);  // an escaped backslash
  EXPECT_EQ(command_of("SELECT E'it''s; EXECUTE q'"), none);
  // Only a lone E starts an escape string; "typE'...'" is an identifier and a plain string.
  EXPECT_EQ(command_of("SELECT typE'\\'; EXECUTE q"), execute);
}

TEST(SqlCommandsTest, UnicodeEscapeStringsAreSkipped) {
  EXPECT_EQ(command_of("SELECT U&'d\\0061t;EXECUTE q'"), none);
  EXPECT_EQ(command_of("SELECT U&\"d;EXECUTE q\""), none);
}

TEST(SqlCommandsTest, QuotedIdentifiersAreSkipped) {
  EXPECT_EQ(command_of("SELECT \"PREPARE\""), none);
  EXPECT_EQ(command_of("\"PREPARE\" x AS SELECT 1"), none);  // quoted: not a keyword
  EXPECT_EQ(command_of("SELECT \"a;EXECUTE q\""), none);
  EXPECT_EQ(command_of("SELECT \"a\"\";EXECUTE q\""), none);
  EXPECT_EQ(command_of("SELECT \"a\"; EXECUTE q"), execute);
}

TEST(SqlCommandsTest, DollarQuotesAreSkipped) {
  EXPECT_EQ(command_of("SELECT $$; PREPARE x$$"), none);
  EXPECT_EQ(command_of("SELECT $a$ ; $b$ $a$; EXECUTE y"), execute);
  EXPECT_EQ(command_of("SELECT $a$ ; $A$; EXECUTE y $a$"), none);  // tags are case-sensitive
  EXPECT_EQ(command_of("SELECT $tag_1$ x $tag$; EXECUTE q $tag_1$"), none);
  EXPECT_EQ(command_of("SELECT $ab$ $b$ab$; EXECUTE q"), execute);
  EXPECT_EQ(command_of("DO $$BEGIN EXECUTE 'x'; END$$"), none);
  EXPECT_EQ(command_of("DO $body$ PREPARE x; $body$; SELECT 1"), none);
  EXPECT_EQ(command_of("SELECT $$$$; EXECUTE q"), execute);  // empty body
}

TEST(SqlCommandsTest, DollarSignsThatDoNotOpenQuotes) {
  EXPECT_EQ(command_of("SELECT $1; PREPARE x AS SELECT 1"), prepare);
  EXPECT_EQ(command_of("SELECT $1$; EXECUTE q $1$"), execute);  // a tag cannot start with a digit
  EXPECT_EQ(command_of("SELECT x$$; EXECUTE q $$"), execute);   // '$' inside an identifier
  EXPECT_EQ(command_of("SELECT $a; EXECUTE q"), execute);       // no closing '$': a lone '$'
  EXPECT_EQ(command_of("SELECT $; EXECUTE q"), execute);
  EXPECT_EQ(command_of("SELECT 1 $"), none);
}

TEST(SqlCommandsTest, Deallocate) {
  EXPECT_EQ(command_of("DEALLOCATE ALL"), deallocate_all);
  EXPECT_EQ(command_of("deallocate prepare all"), deallocate_all);
  EXPECT_EQ(command_of("DEALLOCATE PREPARE foo"), deallocate);
  // "prepare" alone is a statement name: DEALLOCATE prepare.
  EXPECT_EQ(command_of("DEALLOCATE prepare"), deallocate);
  EXPECT_EQ(command_of("DEALLOCATE prepare; DISCARD ALL"), deallocate);
}

TEST(SqlCommandsTest, Discard) {
  EXPECT_EQ(command_of("DISCARD ALL"), discard_all);
  EXPECT_EQ(command_of("discard plans"), none);
  EXPECT_EQ(command_of("DISCARD TEMP"), none);
  EXPECT_EQ(command_of("DISCARD SEQUENCES"), none);
  EXPECT_EQ(command_of("DISCARD"), none);
}

TEST(SqlCommandsTest, NamedCommandsWinOverResets) {
  EXPECT_EQ(command_of("DISCARD ALL; PREPARE x AS SELECT 1"), prepare);
  EXPECT_EQ(command_of("DEALLOCATE x; DISCARD ALL"), deallocate);
  EXPECT_EQ(command_of("DEALLOCATE ALL; EXECUTE q"), execute);
}

TEST(SqlCommandsTest, FirstNamedCommandIsReported) {
  const std::string sql = "SELECT 1; EXECUTE a; PREPARE b AS SELECT 1";
  const SqlPreparedUse use = find_sql_prepared_use(sql);
  EXPECT_EQ(use.command, execute);
  EXPECT_EQ(use.keyword.data(), sql.data() + 10);
}

TEST(SqlCommandsTest, LastResetIsReported) {
  EXPECT_EQ(command_of("DEALLOCATE ALL; DISCARD ALL"), discard_all);
  EXPECT_EQ(command_of("DISCARD ALL; DEALLOCATE ALL; SELECT 1"), deallocate_all);
  const std::string sql = "DISCARD ALL; discard all";
  EXPECT_EQ(find_sql_prepared_use(sql).keyword.data(), sql.data() + 13);
}

TEST(SqlCommandsTest, PrepareTransactionIsTwoPhaseCommit) {
  EXPECT_EQ(command_of("PREPARE TRANSACTION 'gid'"), none);
  EXPECT_EQ(command_of("prepare transaction $$gid$$"), none);
  EXPECT_EQ(command_of("PREPARE TRANSACTION E'g\\'id'"), none);
  EXPECT_EQ(command_of("PREPARE TRANSACTION 'gid'; EXECUTE q"), execute);
  EXPECT_EQ(command_of("COMMIT PREPARED 'gid'"), none);
  EXPECT_EQ(command_of("ROLLBACK PREPARED 'gid'"), none);
  // TRANSACTION is an unreserved keyword, so it can name a prepared statement.
  EXPECT_EQ(command_of("PREPARE transaction AS SELECT 1"), prepare);
  EXPECT_EQ(command_of("PREPARE transaction (int) AS SELECT $1"), prepare);
}

TEST(SqlCommandsTest, ExplainExecute) {
  EXPECT_EQ(command_of("EXPLAIN EXECUTE q"), execute);
  EXPECT_EQ(command_of("EXPLAIN ANALYZE EXECUTE q"), execute);
  EXPECT_EQ(command_of("explain analyse verbose execute q(1)"), execute);
  EXPECT_EQ(command_of("EXPLAIN VERBOSE EXECUTE q"), execute);
  EXPECT_EQ(command_of("EXPLAIN (ANALYZE, COSTS OFF) EXECUTE q"), execute);
  EXPECT_EQ(command_of("EXPLAIN (FORMAT 'json', SETTINGS) /* c */ EXECUTE q"), execute);
  EXPECT_EQ(command_of("EXPLAIN ANALYZE CREATE TEMP TABLE t AS EXECUTE q"), execute);
  EXPECT_EQ(command_of("EXPLAIN SELECT 1"), none);
  EXPECT_EQ(command_of("EXPLAIN (ANALYZE) SELECT 1; SELECT 2"), none);
  // EXPLAIN cannot wrap these, so the server rejects them before anything is prepared.
  EXPECT_EQ(command_of("EXPLAIN PREPARE x AS SELECT 1"), none);
  EXPECT_EQ(command_of("EXPLAIN DEALLOCATE ALL"), none);
  EXPECT_EQ(command_of("EXPLAIN EXPLAIN EXECUTE q"), none);
}

TEST(SqlCommandsTest, CreateTableAsExecute) {
  EXPECT_EQ(command_of("CREATE TEMP TABLE t AS EXECUTE q"), execute);
  EXPECT_EQ(command_of("CREATE TABLE t AS EXECUTE q(1)"), execute);
  EXPECT_EQ(command_of("create temporary table t as execute q"), execute);
  EXPECT_EQ(command_of("CREATE UNLOGGED TABLE t AS EXECUTE q"), execute);
  EXPECT_EQ(command_of("CREATE LOCAL TEMP TABLE t AS EXECUTE q"), execute);
  EXPECT_EQ(command_of("CREATE TABLE IF NOT EXISTS s.t (a, b) USING heap WITH (fillfactor = 70) "
                       "ON COMMIT PRESERVE ROWS TABLESPACE ts AS EXECUTE q WITH NO DATA"),
            execute);
  EXPECT_EQ(command_of("CREATE TABLE \"AS\" AS EXECUTE q"), execute);
  EXPECT_EQ(command_of("CREATE TABLE t AS SELECT 1"), none);
  // Only the first top-level AS starts the query; a later one is a column alias.
  EXPECT_EQ(command_of("CREATE TABLE t AS SELECT 1 AS execute"), none);
  EXPECT_EQ(command_of("CREATE TABLE t (a int GENERATED ALWAYS AS (1) STORED)"), none);
  EXPECT_EQ(command_of("CREATE MATERIALIZED VIEW v AS EXECUTE q"), none);  // not in the grammar
  EXPECT_EQ(command_of("CREATE VIEW v AS SELECT 1"), none);
  EXPECT_EQ(command_of("CREATE TABLE t AS (EXECUTE q)"), none);
}

TEST(SqlCommandsTest, UnterminatedInputReportsWhatWasFound) {
  EXPECT_EQ(command_of("PREPARE x AS SELECT 'abc"), prepare);
  EXPECT_EQ(command_of("SELECT 'abc; PREPARE x"), none);
  EXPECT_EQ(command_of("SELECT \"abc; PREPARE x"), none);
  EXPECT_EQ(command_of("SELECT $q$ abc; PREPARE x $q"), none);
  EXPECT_EQ(command_of("/* /* */ PREPARE x"), none);
  EXPECT_EQ(command_of("DISCARD ALL; SELECT 'x"), discard_all);
  EXPECT_EQ(command_of("SELECT E'abc\\"), none);
  EXPECT_EQ(command_of("-- only a comment"), none);
  EXPECT_EQ(command_of("DEALLOCATE 'x"), deallocate);
  EXPECT_EQ(command_of("SELECT $"), none);
  EXPECT_EQ(command_of("SELECT $a"), none);
  EXPECT_EQ(command_of("/"), none);
  EXPECT_EQ(command_of("-"), none);
  EXPECT_EQ(command_of("E"), none);
  EXPECT_EQ(command_of("U&"), none);
}

TEST(SqlCommandsTest, EmbeddedNulAndHighBitBytes) {
  using namespace std::string_view_literals;
  EXPECT_EQ(command_of("SELECT '\0'; EXECUTE q"sv), execute);
  EXPECT_EQ(command_of("\0EXECUTE q"sv), none);
  EXPECT_EQ(command_of("PREPARE\xc3\xa9 x"), none);  // non-ASCII bytes continue an identifier
  EXPECT_EQ(command_of("SELECT $\xc3\xa9$ ; $\xc3\xa9$; EXECUTE q"), execute);
}

TEST(SqlCommandsTest, PathologicalInputsStayLinear) {
  // Long dollar tags with many near-miss closings, deep comments, many statements:
  // each finishes quickly only if no byte is rescanned more than a constant number of times.
  constexpr std::size_t kCount = 50000;
  const std::string tag = "$" + std::string(1000, 't') + "$";
  std::string near_misses = "SELECT " + tag;
  for (std::size_t i = 0; i < kCount / 100; ++i) near_misses += "$" + std::string(999, 't') + "x";
  EXPECT_EQ(command_of(near_misses + "; EXECUTE q"), none);
  EXPECT_EQ(command_of(near_misses + tag + "; EXECUTE q"), execute);

  std::string nested;
  for (std::size_t i = 0; i < kCount; ++i) nested += "/*";
  EXPECT_EQ(command_of(nested + "*/ EXECUTE q"), none);

  std::string statements;
  for (std::size_t i = 0; i < kCount; ++i) statements += "DISCARD ALL;";
  EXPECT_EQ(command_of(statements), discard_all);
  EXPECT_EQ(command_of(statements + "EXECUTE q"), execute);

  std::string parens = "EXPLAIN " + std::string(kCount, '(') + std::string(kCount, ')') + " EXECUTE q";
  EXPECT_EQ(command_of(parens), execute);
}

TEST(SqlCommandsTest, EveryPrefixIsSafe) {
  // Cutting the input anywhere must neither crash nor read past the end (ASan builds check).
  const std::string sql =
      "/* a /* b */ */ EXPLAIN (ANALYZE) EXECUTE q; SELECT E'\\'', 'x''y', \"i\"\"d\", $t$;$t$, $1; "
      "CREATE TEMP TABLE t AS EXECUTE q; DEALLOCATE PREPARE ALL; DISCARD ALL -- end\n";
  for (std::size_t length = 0; length <= sql.size(); ++length) {
    const std::string prefix = sql.substr(0, length);  // its own buffer, so ASan sees overreads
    const SqlPreparedUse use = find_sql_prepared_use(prefix);
    if (!use.keyword.empty()) {
      EXPECT_GE(use.keyword.data(), prefix.data());
      EXPECT_LE(use.keyword.data() + use.keyword.size(), prefix.data() + prefix.size());
    }
  }
  EXPECT_EQ(command_of(sql), execute);
}

TEST(LoneDeallocateNameTest, ReadsTheNameAsPostgresDoes) {
  EXPECT_EQ(lone_deallocate_name("DEALLOCATE _pg3_5"), "_pg3_5");
  EXPECT_EQ(lone_deallocate_name("  deallocate prepare Foo ;  "), "foo");
  EXPECT_EQ(lone_deallocate_name("DEALLOCATE \"Mixed\"\"Case\";"), "Mixed\"Case");
  EXPECT_EQ(lone_deallocate_name("DEALLOCATE prepare"), "prepare");
  EXPECT_EQ(lone_deallocate_name("DEALLOCATE /* c */ PREPARE -- x\n s1"), "s1");
}

TEST(LoneDeallocateNameTest, AnythingElseIsNotALoneDeallocate) {
  EXPECT_EQ(lone_deallocate_name("DEALLOCATE a; SELECT 1"), std::nullopt);
  EXPECT_EQ(lone_deallocate_name("DEALLOCATE a b"), std::nullopt);
  EXPECT_EQ(lone_deallocate_name("DEALLOCATE \"\""), std::nullopt);
  EXPECT_EQ(lone_deallocate_name("DEALLOCATE \"unterminated"), std::nullopt);
  EXPECT_EQ(lone_deallocate_name("DEALLOCATE $1"), std::nullopt);
  EXPECT_EQ(lone_deallocate_name("DEALLOCATE"), std::nullopt);
  EXPECT_EQ(lone_deallocate_name("SELECT 1"), std::nullopt);
}

}  // namespace
}  // namespace sluice::protocol
