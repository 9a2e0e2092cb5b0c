// Another program holding SQLite's write lock (the sqlite3 shell inside BEGIN
// IMMEDIATE): flatstore's commits wait for it with their bounded back-off and all land
// once it lets go, or fail with Unavailable after lock_timeout; fetches are not blocked
// meanwhile (readers never wait for the write lock in WAL mode).
//
// The shell is driven through a pipe: it takes the lock, says so, and commits only when
// the test tells it to, so "while the lock is held" is a span the test controls.
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/multiprocess/process_util.h"

namespace flatstore {
namespace {

using ::flatstore::bench::Doc;
using ::flatstore::bench::DocChangeRequest;
using ::flatstore::test::game::Monster;
using ::flatstore::test::game::MonsterChangeRequest;
using ::flatstore::testing::Child;
using ::flatstore::testing::kBoundedWait;
using ::flatstore::testing::TempDir;
using ::testing::HasSubstr;

constexpr char kShell[] = "/usr/bin/sqlite3";

// How long the shell holds the lock while the test checks that commits wait. Waiting it
// out is the point of the test; it is far below lock_timeout.
constexpr absl::Duration kHold = absl::Milliseconds(1500);

// The sqlite3 shell on `path`, holding the write lock.
absl::StatusOr<std::unique_ptr<Child>> lockingShell(const std::string& path) {
  auto shell = Child::spawn({kShell, path});
  if (!shell.ok()) return shell.status();
  auto said = (*shell)->ask("BEGIN IMMEDIATE;\nSELECT 'locked';");
  if (!said.ok()) return said.status();
  if (*said != "locked") return absl::InternalError(absl::StrCat("the shell said ", *said));
  return shell;
}

// Completion times of handles.
class Completions {
 public:
  void watch(const TransactionHandle& h) {
    {
      absl::MutexLock lock(&mu_);
      pending_ += 1;
    }
    h.onComplete([this](const absl::StatusOr<TransactionResult>& r) {
      absl::MutexLock lock(&mu_);
      pending_ -= 1;
      times_.push_back(absl::Now());
      if (!r.ok()) errors_.push_back(r.status());
    });
  }
  // True when all completed within `timeout`.
  bool awaitAll(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(
                                    +[](int* n) { return *n == 0; }, &pending_),
                                timeout);
  }
  // True when any completed within `timeout`.
  bool awaitAny(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto any = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !times_.empty(); };
    return mu_.AwaitWithTimeout(absl::Condition(&any), timeout);
  }
  std::vector<absl::Time> times() {
    absl::MutexLock lock(&mu_);
    return times_;
  }
  std::vector<absl::Status> errors() {
    absl::MutexLock lock(&mu_);
    return errors_;
  }

 private:
  absl::Mutex mu_;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<absl::Time> times_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> errors_ ABSL_GUARDED_BY(mu_);
};

TransactionHandle createDoc(Workspace& ws, const std::string& id) {
  return ws.performChanges<Doc>([id](TransactionContext& txn) {
    auto r = DocChangeRequest::creation();
    r.setId(id).setRank(1);
    return txn.submit(r).status();
  });
}

class ExternalLock : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kShell, X_OK) != 0) GTEST_SKIP() << kShell << " is not installed";
    path_ = dir_.file("locked.db");
  }
  // Opens the workspace and creates its tables (and "before"), so the shell's lock is
  // the only thing a commit waits for.
  void open(WorkspaceOptions options) {
    auto ws = Workspace::open(path_, options);
    ASSERT_OK(ws);
    ws_ = std::move(*ws);
    ASSERT_OK(createDoc(*ws_, "before").wait());
    ASSERT_OK(ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
      auto m = MonsterChangeRequest::creation();
      m.setName("before").setRealm(0);
      return txn.submit(m).status();
    }));
  }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<Workspace> ws_;
};

TEST_F(ExternalLock, CommitsWaitForTheLockHolderAndFetchesDoNot) {
  open({});
  auto shell = lockingShell(path_);
  ASSERT_OK(shell);

  Completions done;
  std::vector<TransactionHandle> handles;
  for (int i = 0; i < 5; ++i) handles.push_back(createDoc(*ws_, absl::StrCat("held-", i)));
  handles.push_back(ws_->performChanges<Monster>([](TransactionContext& txn) {
    auto m = MonsterChangeRequest::creation();
    m.setName("held").setRealm(0);
    return txn.submit(m).status();
  }));
  for (const auto& h : handles) done.watch(h);

  // Fetches go on: they read the last committed state, without the waiting commits.
  absl::Time start = absl::Now();
  auto docs = ws_->fetch<Doc>().all();
  auto monster = ws_->get<Monster>("before", 0);
  absl::Duration took = absl::Now() - start;
  ASSERT_OK(docs);
  ASSERT_OK(monster);
  EXPECT_EQ(docs->size(), 1u);
  EXPECT_NE(*monster, nullptr);
  EXPECT_LT(took, absl::Seconds(1)) << "fetches waited for the write lock";

  // No commit completes while the shell holds the lock.
  EXPECT_FALSE(done.awaitAny(kHold)) << "a commit completed while another process held the lock";
  absl::Time released = absl::Now();
  ASSERT_OK((*shell)->send("COMMIT;\nSELECT 'released';"));
  ASSERT_TRUE(done.awaitAll(kBoundedWait)) << "commits still wait after the lock was released";
  auto said = (*shell)->readLine();
  ASSERT_OK(said);
  EXPECT_EQ(*said, "released");
  (*shell)->closeInput();
  EXPECT_OK((*shell)->waitSuccess());

  EXPECT_THAT(done.errors(), ::testing::IsEmpty());
  for (absl::Time t : done.times()) EXPECT_GE(t, released);
  for (const auto& h : handles) {
    auto r = h.wait();
    ASSERT_OK(r);
    EXPECT_EQ(r->inserted, 1);
  }
  EXPECT_EQ(*ws_->fetch<Doc>().count(), 6);
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 2);
  EXPECT_NE(*ws_->get<Monster>("held", 0), nullptr);
}

// With a short lock_timeout the waiting commit gives up with Unavailable, writes
// nothing, and releases its table: the next transaction on it commits once the lock is
// free.
TEST_F(ExternalLock, CommitFailsWithUnavailableAfterLockTimeout) {
  open({.lock_timeout = absl::Milliseconds(300)});
  auto shell = lockingShell(path_);
  ASSERT_OK(shell);

  absl::Time start = absl::Now();
  auto failed = createDoc(*ws_, "late").wait();
  absl::Duration waited = absl::Now() - start;
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("locked"));
  EXPECT_GE(waited, absl::Milliseconds(300)) << "gave up before lock_timeout";

  ASSERT_OK((*shell)->send("COMMIT;\nSELECT 'released';"));
  auto said = (*shell)->readLine();
  ASSERT_OK(said);
  EXPECT_EQ(*said, "released");
  (*shell)->closeInput();
  EXPECT_OK((*shell)->waitSuccess());

  EXPECT_EQ(*ws_->get<Doc>("late"), nullptr);
  ASSERT_OK(createDoc(*ws_, "late").wait());
  EXPECT_NE(*ws_->get<Doc>("late"), nullptr);
}

}  // namespace
}  // namespace flatstore
