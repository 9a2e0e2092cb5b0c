// Indexes added to an existing schema: a database written with schemas/evolve/v1 (no
// indexes) is opened with v2 (two indexed fields and a new field). The new indexes are
// back-filled in bounded batches in the background, and queries on the indexed fields
// are correct before, during and after the back-fill.
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "flatbuffers/idl.h"
#include "flatstore/workspace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "item_flatstore.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"

namespace flatstore::test::evolve {
namespace {

using ::flatstore::testing::TempDir;
using F = ItemFields;

constexpr int kItems = 2000;

int runWriter(const std::string& path) {
  pid_t pid = fork();
  if (pid == 0) {
    execl(FLATSTORE_EVOLVE_WRITER, FLATSTORE_EVOLVE_WRITER, path.c_str(),
          std::to_string(kItems).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// What the v1 writer stored: level = i % 17, tag "" (absent) for i % 3 == 0.
int64_t expectedLevelCount(int level) {
  int64_t n = 0;
  for (int i = 0; i < kItems; ++i) n += (i % 17 == level);
  return n;
}
int64_t expectedTagCount(const std::string& tag) {
  int64_t n = 0;
  for (int i = 0; i < kItems; ++i) n += (i % 3 != 0 && "t" + std::to_string(i % 5) == tag);
  return n;
}

int64_t indexRows(const std::string& path, const std::string& table) {
  sqlite3* db;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s;
  std::string sql = "SELECT count(*) FROM \"" + table + "\"";
  int64_t n = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    n = sqlite3_column_int64(s, 0);
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return n;
}

void checkQueries(Workspace& ws) {
  for (int level : {0, 5, 16}) {
    auto n = ws.fetch<Item>().where(F::level == level).count();
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, expectedLevelCount(level)) << "level " << level;
  }
  auto tagged = ws.fetch<Item>().where(F::tag == "t2").orderBy(F::level.descending()).all();
  ASSERT_TRUE(tagged.ok()) << tagged.status();
  EXPECT_EQ(static_cast<int64_t>(tagged->size()), expectedTagCount("t2"));
  for (size_t i = 1; i < tagged->size(); ++i) {
    EXPECT_GE((*tagged)[i - 1]->level(), (*tagged)[i]->level());
  }
  auto untagged = ws.fetch<Item>().where(F::tag.isNull()).count();
  ASSERT_TRUE(untagged.ok());
  EXPECT_EQ(*untagged, (kItems + 2) / 3);
}

// Opens `path` and expects the first use of Item to be refused with FailedPrecondition
// naming the table and `why`; the workspace, or null when it did not open.
std::unique_ptr<Workspace> openRefusingFirstUse(const std::string& path, const std::string& why) {
  auto ws = Workspace::open(path);
  EXPECT_OK(ws);
  if (!ws.ok()) return nullptr;
  auto r = (*ws)->fetch<Item>().count();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::HasSubstr("flatstore.test.evolve.Item"));
  EXPECT_THAT(std::string(r.status().message()), ::testing::HasSubstr(why));
  return std::move(*ws);
}

TEST(Backfill, OlderDatabaseGetsNewIndexesAndQueriesStayCorrect) {
  TempDir dir;
  std::string path = dir.file("evolve.db");
  ASSERT_EQ(runWriter(path), 0);

  auto ws = Workspace::open(path, {.backfill_batch = 64});
  ASSERT_OK(ws);
  // Queries before and while the back-fill runs (the first query registers the table
  // and starts it) read past the incomplete indexes.
  checkQueries(**ws);
  int rounds = 0;
  while (indexRows(path, "flatstore.test.evolve.Item$2") < kItems && rounds < 1000) {
    checkQueries(**ws);
    rounds += 1;
  }
  (*ws)->awaitIndexes();
  EXPECT_EQ(indexRows(path, "flatstore.test.evolve.Item$1"), kItems);
  EXPECT_EQ(indexRows(path, "flatstore.test.evolve.Item$2"), kItems);
  checkQueries(**ws);

  // Writes during and after the back-fill keep the indexes exact.
  ASSERT_OK((*ws)->performChangesAndWait<Item>([](TransactionContext& txn) -> absl::Status {
    auto r = ItemChangeRequest::creation();
    r.setId("new").setLevel(99).setTag("t9").setNote("added by v2");
    return txn.submit(r).status();
  }));
  EXPECT_EQ(*(*ws)->fetch<Item>().where(F::level == 99).count(), 1);
  EXPECT_EQ(*(*ws)->fetch<Item>().where(F::tag == "t9").count(), 1);

  // Reopening finds the indexes complete: no second back-fill.
  ws->reset();
  auto again = Workspace::open(path);
  ASSERT_OK(again);
  checkQueries(**again);
}

TEST(Backfill, ChangedPrimaryKeyLayoutIsRefused) {
  TempDir dir;
  std::string path = dir.file("evolve.db");
  ASSERT_EQ(runWriter(path), 0);
  {
    sqlite3* db;
    sqlite3_open(path.c_str(), &db);
    sqlite3_exec(db, "UPDATE flatstore_tables SET schema_hash = 12345", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  // open() cannot know which entities the program will use: it succeeds, and the
  // table's first use, by any call, is refused (as the guide says).
  std::unique_ptr<Workspace> ws = openRefusingFirstUse(path, "primary key changed");
  ASSERT_NE(ws, nullptr);
  auto got = ws->get<Item>("i1");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  auto written = ws->performChangesAndWait<Item>([](TransactionContext& txn) {
    auto r = ItemChangeRequest::creation();
    r.setId("new");
    return txn.submit(r).status();
  });
  EXPECT_EQ(written.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(written.status().message()), ::testing::HasSubstr("primary key changed"));
}

// Two versions that each lack a field of the other cannot share a file: bytes one
// writes would be misread by the other.
TEST(Backfill, DivergedStoredSchemaIsRefusedAtFirstUse) {
  TempDir dir;
  std::string path = dir.file("evolve.db");
  ASSERT_EQ(runWriter(path), 0);
  // Another branch of v1: `tag` became an int (and there is no `note`).
  flatbuffers::Parser parser;
  ASSERT_TRUE(parser.Parse(R"(
      namespace flatstore.test.evolve;
      table Item { id: string; level: int; tag: int; }
      root_type Item;)"))
      << parser.error_;
  parser.Serialize();
  {
    sqlite3* db;
    sqlite3_open(path.c_str(), &db);
    sqlite3_stmt* s;
    sqlite3_prepare_v2(db, "UPDATE flatstore_tables SET schema = ?", -1, &s, nullptr);
    sqlite3_bind_blob(s, 1, parser.builder_.GetBufferPointer(),
                      static_cast<int>(parser.builder_.GetSize()), SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(db);
  }
  EXPECT_NE(openRefusingFirstUse(path, "Item.tag"), nullptr);
}

}  // namespace
}  // namespace flatstore::test::evolve
