#include "daemon/control_request.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::daemon {
namespace {

std::string error_of(std::string_view line) {
  const auto result = parse_control_request(line);
  return result.ok() ? "<no error>" : result.error();
}

ControlRequest parsed(std::string_view line) {
  auto result = parse_control_request(line);
  EXPECT_TRUE(result.ok()) << line << ": " << result.error();
  return result.ok() ? *result : ControlRequest{};
}

bool starts_with(const std::string& text, std::string_view prefix) { return text.starts_with(prefix); }

TEST(ControlRequest, EveryCommandByName) {
  const ControlCommand all[] = {ControlCommand::status,   ControlCommand::pools,    ControlCommand::clients,
                                ControlCommand::servers,  ControlCommand::teardown, ControlCommand::drain,
                                ControlCommand::pause,    ControlCommand::resume,   ControlCommand::reload,
                                ControlCommand::shutdown, ControlCommand::upgrade};
  for (const auto command : all) {
    const std::string line = "{\"cmd\":\"" + command_name(command) + "\"}";
    const auto request = parsed(line);
    EXPECT_EQ(request.command, command) << line;
    EXPECT_FALSE(request.timeout_s.has_value()) << line;
  }
}

TEST(ControlRequest, CommandNames) {
  EXPECT_EQ(command_name(ControlCommand::status), "status");
  EXPECT_EQ(command_name(ControlCommand::teardown), "teardown");
  EXPECT_EQ(command_name(ControlCommand::shutdown), "shutdown");
}

TEST(ControlRequest, WhitespaceAndCarriageReturnAreFine) {
  EXPECT_EQ(parsed("  { \"cmd\" : \"pools\" }  ").command, ControlCommand::pools);
  EXPECT_EQ(parsed("{\"cmd\":\"pools\"}\r").command, ControlCommand::pools);
  EXPECT_EQ(parsed("{\"cmd\":\"pools\"}\n").command, ControlCommand::pools);
}

TEST(ControlRequest, DrainTimeoutForms) {
  EXPECT_EQ(parsed(R"({"cmd":"drain","timeout_s":10})").timeout_s, 10.0);
  EXPECT_EQ(parsed(R"({"timeout_s":2.5,"cmd":"drain"})").timeout_s, 2.5);
  EXPECT_EQ(parsed(R"({"cmd":"drain","timeout_s":0})").timeout_s, 0.0);
  EXPECT_EQ(parsed(R"({"cmd":"drain","timeout_s":1e3})").timeout_s, 1000.0);
  EXPECT_FALSE(parsed(R"({"cmd":"drain"})").timeout_s.has_value());
  EXPECT_FALSE(parsed(R"({"cmd":"drain","timeout_s":null})").timeout_s.has_value());
}

TEST(ControlRequest, DrainTimeoutWrongType) {
  for (const char* line : {R"({"cmd":"drain","timeout_s":"10"})", R"({"cmd":"drain","timeout_s":true})",
                           R"({"cmd":"drain","timeout_s":[1]})", R"({"cmd":"drain","timeout_s":{}})"}) {
    EXPECT_TRUE(
        starts_with(error_of(line), "argument 'timeout_s' of command 'drain' must be a non-negative number"))
        << line << ": " << error_of(line);
  }
}

TEST(ControlRequest, DrainTimeoutOutOfRange) {
  EXPECT_EQ(error_of(R"({"cmd":"drain","timeout_s":-1})"),
            "argument 'timeout_s' of command 'drain' must be a non-negative number, got -1");
  EXPECT_EQ(error_of(R"({"cmd":"drain","timeout_s":-0.5})"),
            "argument 'timeout_s' of command 'drain' must be a non-negative number, got -0.5");
  EXPECT_TRUE(starts_with(error_of(R"({"cmd":"drain","timeout_s":1e12})"),
                          "argument 'timeout_s' of command 'drain' must be at most 31536000 seconds"));
  // Beyond double's range the parser itself refuses.
  EXPECT_TRUE(starts_with(error_of(R"({"cmd":"drain","timeout_s":1e400})"), "malformed JSON: "));
}

TEST(ControlRequest, MalformedJson) {
  for (const char* line : {"", "   ", "{", "{\"cmd\":\"status\"", "{\"cmd\":\"status\"} trailing",
                           "cmd=status", "{'cmd':'status'}", "{\"cmd\":\"status\",}",
                           "{\"cmd\":\"status\"}{}", "{\"cmd\":\"status\" /* comment */}"}) {
    EXPECT_TRUE(starts_with(error_of(line), "malformed JSON: ")) << line << ": " << error_of(line);
  }
}

TEST(ControlRequest, MalformedJsonMessageIsReadable) {
  const auto error = error_of("{");
  EXPECT_EQ(error.find("[json.exception"), std::string::npos) << error;
  EXPECT_NE(error.find("parse error"), std::string::npos) << error;
}

TEST(ControlRequest, BinaryGarbage) {
  const std::string garbage("\x00\xff\xfe{\x01\"cmd\x80", 10);
  EXPECT_TRUE(starts_with(error_of(garbage), "malformed JSON: ")) << error_of(garbage);
  // Invalid UTF-8 inside a string is malformed too.
  EXPECT_TRUE(starts_with(error_of("{\"cmd\":\"st\xff\"}"), "malformed JSON: "));
}

TEST(ControlRequest, LongGarbageGivesAShortMessage) {
  const std::string line = "\"" + std::string(100000, 'x');  // an unterminated string
  const auto error = error_of(line);
  EXPECT_TRUE(starts_with(error, "malformed JSON: ")) << error;
  EXPECT_LT(error.size(), 400U);
}

TEST(ControlRequest, DeepNestingRefusedBeforeParsing) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(error_of(deep), "malformed JSON: nested deeper than 64 levels");
  const std::string objects = [] {
    std::string text;
    for (int i = 0; i < 1000; ++i) text += "{\"a\":";
    return text;
  }();
  EXPECT_EQ(error_of(objects), "malformed JSON: nested deeper than 64 levels");
}

