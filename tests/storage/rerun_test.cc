// Re-runs after conflicts with another workspace on the same file (standing in for
// another process: it has its own writer and commits through its own connection), the
// run under the write lock that ends them, and what code on the writer thread may do.
// The closures that meet conflicts are run by workers (performChanges): a caller that
// waits runs its closure inside the write transaction when the writer is idle, where
// no conflict can happen.
#include <optional>
#include <vector>

#include "absl/synchronization/notification.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace flatstore::test::game {
namespace {

using ::flatstore::testing::kBoundedWait;
using ::flatstore::testing::TempDir;
using ::testing::HasSubstr;

// Submits the orc with `hp`, created or replaced.
absl::Status submitHp(TransactionContext& txn, int16_t hp) {
  auto r = MonsterChangeRequest::upsert();
  r.setName("orc").setRealm(1).setHp(hp);
  return txn.submit(r).status();
}

absl::Status setHp(Workspace& ws, int16_t hp) {
  return ws
      .performChangesAndWait<Monster>([hp](TransactionContext& txn) { return submitHp(txn, hp); })
      .status();
}

class RerunTest : public ::testing::Test {
 protected:
  std::unique_ptr<Workspace> open(WorkspaceOptions options = {}) {
    auto ws = Workspace::open(dir_.file("rerun.db"), options);
    EXPECT_TRUE(ws.ok()) << ws.status();
    return ws.ok() ? std::move(*ws) : nullptr;
  }
  TempDir dir_;
};

// Each optimistic run reads the orc, then the other workspace commits to the table
// before this run reaches the writer: the run conflicts. The third run happens under
// the write lock: the other workspace cannot commit there (waiting for it on the writer
// thread fails instead of deadlocking), and the run commits what it read.
TEST_F(RerunTest, ThirdRunHoldsTheWriteLockAndCannotConflict) {
  auto ws = open();
  auto other = open();
  ASSERT_OK(setHp(*ws, 1));
  std::vector<int> seen;  // the hp each run read
  std::vector<absl::Status> interference;
  auto done = ws->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
                  auto orc = txn.get<Monster>("orc", 1);
                  if (!orc.ok()) return orc.status();
                  seen.push_back((*orc)->hp());
                  interference.push_back(setHp(*other, static_cast<int16_t>(100 + seen.size())));
                  auto r = MonsterChangeRequest::changeOf(**orc);
                  r.setHp(static_cast<int16_t>((*orc)->hp() + 1));
                  return txn.submit(r).status();
                }).wait();
  ASSERT_OK(done);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_THAT(seen, ::testing::ElementsAre(1, 101, 102));
  EXPECT_OK(interference[0]);
  EXPECT_OK(interference[1]);
  EXPECT_TRUE(absl::IsFailedPrecondition(interference[2])) << interference[2];
  EXPECT_THAT(interference[2].message(), HasSubstr("deadlock"));
  auto orc = ws->get<Monster>("orc", 1);
  ASSERT_OK(orc);
  EXPECT_EQ((*orc)->hp(), 103);
  EXPECT_EQ((*orc)->versionstamp(), done->versionstamp);
}

