// Faults on the write path, made with a VFS that fails syncs on demand: a sync that fails
// stops the workspace's commits. The operating system may have dropped the pages it was
// to write, so no later commit could be acknowledged as durable: that commit and every
// later one fail with one error, until the workspace is reopened. Reads go on.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fault_vfs.h"
#include "tests/support/monsters.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace flatstore::test::game {
namespace {

using ::flatstore::testing::createMonster;
using ::flatstore::testing::FaultVfs;
using ::flatstore::testing::kBoundedWait;
using ::flatstore::testing::TempDir;
using ::testing::HasSubstr;

bool exists(Workspace& ws, const std::string& name) {
  auto m = ws.get<Monster>(name, 0);
  EXPECT_OK(m);
  return m.ok() && *m != nullptr;
}

class WriteFaultTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(FaultVfs::install()); }
  void TearDown() override { FaultVfs::failSyncs(false); }

  TempDir dir_;
};

// With synchronous=FULL every group commit syncs the WAL: the commit whose sync fails
// fails, and so does every later one, with the same error, even once syncs work again.
TEST_F(WriteFaultTest, FailedSyncStopsCommitsUntilReopened) {
  const std::string path = dir_.file("sync.db");
  {
    auto ws = Workspace::open(path, {.synchronous = Synchronous::kFull});
    ASSERT_OK(ws);
    ASSERT_OK(createMonster(**ws, "before"));

    FaultVfs::failSyncs(true);
    absl::Status failed = createMonster(**ws, "unsynced");
    FaultVfs::failSyncs(false);
    EXPECT_GE(FaultVfs::failedSyncs(), 1);
    EXPECT_EQ(failed.code(), absl::StatusCode::kFailedPrecondition) << failed;
    EXPECT_THAT(failed.message(), HasSubstr(path));
    EXPECT_THAT(failed.message(), HasSubstr("disk I/O error"));
    EXPECT_THAT(failed.message(), HasSubstr("reopen"));

    // Syncs work again, but pages written before may be lost: nothing commits.
    EXPECT_EQ(createMonster(**ws, "later"), failed);
    auto read_only =
        (*ws)->performChanges<Monster>([](TransactionContext&) { return absl::OkStatus(); });
    EXPECT_EQ(read_only.wait().status(), failed);

    // Reads go on, and see what was acknowledged.
    EXPECT_TRUE(exists(**ws, "before"));
    EXPECT_FALSE(exists(**ws, "unsynced"));
    EXPECT_FALSE(exists(**ws, "later"));
    auto count = (*ws)->fetch<Monster>().count();
    ASSERT_OK(count);
    EXPECT_EQ(*count, 1);

    Metrics m = (*ws)->metrics();
    EXPECT_GE(m.writer.failed_commits, 1);
    EXPECT_EQ(m.writer.stopped_error, failed.ToString());
    EXPECT_THAT(m.toText(), HasSubstr("stopped: "));
    EXPECT_THAT(m.toJson(), HasSubstr(R"("stopped_error":")"));

    // shutdown() reports it too: it is why the workspace did not finish cleanly.
    EXPECT_EQ((*ws)->shutdown(), failed);
  }
  auto reopened = Workspace::open(path, {.synchronous = Synchronous::kFull});
  ASSERT_OK(reopened);
  ASSERT_OK(createMonster(**reopened, "after"));
  EXPECT_TRUE(exists(**reopened, "before"));
  EXPECT_TRUE(exists(**reopened, "after"));
  EXPECT_EQ((*reopened)->metrics().writer.stopped_error, "");
}

// With synchronous=NORMAL a commit does not sync; the checkpoint that copies the WAL
// back does. When its sync fails the pages in the WAL are in doubt as well: the writer
// stops, and shutdown() (which waits for the writer) reports it.
TEST_F(WriteFaultTest, FailedSyncInACheckpointStopsCommits) {
  const std::string path = dir_.file("checkpoint.db");
  auto ws = Workspace::open(path, {.checkpoint_pages = 1});
  ASSERT_OK(ws);
  ASSERT_OK(createMonster(**ws, "before"));
  const int64_t failed_before = FaultVfs::failedSyncs();
  FaultVfs::failSyncs(true);
  // A checkpoint is due after every commit: the writer thread runs one, which syncs.
  absl::Status during = createMonster(**ws, "during");
  ASSERT_TRUE(FaultVfs::awaitFailedSyncs(failed_before + 1, kBoundedWait));
  FaultVfs::failSyncs(false);

  absl::Status closed = (*ws)->shutdown();
  EXPECT_EQ(closed.code(), absl::StatusCode::kFailedPrecondition) << closed;
  EXPECT_THAT(closed.message(), HasSubstr(path));
  EXPECT_THAT(closed.message(), HasSubstr("reopen"));
  Metrics m = (*ws)->metrics();
  EXPECT_EQ(m.writer.stopped_error, closed.ToString());
  if (absl::StrContains(closed.message(), "checkpoint of " + path)) {
    // The checkpoint's sync failed. The commit in flight either came before it or
    // fails with it.
    if (!during.ok()) EXPECT_EQ(during, closed);
    EXPECT_GE(m.wal.checkpoint_errors, 1);
    EXPECT_THAT(m.wal.last_checkpoint_error, HasSubstr("disk I/O error"));
  } else {
    // The checkpoint after "before" completed first: SQLite then starts the WAL over
    // with the next commit and syncs its new header, so the sync that failed was the
    // commit's own, and the commit fails with the writer's stop.
    EXPECT_EQ(during, closed);
  }
}

}  // namespace
}  // namespace flatstore::test::game