TEST(ControlRequest, NestingAtTheLimitIsParsed) {
  // 63 arrays inside the request object: 64 levels, allowed; the argument is then unknown.
  const std::string value = std::string(63, '[') + std::string(63, ']');
  EXPECT_EQ(error_of("{\"cmd\":\"status\",\"x\":" + value + "}"),
            "unknown argument 'x' for command 'status' (it takes none)");
  const std::string too_deep = std::string(64, '[') + std::string(64, ']');
  EXPECT_EQ(error_of("{\"cmd\":\"status\",\"x\":" + too_deep + "}"),
            "malformed JSON: nested deeper than 64 levels");
}

TEST(ControlRequest, BracketsInsideStringsDoNotCount) {
  const std::string brackets(1000, '[');
  EXPECT_EQ(error_of("{\"cmd\":\"" + brackets + "\"}").rfind("unknown command '[[[[", 0), 0U);
  // An escaped quote does not end the string early.
  EXPECT_TRUE(starts_with(error_of("{\"cmd\":\"a\\\"" + brackets + "\"}"), "unknown command 'a\"[[["));
}

TEST(ControlRequest, NotAnObject) {
  EXPECT_EQ(error_of("[\"status\"]"),
            "request must be a JSON object such as {\"cmd\": \"status\"}, got array");
  EXPECT_EQ(error_of("\"status\""),
            "request must be a JSON object such as {\"cmd\": \"status\"}, got string");
  EXPECT_EQ(error_of("42"), "request must be a JSON object such as {\"cmd\": \"status\"}, got number");
  EXPECT_EQ(error_of("null"), "request must be a JSON object such as {\"cmd\": \"status\"}, got null");
  EXPECT_EQ(error_of("true"), "request must be a JSON object such as {\"cmd\": \"status\"}, got boolean");
}

