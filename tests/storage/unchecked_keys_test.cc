// Creations whose primary keys are not looked up on SQLite: a closure's creation takes
// its key as free, and the table's primary key refuses a taken one when the writer
// applies the change. The writer then rolls the request back and runs its closure again,
// under the write lock, with every key looked up, so that the closure sees at submit the
// AlreadyExists it would have seen and decides what to do, as if every key had been
// checked. These tests pin that down: what the closure sees, what commits, and that the
// run again counts against no retry bound and keeps the request's place in its group.
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
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
using ::flatstore::testing::waitOrDie;
using ::testing::HasSubstr;

// A creation of the monster `name` in realm 1 with `hp` (and `email`, when given).
MonsterChangeRequest creation(std::string_view name, int16_t hp,
                              std::string_view email = std::string_view()) {
  auto r = MonsterChangeRequest::creation();
  r.setName(name).setRealm(1).setHp(hp);
  if (!email.empty()) r.setEmail(email);
  return r;
}

// What the submits of a closure's runs returned, one entry per run. The closures run
// one run at a time, but on the caller's, a worker's or the writer's thread.
class Runs {
 public:
  void start() {
    absl::MutexLock lock(&mu_);
    runs_.emplace_back();
  }
  void saw(absl::Status status) {
    absl::MutexLock lock(&mu_);
    runs_.back().push_back(std::move(status));
  }
  std::vector<std::vector<absl::Status>> runs() {
    absl::MutexLock lock(&mu_);
    return runs_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::vector<absl::Status>> runs_ ABSL_GUARDED_BY(mu_);
};

// A closure that creates `name`, and when that key is taken creates `alternative`
// instead (if not empty, else returns the AlreadyExists).
auto createOr(Runs* runs, std::string name, std::string alternative, int16_t hp = 7) {
  return [runs, name, alternative, hp](TransactionContext& txn) -> absl::Status {
    runs->start();
    absl::Status s = txn.submit(creation(name, hp)).status();
    runs->saw(s);
    if (!absl::IsAlreadyExists(s) || alternative.empty()) return s;
    return txn.submit(creation(alternative, hp)).status();
  };
}

class UncheckedKeysTest : public ::testing::Test {
 protected:
  std::unique_ptr<Workspace> open(WorkspaceOptions options = {}) {
    auto ws = Workspace::open(dir_.file("keys.db"), options);
    EXPECT_TRUE(ws.ok()) << ws.status();
    return ws.ok() ? std::move(*ws) : nullptr;
  }
  static absl::Status create(Workspace& ws, std::string_view name, int16_t hp,
                             std::string_view email = std::string_view()) {
    return ws
        .performChangesAndWait<Monster>(
            [&](TransactionContext& txn) { return txn.submit(creation(name, hp, email)).status(); })
        .status();
  }
  static std::optional<int> hpOf(Workspace& ws, std::string_view name) {
    auto m = ws.get<Monster>(std::string(name), 1);
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok() || *m == nullptr) return std::nullopt;
    return (*m)->hp();
  }
  TempDir dir_;
};

// Two creations of one key in one closure: the second fails at submit (the closure's
// own changes know the key), and the first commits.
TEST_F(UncheckedKeysTest, SecondCreationInOneClosureFailsAtSubmit) {
  auto ws = open();
  absl::Status second;
  auto done = ws->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(txn.submit(creation("orc", 1)).status());
    second = txn.submit(creation("orc", 2)).status();
    return absl::OkStatus();
  });
  ASSERT_OK(done);
  EXPECT_EQ(done->inserted, 1);
  EXPECT_TRUE(absl::IsAlreadyExists(second)) << second;
  EXPECT_EQ(hpOf(*ws, "orc"), 1);
}

