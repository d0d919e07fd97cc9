// Many clients on a small pool: 50 concurrent clients, each running short transactions through a
// transaction-mode pool of 5, while a direct observer watches PostgreSQL's own count of backends.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace harness {
namespace {

constexpr const char* kDatabase = "pooler_concurrency";

// A database of its own, so that the backends counted are this test's and nobody else's.
class Database {
 public:
  Database() : admin_(connect(postgres().conninfo())) {
    PQsetNoticeProcessor(
        admin_.get(), [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
    exec_ok(admin_, std::string("DROP DATABASE IF EXISTS ") + kDatabase + " WITH (FORCE)");
    exec_ok(admin_, std::string("CREATE DATABASE ") + kDatabase);
  }
  ~Database() {
    try {
      exec_ok(admin_, std::string("DROP DATABASE IF EXISTS ") + kDatabase + " WITH (FORCE)");
    } catch (const std::exception& e) {
      ADD_FAILURE() << "dropping database " << kDatabase << ": " << e.what();
    }
  }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

 private:
  PgConn admin_;
};

template <class... Parts>
std::string concat(const Parts&... parts) {
  std::string text;
  ((text += parts), ...);
  return text;
}

// Records what went wrong on worker threads, for the test's thread to report.
class Errors {
 public:
  void add(std::string error) {
    const std::lock_guard lock(mutex_);
    errors_.push_back(std::move(error));
  }
  [[nodiscard]] std::vector<std::string> take() {
    const std::lock_guard lock(mutex_);
    return std::move(errors_);
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> errors_;
};

TEST(PoolerConcurrencyTest, FiftyClientsShareFiveServers) {
  constexpr int kClients = 50;
  constexpr int kPoolSize = 5;
  constexpr int kTransactions = 20;

  const Database database;
  {
    const PgConn setup = connect(postgres().conninfo(kDatabase));
    exec_ok(setup, "CREATE TABLE work (client int, seq int, backend int, PRIMARY KEY (client, seq))");
  }
  Sluiced sluiced({.dbname = kDatabase, .pool_size = kPoolSize});

  // The observer: a direct connection, excluded from its own count by its application_name.
  const PgConn observer = connect(postgres().conninfo(kDatabase) + " application_name=harness-observer");
  const std::string count_backends =
      std::string(
          "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
          "AND application_name <> 'harness-observer' AND datname = '") +
      kDatabase + "'";
  ASSERT_EQ(scalar(observer, count_backends), "0") << "backends of " << kDatabase << " before the test";

  Errors errors;
  std::atomic<int> connected{0};
  std::atomic<int> finished{0};
  std::vector<std::thread> clients;
  clients.reserve(kClients);
  for (int client = 0; client < kClients; ++client) {
    clients.emplace_back([&, client] {
      try {
        const PgConn conn = connect(sluiced.conninfo(kDatabase));
        ++connected;
        const std::string id = std::to_string(client);
        for (int seq = 0; seq < kTransactions; ++seq) {
          exec_ok(conn, "BEGIN");
          exec_ok(conn,
                  "INSERT INTO work VALUES (" + id + ", " + std::to_string(seq) + ", pg_backend_pid())");
          // Inside its transaction a client sees its own uncommitted row, on the server it started on.
          const std::string mine =
              scalar(conn, "SELECT count(*) FROM work WHERE client = " + id +
                               " AND backend = pg_backend_pid() AND seq = " + std::to_string(seq));
          if (mine != "1") {
            errors.add(concat("client ", id, " seq ", std::to_string(seq), ": saw ", mine,
                              " of its own rows: the transaction moved to another server"));
          }
          exec_ok(conn, "COMMIT");
          // And an implicit transaction between the explicit ones.
          const std::string done = scalar(conn, "SELECT count(*) FROM work WHERE client = " + id);
          if (done != std::to_string(seq + 1)) {
            errors.add(
                concat("client ", id, " after seq ", std::to_string(seq), ": ", done, " rows committed"));
          }
        }
      } catch (const std::exception& e) {
        errors.add("client " + std::to_string(client) + ": " + e.what());
      }
      ++finished;
    });
  }

  int max_backends = 0;
  int samples = 0;
  std::string sample_error;
  while (finished.load() < kClients) {
    try {
      max_backends = std::max(max_backends, std::stoi(scalar(observer, count_backends)));
      ++samples;
    } catch (const std::exception& e) {
      sample_error = e.what();
      break;
    }
    // A sampling interval, not a wait for a condition: leave the two CI cores to the clients.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (std::thread& thread : clients) thread.join();

  ASSERT_TRUE(sample_error.empty()) << "observer: " << sample_error;
  const std::vector<std::string> failures = errors.take();
  EXPECT_TRUE(failures.empty()) << failures.size() << " failures, the first: " << failures.front();
  EXPECT_EQ(connected.load(), kClients);
  EXPECT_GE(samples, 1);
  EXPECT_GE(max_backends, 1) << "the observer never saw a pooled backend: is the count right?";
  EXPECT_LE(max_backends, kPoolSize) << "PostgreSQL saw more backends than pool_size";
  RecordProperty("max_backends", max_backends);
  RecordProperty("samples", samples);

  // Every transaction of every client is in PostgreSQL, on at most pool_size distinct backends.
  EXPECT_EQ(scalar(observer, "SELECT count(*) FROM work"), std::to_string(kClients * kTransactions));
  const int backends_used = std::stoi(scalar(observer, "SELECT count(DISTINCT backend) FROM work"));
  EXPECT_GE(backends_used, 1);
  EXPECT_LE(backends_used, kPoolSize);
  EXPECT_LE(std::stoi(scalar(observer, count_backends)), kPoolSize);
}

}  // namespace
}  // namespace harness
