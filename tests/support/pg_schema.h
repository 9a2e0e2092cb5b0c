// PgTestSchema: a PostgreSQL schema of its own for one test, on the server that the
// environment variable FLATSTORE_TEST_PG names (a libpq URI; scripts/pg-cluster.sh
// start DIR prints one). Tests that need the server skip without it. TestDatabase: a
// fresh database of either engine, for tests that run one body on both.
//
// A workspace opened on uri() keeps its tables in the schema (the URI sets libpq's
// search_path), so tests never see each other's tables. The schema is dropped with
// everything in it at destruction: close every workspace on it first, since their
// connections hold locks that DROP SCHEMA waits for.
#ifndef FLATSTORE_TESTS_SUPPORT_PG_SCHEMA_H_
#define FLATSTORE_TESTS_SUPPORT_PG_SCHEMA_H_

#include <memory>
#include <ostream>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace flatstore::internal {
class PgConnection;
}

namespace flatstore::testing {

class PgTestSchema {
 public:
  // The URI FLATSTORE_TEST_PG holds; null when it is unset or empty.
  static const char* serverUri();
  // Why a test skips without a server, for GTEST_SKIP().
  static constexpr std::string_view kSkipReason =
      "set FLATSTORE_TEST_PG to a PostgreSQL URI to run this test "
      "(scripts/pg-cluster.sh start DIR prints one)";

  // Creates the empty schema fs_<prefix>_<pid>_<n> through an admin connection.
  // REQUIRES: serverUri() is not null. A failure fails the test (non-fatally); ok() is
  // false then.
  explicit PgTestSchema(std::string_view prefix);
  ~PgTestSchema();
  PgTestSchema(const PgTestSchema&) = delete;
  PgTestSchema& operator=(const PgTestSchema&) = delete;

  bool ok() const { return admin_ != nullptr; }
  const std::string& name() const { return name_; }
  // The server's URI with this schema as the search_path.
  std::string uri() const;
  // Runs `sql` (statements separated by `;`) on the admin connection, outside any
  // workspace, as another program sharing the database would.
  absl::Status execute(std::string_view sql);
  // The first column (of type text) of the first row of `sql`'s result, on the admin
  // connection; "" when there is no row or the value is NULL.
  absl::StatusOr<std::string> queryText(std::string_view sql);

 private:
  std::string name_;
  std::unique_ptr<internal::PgConnection> admin_;
};

// The engines a test parameterized over both runs on.
enum class Engine { kSqlite, kPostgres };

// "SQLite" or "PostgreSQL": the name suffix for INSTANTIATE_TEST_SUITE_P, and how
// GoogleTest prints the parameter.
std::string engineName(const ::testing::TestParamInfo<Engine>& info);
void PrintTo(Engine engine, std::ostream* os);

// A fresh database of `engine` for one test: a file in a temporary directory, or a
// PgTestSchema (close every workspace on it before destroying this).
class TestDatabase {
 public:
  TestDatabase(Engine engine, std::string_view name);

  // False for PostgreSQL without a server: the test skips then.
  bool available() const { return available_; }
  // False when the database could not be made (the test has failed already).
  bool ok() const { return !location_.empty(); }
  // What Workspace::open takes: the file's path, or the schema's URI.
  const std::string& location() const { return location_; }
  // The schema on PostgreSQL; null on SQLite.
  PgTestSchema* schema() const { return schema_.get(); }

 private:
  TempDir dir_;
  std::unique_ptr<PgTestSchema> schema_;
  bool available_ = true;
  std::string location_;
};

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_SUPPORT_PG_SCHEMA_H_
