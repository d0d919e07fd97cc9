// The Grafana dashboard (contrib/grafana/sluice-dashboard.json, issue 17 §2): every metric name its
// panels' PromQL (and its variables) reads exists in the /metrics of a sluiced that served traffic.
// Debian has no Grafana, so the dashboard itself is not rendered here: its queries are what can break.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "tests/integration/harness.h"
#include "tests/integration/metrics_scrape.h"

namespace {

using harness::PgConn;
using nlohmann::json;

// Every PromQL expression in the dashboard: panel targets and query variables.
std::vector<std::string> dashboard_queries(const json& dashboard) {
  std::vector<std::string> queries;
  for (const auto& panel : dashboard.at("panels")) {
    for (const auto& target : panel.value("targets", json::array())) queries.push_back(target.at("expr"));
  }
  for (const auto& variable : dashboard.at("templating").at("list")) {
    if (variable.value("type", "") == "query") queries.push_back(variable.at("definition"));
  }
  return queries;
}

std::set<std::string> metric_names(const std::vector<std::string>& queries) {
  static const std::regex name(R"(\bsluice_[a-zA-Z0-9_]+)");
  std::set<std::string> names;
  for (const auto& query : queries) {
    for (auto it = std::sregex_iterator(query.begin(), query.end(), name); it != std::sregex_iterator(); ++it)
      names.insert(it->str());
  }
  return names;
}

TEST(MetricsDashboard, EveryMetricItsPanelsQueryExistsInALiveScrape) {
  std::ifstream file(SLUICE_SOURCE_DIR "/contrib/grafana/sluice-dashboard.json");
  ASSERT_TRUE(file) << "contrib/grafana/sluice-dashboard.json is missing";
  const json dashboard = json::parse(file);
  const auto queries = dashboard_queries(dashboard);
  const auto names = metric_names(queries);
  ASSERT_GE(dashboard.at("panels").size(), 5U);
  ASSERT_GE(names.size(), 15U) << "the dashboard's queries were not found";

  harness::Sluiced sluiced(harness::metrics_config({.pool_size = 1}));
  {  // Traffic: transactions, a wait, an error, a rollback teardown.
    const PgConn first = harness::connect(sluiced.conninfo());
    const PgConn second = harness::connect(sluiced.conninfo());
    harness::exec_ok(first, "begin");
    ASSERT_EQ(PQsendQuery(second.get(), "select 1"), 1);
    harness::exec_ok(first, "select 1");
    harness::exec_ok(first, "commit");
    while (PGresult* result = PQgetResult(second.get())) PQclear(result);
    PQclear(harness::exec(first, "select * from no_such_table").release());
    harness::exec_ok(first, "begin");
  }
  const auto metrics = harness::scrape(harness::metrics_socket(sluiced));
  for (const auto& metric : names) {
    EXPECT_TRUE(metrics.has_sample(metric)) << "the dashboard queries " << metric << ", which /metrics lacks";
  }
  // Each panel says what it shows.
  for (const auto& panel : dashboard.at("panels")) {
    EXPECT_FALSE(panel.value("title", "").empty());
    EXPECT_FALSE(panel.value("targets", json::array()).empty()) << panel.value("title", "");
  }
}

}  // namespace