// A creation of a committed object's key: the closure sees AlreadyExists at submit,
// whether it runs inside the idle writer's transaction (the caller waits) or on a
// snapshot of its own (a worker), and the object is left as it was.
TEST_F(UncheckedKeysTest, CreationOfCommittedKeyFailsAtSubmit) {
  auto ws = open();
  ASSERT_OK(create(*ws, "orc", 1));
  for (bool caller_runs : {true, false}) {
    SCOPED_TRACE(caller_runs ? "run by the waiting caller" : "run by a worker");
    Runs runs;
    auto closure = createOr(&runs, "orc", "");
    absl::StatusOr<TransactionResult> done =
        caller_runs ? ws->performChangesAndWait<Monster>(closure)
                    : waitOrDie(ws->performChanges<Monster>(closure), "the creation");
    ASSERT_TRUE(absl::IsAlreadyExists(done.status())) << done.status();
    EXPECT_THAT(std::string(done.status().message()), HasSubstr("already exists")) << done.status();
    std::vector<std::vector<absl::Status>> seen = runs.runs();
    ASSERT_FALSE(seen.empty());
    ASSERT_EQ(seen.back().size(), 1u);
    EXPECT_TRUE(absl::IsAlreadyExists(seen.back()[0])) << seen.back()[0];
    EXPECT_EQ(hpOf(*ws, "orc"), 1);
  }
}

// The closure handles the AlreadyExists by creating another object: that commits.
TEST_F(UncheckedKeysTest, ClosureThatHandlesAlreadyExistsCommitsItsAlternative) {
  auto ws = open();
  ASSERT_OK(create(*ws, "orc", 1));
  Runs runs;
  auto done = ws->performChangesAndWait<Monster>(createOr(&runs, "orc", "orc-2", 5));
  ASSERT_OK(done);
  EXPECT_EQ(done->inserted, 1);
  EXPECT_EQ(hpOf(*ws, "orc"), 1);
  EXPECT_EQ(hpOf(*ws, "orc-2"), 5);
  std::vector<std::vector<absl::Status>> seen = runs.runs();
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(absl::IsAlreadyExists(seen.back()[0])) << seen.back()[0];
}

// A creation of a taken key that the closure deletes again never reaches the table,
// whose key would have refused it: the closure still sees the AlreadyExists, and its
// deletion then deletes the committed object, as with the key looked up.
TEST_F(UncheckedKeysTest, CreationOfTakenKeyThenDeletionDeletesTheCommittedObject) {
  auto ws = open();
  ASSERT_OK(create(*ws, "orc", 1));
  Runs runs;
  auto done = ws->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
    runs.start();
    runs.saw(txn.submit(creation("orc", 2)).status());
    return txn.submit(MonsterChangeRequest::deletion("orc", 1)).status();
  });
  ASSERT_OK(done);
  EXPECT_EQ(done->inserted, 0);
  EXPECT_EQ(done->deleted, 1);
  EXPECT_EQ(hpOf(*ws, "orc"), std::nullopt);
  std::vector<std::vector<absl::Status>> seen = runs.runs();
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(absl::IsAlreadyExists(seen.back()[0])) << seen.back()[0];
}

// A closure that fails writes nothing, so no table refuses the key it took as free:
// the key is looked up when the closure is done, and the closure runs again, sees the
// AlreadyExists, and fails with what it returns then.
TEST_F(UncheckedKeysTest, FailingClosureRunsAgainWithTheKeyLookedUp) {
  auto ws = open();
  ASSERT_OK(create(*ws, "orc", 1));
  Runs runs;
  auto done = ws->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
    runs.start();
    absl::Status s = txn.submit(creation("orc", 2)).status();
    runs.saw(s);
    if (s.ok()) return absl::FailedPreconditionError("the orc was new");
    return s;
  });
  ASSERT_TRUE(absl::IsAlreadyExists(done.status())) << done.status();
  std::vector<std::vector<absl::Status>> seen = runs.runs();
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(absl::IsAlreadyExists(seen.back()[0])) << seen.back()[0];
  EXPECT_EQ(hpOf(*ws, "orc"), 1);
}

// A unique value taken keeps its own error. Here the closure meets the taken key
// first, and its alternative then collides on the unique email: the request fails with
// the unique value's AlreadyExists, as it does with every key looked up.
TEST_F(UncheckedKeysTest, TakenUniqueValueAfterHandledTakenKeyFailsOnTheValue) {
  auto ws = open();
  ASSERT_OK(create(*ws, "orc", 1, "orc@realm"));
  auto done = ws->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
    absl::Status s = txn.submit(creation("orc", 2)).status();
    if (!absl::IsAlreadyExists(s)) return s;
    return txn.submit(creation("orc-2", 2, "orc@realm")).status();
  });
  ASSERT_TRUE(absl::IsAlreadyExists(done.status())) << done.status();
  EXPECT_THAT(std::string(done.status().message()), HasSubstr("unique field 'email'"))
      << done.status();
  EXPECT_EQ(hpOf(*ws, "orc"), 1);
  EXPECT_EQ(hpOf(*ws, "orc-2"), std::nullopt);
}