// A closure that handed its table on to the next one (pipelining) and then conflicts
// with another process runs again at once under the write lock, so it keeps its place:
// the next closure, which read the orc before that, runs again after it and sees its
// result.
TEST_F(RerunTest, PipelinedClosureThatConflictsRunsAgainUnderTheWriteLockAndKeepsItsPlace) {
  auto ws = open();
  auto other = open();
  ASSERT_OK(setHp(*ws, 1));
  absl::Notification gate;
  auto held = ws->performChanges<Monster>([&](TransactionContext&) -> absl::Status {
    if (!gate.WaitForNotificationWithTimeout(kBoundedWait)) {
      return absl::DeadlineExceededError("the gate was never opened");
    }
    return absl::OkStatus();
  });
  std::vector<int> first_seen, second_seen;
  absl::Status interference;
  auto bump = [](TransactionContext& txn, std::vector<int>* seen) -> absl::Status {
    auto orc = txn.get<Monster>("orc", 1);
    if (!orc.ok()) return orc.status();
    seen->push_back((*orc)->hp());
    auto r = MonsterChangeRequest::changeOf(**orc);
    r.setHp(static_cast<int16_t>((*orc)->hp() + 1));
    return txn.submit(r).status();
  };
  auto first = ws->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
    // The snapshot is taken at the first read: read before the other workspace commits.
    auto before = txn.get<Monster>("orc", 1);
    if (!before.ok()) return before.status();
    if (first_seen.empty()) interference = setHp(*other, 100);
    return bump(txn, &first_seen);
  });
  auto second =
      ws->performChanges<Monster>([&](TransactionContext& txn) { return bump(txn, &second_seen); });
  gate.Notify();
  ASSERT_OK(held.wait());
  auto first_result = first.wait();
  auto second_result = second.wait();
  ASSERT_OK(first_result);
  ASSERT_OK(second_result);
  EXPECT_OK(interference);
  EXPECT_THAT(first_seen, ::testing::ElementsAre(1, 100));
  ASSERT_FALSE(second_seen.empty());
  EXPECT_EQ(second_seen.back(), 101);
  EXPECT_LT(first_result->versionstamp, second_result->versionstamp);
  auto orc = ws->get<Monster>("orc", 1);
  ASSERT_OK(orc);
  EXPECT_EQ((*orc)->hp(), 102);
}

absl::Status addEvent(Workspace& ws, std::string_view kind) {
  return ws
      .performChangesAndWait<Event>([kind](TransactionContext& txn) -> absl::Status {
        auto r = EventChangeRequest::creation();
        r.setKind(kind);
        return txn.submit(r).status();
      })
      .status();
}

// Conflicts are per table: the other workspace's commits to a table the closure did
// not declare do not make it run again.
TEST_F(RerunTest, CommitsToOtherTablesAreNoConflict) {
  auto ws = open();
  auto other = open();
  ASSERT_OK(setHp(*ws, 1));
  int runs = 0;
  auto done = ws->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
                  runs += 1;
                  FLATSTORE_RETURN_IF_ERROR(addEvent(*other, "elsewhere"));
                  return submitHp(txn, 2);
                }).wait();
  ASSERT_OK(done);
  EXPECT_EQ(runs, 1);
}

// When the change log no longer holds every commit since a closure's snapshot (the
// other workspace pruned it), the writer cannot tell what changed and runs the closure
// again rather than miss a conflict.
TEST_F(RerunTest, PrunedLogCountsAsConflict) {
  auto ws = open();
  WorkspaceOptions short_log;
  short_log.change_log_retention = 1;
  auto other = open(short_log);
  ASSERT_OK(setHp(*ws, 1));
  int runs = 0;
  auto done = ws->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
                  runs += 1;
                  // The snapshot is taken at the first read.
                  FLATSTORE_RETURN_IF_ERROR(txn.get<Monster>("orc", 1).status());
                  if (runs == 1) {
                    // The log is pruned every 256 commits.
                    for (int i = 0; i < 300; ++i)
                      FLATSTORE_RETURN_IF_ERROR(addEvent(*other, "prune"));
                  }
                  return submitHp(txn, 2);
                }).wait();
  ASSERT_OK(done);
  EXPECT_EQ(runs, 2);
}

// max_conflict_retries bounds the runs: with 1, the second conflict fails the
// transaction with Aborted naming the table, and nothing of it is written.
TEST_F(RerunTest, RetryBoundFailsWithAbortedNamingTheTable) {
  WorkspaceOptions options;
  options.max_conflict_retries = 1;
  auto ws = open(options);
  auto other = open();
  ASSERT_OK(setHp(*ws, 1));
  int runs = 0;
  auto done = ws->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
                  runs += 1;
                  // The snapshot is taken at the first read.
                  FLATSTORE_RETURN_IF_ERROR(txn.get<Monster>("orc", 1).status());
                  FLATSTORE_RETURN_IF_ERROR(setHp(*other, static_cast<int16_t>(10 * runs)));
                  auto r = MonsterChangeRequest::upsert();
                  r.setName("orc").setRealm(1).setHp(-1);
                  return txn.submit(r).status();
                }).wait();
  EXPECT_EQ(runs, 2);
  ASSERT_TRUE(absl::IsAborted(done.status())) << done.status();
  EXPECT_THAT(done.status().message(), HasSubstr("Monster"));
  auto orc = ws->get<Monster>("orc", 1);
  ASSERT_OK(orc);
  EXPECT_EQ((*orc)->hp(), 20);
}

