// runtime/sqlite.h's Statement: a bind that SQLite refuses fails the step instead of
// running the statement with that parameter NULL.
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/sqlite.h"
#include "tests/support/temp_dir.h"

namespace flatstore::internal {
namespace {

using ::flatstore::testing::TempDir;
using ::testing::HasSubstr;

class SqliteStatementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Connection::open(dir_.file("statement.db"), /*read_only=*/false);
    ASSERT_TRUE(c.ok()) << c.status();
    db_ = std::move(*c);
    ASSERT_TRUE(db_->exec("CREATE TABLE t(v)").ok());
    // A length limit small enough to pass with a short string.
    sqlite3_limit(db_->db(), SQLITE_LIMIT_LENGTH, 100);
  }

  int64_t rows(const char* where) {
    auto count = db_->prepare(std::string("SELECT count(*) FROM t WHERE ") + where);
    EXPECT_TRUE(count.ok()) << count.status();
    auto row = count->step();
    EXPECT_TRUE(row.ok() && *row);
    return count->columnInt(0);
  }

  TempDir dir_;
  std::unique_ptr<Connection> db_;
};

TEST_F(SqliteStatementTest, TextPastTheLengthLimitFailsTheStep) {
  auto insert = db_->prepare("INSERT INTO t(v) VALUES (?)");
  ASSERT_TRUE(insert.ok()) << insert.status();
  insert->bindText(1, std::string(200, 'x'));
  absl::Status s = insert->run("t");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("binding a parameter"));
  EXPECT_EQ(rows("1"), 0) << "the statement ran with the parameter NULL";

  // After a reset the statement binds and runs again.
  insert->reset();
  insert->bindText(1, "short");
  ASSERT_TRUE(insert->run("t").ok());
  EXPECT_EQ(rows("v = 'short'"), 1);
}

TEST_F(SqliteStatementTest, BlobPastTheLengthLimitFailsTheStep) {
  auto insert = db_->prepare("INSERT INTO t(v) VALUES (?)");
  ASSERT_TRUE(insert.ok()) << insert.status();
  std::string blob(200, '\0');
  insert->bindBlob(1, {reinterpret_cast<const uint8_t*>(blob.data()), blob.size()});
  EXPECT_FALSE(insert->run("t").ok());
  EXPECT_EQ(rows("1"), 0);
}

}  // namespace
}  // namespace flatstore::internal