// The run with the keys looked up is no conflict: with no conflict retries allowed at
// all, the closure still runs again, sees the AlreadyExists and its alternative
// commits.
TEST_F(UncheckedKeysTest, RunWithKeysLookedUpIsNoConflictRetry) {
  WorkspaceOptions options;
  options.max_conflict_retries = 0;
  auto ws = open(options);
  ASSERT_OK(create(*ws, "orc", 1));
  Runs runs;
  auto done =
      waitOrDie(ws->performChanges<Monster>(createOr(&runs, "orc", "orc-2")), "the creation");
  ASSERT_OK(done);
  EXPECT_EQ(hpOf(*ws, "orc-2"), 7);
  std::vector<std::vector<absl::Status>> seen = runs.runs();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_OK(seen[0][0]);  // taken as free
  EXPECT_TRUE(absl::IsAlreadyExists(seen[1][0])) << seen[1][0];
}

// Another workspace on the file (standing in for another process) creates the key
// after the closure's snapshot: a conflict, run again on a fresh snapshot, which has
// the key; that run's creation takes it as free, the writer's apply refuses it, and the
// closure runs once more with the key looked up. With one conflict retry allowed, that
// last run is not refused.
TEST_F(UncheckedKeysTest, KeyCreatedByAnotherWorkspaceAfterTheSnapshot) {
  WorkspaceOptions options;
  options.max_conflict_retries = 1;
  auto ws = open(options);
  auto other = open();
  Runs runs;
  absl::Status interference;
  auto done = waitOrDie(ws->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
    runs.start();
    // The snapshot is taken at the first read: a lookup of another key.
    FLATSTORE_RETURN_IF_ERROR(txn.get<Monster>("troll", 1).status());
    if (runs.runs().size() == 1) interference = create(*other, "orc", 1);
    absl::Status s = txn.submit(creation("orc", 2)).status();
    runs.saw(s);
    return s;
  }),
                        "the creation");
  ASSERT_OK(interference);
  ASSERT_TRUE(absl::IsAlreadyExists(done.status())) << done.status();
  std::vector<std::vector<absl::Status>> seen = runs.runs();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_OK(seen[0][0]);
  EXPECT_OK(seen[1][0]);
  EXPECT_TRUE(absl::IsAlreadyExists(seen[2][0])) << seen[2][0];
  EXPECT_EQ(hpOf(*ws, "orc"), 1);
}

// Holds the writer: the completion callback of a transaction on Event runs under the
// writer role, while the group that committed it completes, and blocks there until
// release() is called. Meanwhile no group commits, and requests queue together.
class WriterHold {
 public:
  explicit WriterHold(Workspace& ws) {
    handle_ = ws.performChanges<Event>([this](TransactionContext& txn) -> absl::Status {
      if (!go_.WaitForNotificationWithTimeout(kBoundedWait)) {
        return absl::DeadlineExceededError("the hold never started");
      }
      auto e = EventChangeRequest::creation();
      e.setKind("hold");
      return txn.submit(e).status();
    });
    handle_->onComplete([this](const absl::StatusOr<TransactionResult>&) {
      entered_.Notify();
      EXPECT_TRUE(release_.WaitForNotificationWithTimeout(kBoundedWait));
    });
    go_.Notify();
    EXPECT_TRUE(entered_.WaitForNotificationWithTimeout(kBoundedWait));
  }
  absl::StatusOr<TransactionResult> release() {
    release_.Notify();
    return waitOrDie(*handle_, "the hold");
  }

 private:
  absl::Notification go_;
  absl::Notification entered_;
  absl::Notification release_;
  std::optional<TransactionHandle> handle_;
};