// An onComplete callback (on the writer thread) may start a transaction on a table the
// workspace never used: the table is created there and then, without a deadlock.
TEST_F(RerunTest, CallbackMayStartTransactionOnNewTable) {
  auto ws = open();
  absl::Mutex mu;
  std::optional<TransactionHandle> second;
  TransactionHandle first = ws->performChanges<Monster>([](TransactionContext& txn) {
    auto r = MonsterChangeRequest::creation();
    r.setName("orc").setRealm(1).setHp(5);
    return txn.submit(r).status();
  });
  first.onComplete([&](const absl::StatusOr<TransactionResult>& r) {
    EXPECT_OK(r);
    TransactionHandle h = ws->performChanges<Event>([](TransactionContext& txn) {
      auto e = EventChangeRequest::creation();
      e.setKind("after-orc");
      return txn.submit(e).status();
    });
    absl::MutexLock lock(&mu);
    second = h;
  });
  ASSERT_OK(first.wait());
  TransactionHandle h = [&] {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](std::optional<TransactionHandle>* s) { return s->has_value(); }, &second));
    return *second;
  }();
  auto r = h.wait();
  ASSERT_OK(r);
  EXPECT_EQ(r->inserted, 1);
  EXPECT_EQ(*ws->fetch<Event>().count(), 1);
}

// Waiting for an unfinished transaction in an onComplete callback would stop the writer
// for good; it fails with FailedPrecondition instead.
TEST_F(RerunTest, WaitingInCallbackIsFailedPrecondition) {
  auto ws = open();
  ASSERT_OK(setHp(*ws, 1));
  absl::Notification registered, checked;
  absl::Status waited;
  // A transaction that writes, so its completion runs on the writer thread; it waits
  // until the callback is registered.
  TransactionHandle writing = ws->performChanges<Monster>([&](TransactionContext& txn) {
    registered.WaitForNotification();
    return submitHp(txn, 2);
  });
  writing.onComplete([&](const absl::StatusOr<TransactionResult>&) {
    TransactionHandle later = ws->performChanges<Monster>([](TransactionContext& txn) {
      auto r = MonsterChangeRequest::upsert();
      r.setName("orc").setRealm(1).setHp(3);
      return txn.submit(r).status();
    });
    waited = later.wait().status();
    checked.Notify();
  });
  registered.Notify();
  checked.WaitForNotification();
  EXPECT_TRUE(absl::IsFailedPrecondition(waited)) << waited;
  EXPECT_THAT(waited.message(), HasSubstr("deadlock"));
  EXPECT_OK(ws->shutdown());
}

// shutdown() inside a closure or a callback would wait for itself: FailedPrecondition,
// and the workspace keeps working.
TEST_F(RerunTest, ShutdownInsideClosureOrCallbackIsFailedPrecondition) {
  auto ws = open();
  absl::Status in_closure, in_callback;
  absl::Notification registered, called;
  TransactionHandle h = ws->performChanges<Monster>([&](TransactionContext& txn) {
    // So that the callback is registered before the commit and runs on the writer.
    registered.WaitForNotification();
    in_closure = ws->shutdown();
    auto r = MonsterChangeRequest::creation();
    r.setName("orc").setRealm(1).setHp(5);
    return txn.submit(r).status();
  });
  h.onComplete([&](const absl::StatusOr<TransactionResult>&) {
    in_callback = ws->shutdown();
    called.Notify();
  });
  registered.Notify();
  ASSERT_OK(h.wait());
  called.WaitForNotification();
  EXPECT_TRUE(absl::IsFailedPrecondition(in_closure)) << in_closure;
  EXPECT_TRUE(absl::IsFailedPrecondition(in_callback)) << in_callback;
  EXPECT_OK(setHp(*ws, 7));
  EXPECT_OK(ws->shutdown());
}

}  // namespace
}  // namespace flatstore::test::game