TEST(ControlRequest, MissingCommand) {
  const std::string expected =
      "missing \"cmd\"; expected one of status, pools, clients, servers, teardown, drain, pause, resume, "
      "reload, "
      "shutdown, upgrade";
  EXPECT_EQ(error_of("{}"), expected);
  EXPECT_EQ(error_of(R"({"command":"status"})"), expected);
}

TEST(ControlRequest, CommandNotAString) {
  EXPECT_EQ(error_of(R"({"cmd":1})"), "\"cmd\" must be a string, got number");
  EXPECT_EQ(error_of(R"({"cmd":null})"), "\"cmd\" must be a string, got null");
  EXPECT_EQ(error_of(R"({"cmd":["status"]})"), "\"cmd\" must be a string, got array");
  EXPECT_EQ(error_of(R"({"cmd":{"name":"status"}})"), "\"cmd\" must be a string, got object");
  EXPECT_EQ(error_of(R"({"cmd":false})"), "\"cmd\" must be a string, got boolean");
}

TEST(ControlRequest, UnknownCommand) {
  EXPECT_EQ(
      error_of(R"({"cmd":"stop"})"),
      "unknown command 'stop'; expected one of status, pools, clients, servers, teardown, drain, pause, "
      "resume, reload, shutdown, upgrade");
  EXPECT_TRUE(starts_with(error_of(R"({"cmd":""})"), "unknown command ''; expected one of"));
  // Case matters: commands are lower case.
  EXPECT_TRUE(starts_with(error_of(R"({"cmd":"STATUS"})"), "unknown command 'STATUS'"));
}

TEST(ControlRequest, UnknownCommandNameIsTruncated) {
  const std::string name(10000, 'y');
  const auto error = error_of("{\"cmd\":\"" + name + "\"}");
  EXPECT_TRUE(starts_with(error, "unknown command 'yyyy")) << error;
  EXPECT_LT(error.size(), 300U);
}

TEST(ControlRequest, UnknownArguments) {
  EXPECT_EQ(error_of(R"({"cmd":"status","verbose":true})"),
            "unknown argument 'verbose' for command 'status' (it takes none)");
  EXPECT_EQ(error_of(R"({"cmd":"pause","timeout_s":5})"),
            "unknown argument 'timeout_s' for command 'pause' (it takes none)");
  EXPECT_EQ(error_of(R"({"cmd":"drain","timeout":5})"),
            "unknown argument 'timeout' for command 'drain' (expected timeout_s)");
  EXPECT_EQ(error_of(R"({"cmd":"drain","timeout_s":5,"wait":true})"),
            "unknown argument 'wait' for command 'drain' (expected timeout_s)");
}

TEST(ControlRequest, UpgradeTakesABinaryAndATimeout) {
  const auto request = parsed(R"({"cmd":"upgrade","binary":"/usr/bin/sluiced","timeout_s":5})");
  EXPECT_EQ(request.command, ControlCommand::upgrade);
  EXPECT_EQ(request.binary, "/usr/bin/sluiced");
  EXPECT_EQ(request.timeout_s, 5.0);
  EXPECT_FALSE(parsed(R"({"cmd":"upgrade"})").binary.has_value());
  EXPECT_EQ(error_of(R"({"cmd":"upgrade","binary":""})"),
            "argument 'binary' of command 'upgrade' must be a non-empty path");
  EXPECT_EQ(error_of(R"({"cmd":"upgrade","binary":7})"),
            "argument 'binary' of command 'upgrade' must be a non-empty path");
  EXPECT_EQ(error_of(R"({"cmd":"upgrade","timeout_s":-1})"),
            "argument 'timeout_s' of command 'upgrade' must be a non-negative number, got -1");
  EXPECT_EQ(error_of(R"({"cmd":"upgrade","now":true})"),
            "unknown argument 'now' for command 'upgrade' (expected binary, timeout_s)");
  EXPECT_EQ(error_of(R"({"cmd":"drain","binary":"/bin/true"})"),
            "unknown argument 'binary' for command 'drain' (expected timeout_s)");
}

}  // namespace
}  // namespace sluice::daemon