// Two requests of one group create taken keys, a third a free one. While the writer is
// held, each closure hands its table on to the next and waits in the mailbox, so the
// three commit as one group: the first failure rolls the group back and applies it
// again request by request, each in a savepoint; the taken keys' closures run again in
// their places and their alternatives commit with the third request.
TEST_F(UncheckedKeysTest, TakenKeysInAGroupRunAgainInTheirPlacesAndTheOthersCommit) {
  auto ws = open();
  ASSERT_OK(create(*ws, "orc", 1));
  ASSERT_OK(create(*ws, "troll", 1));
  WriterHold hold(*ws);
  Runs orc_runs, troll_runs, goblin_runs;
  auto orc = ws->performChanges<Monster>(createOr(&orc_runs, "orc", "orc-2"));
  auto troll = ws->performChanges<Monster>(createOr(&troll_runs, "troll", "troll-2"));
  auto goblin = ws->performChanges<Monster>(createOr(&goblin_runs, "goblin", ""));
  // This closure runs once the three before it handed the table on, which they do right
  // after their requests entered the mailbox.
  absl::Notification queued;
  auto marker = ws->performChanges<Monster>([&](TransactionContext&) {
    queued.Notify();
    return absl::OkStatus();
  });
  ASSERT_TRUE(queued.WaitForNotificationWithTimeout(kBoundedWait));
  ASSERT_OK(hold.release());
  auto orc_done = waitOrDie(orc, "orc");
  auto troll_done = waitOrDie(troll, "troll");
  auto goblin_done = waitOrDie(goblin, "goblin");
  ASSERT_OK(waitOrDie(marker, "marker"));
  ASSERT_OK(orc_done);
  ASSERT_OK(troll_done);
  ASSERT_OK(goblin_done);
  // One group, in submission order.
  EXPECT_EQ(orc_done->versionstamp.commitSequence(), goblin_done->versionstamp.commitSequence());
  EXPECT_EQ(troll_done->versionstamp.commitSequence(), goblin_done->versionstamp.commitSequence());
  EXPECT_LT(orc_done->versionstamp, troll_done->versionstamp);
  EXPECT_LT(troll_done->versionstamp, goblin_done->versionstamp);
  EXPECT_EQ(hpOf(*ws, "orc"), 1);
  EXPECT_EQ(hpOf(*ws, "troll"), 1);
  EXPECT_EQ(hpOf(*ws, "orc-2"), 7);
  EXPECT_EQ(hpOf(*ws, "troll-2"), 7);
  EXPECT_EQ(hpOf(*ws, "goblin"), 7);
  for (Runs* runs : {&orc_runs, &troll_runs}) {
    std::vector<std::vector<absl::Status>> seen = runs->runs();
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_OK(seen[0][0]);
    EXPECT_TRUE(absl::IsAlreadyExists(seen[1][0])) << seen[1][0];
  }
  EXPECT_EQ(goblin_runs.runs().size(), 1u);
}

// A closure creates the key that a request still in flight (handed on, waiting in the
// mailbox) creates: it sees AlreadyExists at submit, and the first creation commits.
TEST_F(UncheckedKeysTest, CreationOfKeyThatAPipelinedPredecessorCreatesFailsAtSubmit) {
  auto ws = open();
  ASSERT_OK(create(*ws, "imp", 1));  // the table exists before the writer is held
  WriterHold hold(*ws);
  Runs first_runs, second_runs;
  auto first = ws->performChanges<Monster>(createOr(&first_runs, "orc", "", 1));
  absl::Notification second_ran;
  auto second = ws->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
    second_runs.start();
    absl::Status s = txn.submit(creation("orc", 2)).status();
    second_runs.saw(s);
    if (!second_ran.HasBeenNotified()) second_ran.Notify();
    return s;
  });
  ASSERT_TRUE(second_ran.WaitForNotificationWithTimeout(kBoundedWait));
  ASSERT_OK(hold.release());
  ASSERT_OK(waitOrDie(first, "first"));
  auto second_done = waitOrDie(second, "second");
  ASSERT_TRUE(absl::IsAlreadyExists(second_done.status())) << second_done.status();
  EXPECT_EQ(hpOf(*ws, "orc"), 1);
  std::vector<std::vector<absl::Status>> seen = second_runs.runs();
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(absl::IsAlreadyExists(seen.back()[0])) << seen.back()[0];
}

}  // namespace
}  // namespace flatstore::test::game
