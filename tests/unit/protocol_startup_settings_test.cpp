// A client's startup settings: packet parameters and `options`, in PostgreSQL's precedence.
#include <gtest/gtest.h>

#include "protocol/sqlstate.h"
#include "protocol/startup_settings.h"

namespace {

using sluice::protocol::options_string;
using sluice::protocol::startup_settings;
using sluice::protocol::StartupPacket;
using sluice::protocol::StartupSettings;

StartupPacket packet(std::vector<std::pair<std::string_view, std::string_view>> parameters) {
  StartupPacket p;
  p.protocol_version = sluice::protocol::kProtocolVersion3;
  p.parameters = std::move(parameters);
  return p;
}

TEST(ProtocolStartupSettings, EveryParameterButUserAndDatabase) {
  const auto settings = startup_settings(packet({{"user", "app"},
                                                 {"database", "db"},
                                                 {"client_encoding", "LATIN1"},
                                                 {"DateStyle", "Postgres, MDY"},
                                                 {"application_name", "myapp"}}));
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (StartupSettings{{"application_name", "myapp"},
                                        {"client_encoding", "LATIN1"},
                                        {"datestyle", "Postgres, MDY"}}));
}

TEST(ProtocolStartupSettings, OptionsAsPostgresReadsThem) {
  const auto settings = startup_settings(
      packet({{"user", "app"},
              {"options",
               "-c work_mem=7MB  -cintervalstyle=postgres_verbose --search-path=a\\ b\\\\c -c TimeZone=UTC"},
              {"timezone", "America/Los_Angeles"}}));
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (StartupSettings{{"intervalstyle", "postgres_verbose"},
                                        {"search_path", "a b\\c"},
                                        {"timezone", "America/Los_Angeles"},  // the packet's own wins
                                        {"work_mem", "7MB"}}));
}

TEST(ProtocolStartupSettings, ANameGivenTwiceKeepsItsLastValueWhateverItsCase) {
  const auto settings = startup_settings(packet({{"options", "-c work_mem=1MB -c WORK_MEM=2MB -c geqo=off"},
                                                 {"DateStyle", "ISO"},
                                                 {"application_name", "a"},
                                                 {"datestyle", "SQL"}}));
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings,
            (StartupSettings{
                {"application_name", "a"}, {"datestyle", "SQL"}, {"geqo", "off"}, {"work_mem", "2MB"}}));
}

TEST(ProtocolStartupSettings, RefusesWhatItCannotPassOn) {
  const auto no_value = startup_settings(packet({{"options", "-c work_mem"}}));
  ASSERT_FALSE(no_value);
  EXPECT_STREQ(no_value.error().sqlstate, sluice::sqlstate::kSyntaxError);
  EXPECT_EQ(no_value.error().message, "-c work_mem requires a value");
  EXPECT_EQ(startup_settings(packet({{"options", "--work_mem"}})).error().message,
            "--work_mem requires a value");
  EXPECT_FALSE(startup_settings(packet({{"options", "-c"}})));
  const auto other_switch = startup_settings(packet({{"options", "-e"}}));
  ASSERT_FALSE(other_switch);
  EXPECT_STREQ(other_switch.error().sqlstate, sluice::sqlstate::kFeatureNotSupported);
  const auto replication = startup_settings(packet({{"replication", "database"}}));
  ASSERT_FALSE(replication);
  EXPECT_STREQ(replication.error().sqlstate, sluice::sqlstate::kFeatureNotSupported);
  EXPECT_TRUE(startup_settings(packet({{"replication", "false"}})));
}

TEST(ProtocolStartupSettings, OptionsStringEscapesWhatPostgresSplitsOn) {
  EXPECT_EQ(options_string({{"search_path", "a b\\c"}, {"work_mem", "7MB"}}),
            "-c search_path=a\\ b\\\\c -c work_mem=7MB");
  // And reads back the same.
  const auto again = startup_settings(packet({{"options", options_string({{"search_path", "a b\\c"}})}}));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, (StartupSettings{{"search_path", "a b\\c"}}));
}

}  // namespace
