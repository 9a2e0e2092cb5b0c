// Creations whose primary keys are not looked up: a closure's creation takes its key as
// free, and the table's primary key refuses a taken one when the commit path applies
// the change. The request is then rolled back and its closure runs again, under the
// write lock (on PostgreSQL, inside its write session, under its tables' locks), with
// every key looked up, so that the closure sees at submit the AlreadyExists it would
// have seen and decides what to do, as if every key had been checked. These tests pin
// that down on either engine (this file builds twice: unchecked_keys_test on SQLite
// files, unchecked_keys_pg_test on the PostgreSQL server FLATSTORE_TEST_PG names): what
// the closure sees, what commits, and that the run again counts against no retry bound
// and keeps the request's place in its group.
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/pg_schema.h"
#include "runtime/postgres.h"
#include "tests/support/pg_schema.h"
#include "tests/support/status_macros.h"
#include "tests/support/wait.h"

namespace flatstore::test::game {
namespace {

using ::flatstore::testing::Engine;
using ::flatstore::testing::engineName;
using ::flatstore::testing::kBoundedWait;
using ::flatstore::testing::PgTestSchema;
using ::flatstore::testing::TestDatabase;
using ::flatstore::testing::waitOrDie;
using ::testing::ElementsAre;
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

// The closures' runs across closures, in the order they happened: "name ok" or "name
// taken" for what each run's first submit returned.
class RunLog {
 public:
  void add(std::string entry) {
    absl::MutexLock lock(&mu_);
    entries_.push_back(std::move(entry));
  }
  std::vector<std::string> entries() {
    absl::MutexLock lock(&mu_);
    return entries_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> entries_ ABSL_GUARDED_BY(mu_);
};

// createOr(), logging each run's first submit in `log` under `name`.
auto loggedCreateOr(RunLog* log, std::string name, std::string alternative,
                    std::string email = std::string()) {
  return [log, name, alternative, email](TransactionContext& txn) -> absl::Status {
    absl::Status s = txn.submit(creation(name, 7, email)).status();
    log->add(absl::StrCat(name, absl::IsAlreadyExists(s) ? " taken" : s.ok() ? " ok" : " failed"));
    if (!absl::IsAlreadyExists(s) || alternative.empty()) return s;
    return txn.submit(creation(alternative, 7)).status();
  };
}

// Holds the commits of a workspace's Monster table until release(): requests on it
// queue meanwhile, and their closures hand the table on to the next ones.
class CommitHold {
 public:
  virtual ~CommitHold() { letClosuresRun(); }
  // Queues a closure on Monster that waits until letClosuresRun(): the closures
  // submitted meanwhile queue behind it, so that each one finds the next waiting when it
  // is done and hands the table on (on PostgreSQL, a closure without followers would
  // commit its request itself, holding the table until the hold is released).
  void gate(Workspace& ws) {
    gate_ = ws.performChanges<Monster>([this](TransactionContext&) -> absl::Status {
      if (!open_.WaitForNotificationWithTimeout(kBoundedWait)) {
        return absl::DeadlineExceededError("the gate never opened");
      }
      return absl::OkStatus();
    });
  }
  void letClosuresRun() {
    if (!open_.HasBeenNotified()) open_.Notify();
    if (gate_.has_value()) EXPECT_OK(waitOrDie(*gate_, "the gate"));
    gate_.reset();
  }
  virtual absl::Status release() = 0;

 private:
  absl::Notification open_;
  std::optional<TransactionHandle> gate_;
};

class UncheckedKeysTest : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override {
    db_ = std::make_unique<TestDatabase>(GetParam(), "unchecked_keys");
    if (!db_->available()) GTEST_SKIP() << PgTestSchema::kSkipReason;
    ASSERT_TRUE(db_->ok());
  }
  // Workspaces close before the database goes (their connections hold its locks).
  void TearDown() override {
    for (std::unique_ptr<Workspace>& ws : opened_) ws.reset();
    db_.reset();
  }

  bool postgres() const { return GetParam() == Engine::kPostgres; }

  // A workspace on the test's database; it stays open until the test ends.
  Workspace* open(WorkspaceOptions options = {}) {
    auto ws = Workspace::open(db_->location(), options);
    EXPECT_TRUE(ws.ok()) << ws.status();
    if (!ws.ok()) return nullptr;
    opened_.push_back(std::move(*ws));
    return opened_.back().get();
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
  // Holds `ws`'s commits on Monster (whose table must exist): on SQLite the writer
  // (WriterHold), on PostgreSQL the table's lock, taken by another connection as by
  // another client's write session.
  std::unique_ptr<CommitHold> hold(Workspace& ws);

  std::unique_ptr<TestDatabase> db_;
  std::vector<std::unique_ptr<Workspace>> opened_;
};

INSTANTIATE_TEST_SUITE_P(Engine, UncheckedKeysTest,
#ifdef FLATSTORE_UNCHECKED_KEYS_ON_POSTGRES
                         ::testing::Values(Engine::kPostgres),
#else
                         ::testing::Values(Engine::kSqlite),
#endif
                         engineName);

// Two creations of one key in one closure: the second fails at submit (the closure's
// own changes know the key), and the first commits.
TEST_P(UncheckedKeysTest, SecondCreationInOneClosureFailsAtSubmit) {
  Workspace* ws = open();
  ASSERT_NE(ws, nullptr);
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
TEST_P(UncheckedKeysTest, CreationOfCommittedKeyFailsAtSubmit) {
  Workspace* ws = open();
  ASSERT_NE(ws, nullptr);
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
TEST_P(UncheckedKeysTest, ClosureThatHandlesAlreadyExistsCommitsItsAlternative) {
  Workspace* ws = open();
  ASSERT_NE(ws, nullptr);
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
TEST_P(UncheckedKeysTest, CreationOfTakenKeyThenDeletionDeletesTheCommittedObject) {
  Workspace* ws = open();
  ASSERT_NE(ws, nullptr);
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
TEST_P(UncheckedKeysTest, FailingClosureRunsAgainWithTheKeyLookedUp) {
  Workspace* ws = open();
  ASSERT_NE(ws, nullptr);
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
TEST_P(UncheckedKeysTest, TakenUniqueValueAfterHandledTakenKeyFailsOnTheValue) {
  Workspace* ws = open();
  ASSERT_NE(ws, nullptr);
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
TEST_P(UncheckedKeysTest, RunWithKeysLookedUpIsNoConflictRetry) {
  WorkspaceOptions options;
  options.max_conflict_retries = 0;
  Workspace* ws = open(options);
  ASSERT_NE(ws, nullptr);
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

// Another workspace on the database (standing in for another process) creates the key
// after the closure's snapshot: a conflict, run
// again on a fresh snapshot, which has the key; that run's creation takes it as free,
// the apply refuses it, and the closure runs once more with the key looked up. With one
// conflict retry allowed, that last run is not refused.
TEST_P(UncheckedKeysTest, KeyCreatedByAnotherWorkspaceAfterTheSnapshot) {
  WorkspaceOptions options;
  options.max_conflict_retries = 1;
  Workspace* ws = open(options);
  ASSERT_NE(ws, nullptr);
  Workspace* other = open();
  ASSERT_NE(other, nullptr);
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

// On PostgreSQL, the round trips of a closure that creates one object with a free key,
// run and committed by the caller's thread (it commits what it submitted when no other
// session holds the table): nothing is looked up, so the closure reads nothing, opens
// no snapshot and sends nothing before its commit, which costs two round trips: its
// changes and its COMMIT.
TEST_P(UncheckedKeysTest, ACreationLooksNothingUp) {
  if (!postgres()) GTEST_SKIP() << "round trips to a server";
  Workspace* ws = open();
  ASSERT_NE(ws, nullptr);
  ASSERT_OK(create(*ws, "orc", 1));
  int64_t in_closure = -1;
  const int64_t before = internal::PgConnection::roundTripsOnThisThread();
  auto done = ws->performChangesAndWait<Monster>([&](TransactionContext& txn) {
    const int64_t start = internal::PgConnection::roundTripsOnThisThread();
    absl::Status s = txn.submit(creation("imp", 2)).status();
    in_closure = internal::PgConnection::roundTripsOnThisThread() - start;
    return s;
  });
  const int64_t trips = internal::PgConnection::roundTripsOnThisThread() - before;
  ASSERT_OK(done);
  EXPECT_EQ(in_closure, 0);
  EXPECT_EQ(trips, 2);
}

// Holds the SQLite writer: the completion callback of a transaction on Event runs under
// the writer role, while the group that committed it completes, and blocks there until
// release() is called. Meanwhile no group commits, and requests queue together.
class WriterHold : public CommitHold {
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
  absl::Status release() override {
    release_.Notify();
    return waitOrDie(*handle_, "the hold").status();
  }

 private:
  absl::Notification go_;
  absl::Notification entered_;
  absl::Notification release_;
  std::optional<TransactionHandle> handle_;
};

// Holds the lock of the Monster table on PostgreSQL (pg_engine.h, Locks) on a connection
// of its own: every write session on the table waits for it.
class PgTableHold : public CommitHold {
 public:
  explicit PgTableHold(PgTestSchema& schema) : schema_(schema) {
    EXPECT_OK(lock("pg_advisory_lock"));
  }
  absl::Status release() override { return lock("pg_advisory_unlock"); }

 private:
  absl::Status lock(std::string_view function) {
    return schema_.execute(absl::StrCat(
        "SELECT ", std::string(function), "(", internal::pgLockSpace(schema_.name()), ", ",
        internal::pgLockKey(
            schema_.name(),
            absl::StrCat("table ", std::string(MonsterEntity::description().table_name))),
        ")"));
  }
  PgTestSchema& schema_;
};

std::unique_ptr<CommitHold> UncheckedKeysTest::hold(Workspace& ws) {
  std::unique_ptr<CommitHold> held;
  if (postgres()) {
    held = std::make_unique<PgTableHold>(*db_->schema());
  } else {
    held = std::make_unique<WriterHold>(ws);
  }
  held->gate(ws);
  return held;
}

// Runs a closure on Monster that logs "marker" in `log`, and lets the closures behind
// `held`'s gate run: the marker runs once the closures submitted before it handed the
// table on, which they do right after their requests were queued. Then releases
// `held`.
absl::Status releaseOnceQueued(Workspace& ws, RunLog& log, CommitHold& held) {
  absl::Notification queued;
  auto marker = ws.performChanges<Monster>([&](TransactionContext&) {
    log.add("marker");
    queued.Notify();
    return absl::OkStatus();
  });
  held.letClosuresRun();
  const bool ran = queued.WaitForNotificationWithTimeout(kBoundedWait);
  FLATSTORE_RETURN_IF_ERROR(held.release());
  FLATSTORE_RETURN_IF_ERROR(waitOrDie(marker, "marker").status());
  return ran ? absl::OkStatus() : absl::DeadlineExceededError("the marker closure never ran");
}

// Two requests of one group create taken keys, a third a free one. While the commits
// are held, each closure hands its table on to the next and its request waits, so the
// requests commit together: on SQLite as one group (the first failure rolls the group
// back and applies it again request by request, each in a savepoint); on PostgreSQL
// the session that waits for the table's lock took the first (and what was queued by
// then), and the others queue for the next session, each in a savepoint. The taken keys'
// closures run again at commit, after the later closures ran, in their places, and
// their alternatives commit with the third request.
TEST_P(UncheckedKeysTest, TakenKeysInAGroupRunAgainInTheirPlacesAndTheOthersCommit) {
  Workspace* ws = open();
  ASSERT_NE(ws, nullptr);
  ASSERT_OK(create(*ws, "orc", 1));
  ASSERT_OK(create(*ws, "troll", 1));
  std::unique_ptr<CommitHold> held = hold(*ws);
  RunLog log;
  auto orc = ws->performChanges<Monster>(loggedCreateOr(&log, "orc", "orc-2"));
  auto troll = ws->performChanges<Monster>(loggedCreateOr(&log, "troll", "troll-2"));
  auto goblin = ws->performChanges<Monster>(loggedCreateOr(&log, "goblin", ""));
  ASSERT_OK(releaseOnceQueued(*ws, log, *held));
  auto orc_done = waitOrDie(orc, "orc");
  auto troll_done = waitOrDie(troll, "troll");
  auto goblin_done = waitOrDie(goblin, "goblin");
  ASSERT_OK(orc_done);
  ASSERT_OK(troll_done);
  ASSERT_OK(goblin_done);
  // Committed together (on PostgreSQL, the taken troll with the request before or
  // after it), in submission order.
  const uint64_t orc_seq = orc_done->versionstamp.commitSequence();
  const uint64_t troll_seq = troll_done->versionstamp.commitSequence();
  const uint64_t goblin_seq = goblin_done->versionstamp.commitSequence();
  if (postgres()) {
    EXPECT_TRUE(troll_seq == orc_seq || troll_seq == goblin_seq);
  } else {
    EXPECT_EQ(orc_seq, goblin_seq);
    EXPECT_EQ(troll_seq, goblin_seq);
  }
  EXPECT_LT(orc_done->versionstamp, troll_done->versionstamp);
  EXPECT_LT(troll_done->versionstamp, goblin_done->versionstamp);
  EXPECT_EQ(hpOf(*ws, "orc"), 1);
  EXPECT_EQ(hpOf(*ws, "troll"), 1);
  EXPECT_EQ(hpOf(*ws, "orc-2"), 7);
  EXPECT_EQ(hpOf(*ws, "troll-2"), 7);
  EXPECT_EQ(hpOf(*ws, "goblin"), 7);
  // The first runs took the keys as free; the runs with the keys looked up came at
  // commit, in the requests' order.
  EXPECT_THAT(log.entries(),
              ElementsAre("orc ok", "troll ok", "goblin ok", "marker", "orc taken", "troll taken"));
}

// A unique value that another object has is refused when the changes are written, as a
// taken key is: the closure runs again at commit with every key looked up (its key is
// free, so its creation succeeds again), and the request then fails with the unique
// value's AlreadyExists, alone; the free creation queued after it commits.
TEST_P(UncheckedKeysTest, TakenUniqueValueInAGroupFailsThatRequestAlone) {
  Workspace* ws = open();
  ASSERT_NE(ws, nullptr);
  ASSERT_OK(create(*ws, "orc", 1, "orc@realm"));
  std::unique_ptr<CommitHold> held = hold(*ws);
  RunLog log;
  auto imp = ws->performChanges<Monster>(loggedCreateOr(&log, "imp", "", "orc@realm"));
  auto goblin = ws->performChanges<Monster>(loggedCreateOr(&log, "goblin", ""));
  ASSERT_OK(releaseOnceQueued(*ws, log, *held));
  auto imp_done = waitOrDie(imp, "imp");
  ASSERT_TRUE(absl::IsAlreadyExists(imp_done.status())) << imp_done.status();
  EXPECT_THAT(std::string(imp_done.status().message()), HasSubstr("unique field 'email'"))
      << imp_done.status();
  ASSERT_OK(waitOrDie(goblin, "goblin"));
  EXPECT_EQ(hpOf(*ws, "imp"), std::nullopt);
  EXPECT_EQ(hpOf(*ws, "orc"), 1);
  EXPECT_EQ(hpOf(*ws, "goblin"), 7);
  EXPECT_THAT(log.entries(), ElementsAre("imp ok", "goblin ok", "marker", "imp ok"));
}

// Two clients create the same keys at the same time, each key once per client: every
// key commits once, with one client's value, and the other client's closure sees the
// AlreadyExists at submit and creates its alternative instead, which commits too. No
// creation is lost and none fails.
TEST_P(UncheckedKeysTest, TwoClientsCreatingTheSameKeys) {
  constexpr int kKeys = 40;
  Workspace* first = open();
  ASSERT_NE(first, nullptr);
  Workspace* second = open();
  ASSERT_NE(second, nullptr);
  ASSERT_OK(create(*first, "seed", 1));
  ASSERT_OK(waitOrDie(second->performChanges<Monster>([](TransactionContext& txn) {
    return txn.get<Monster>(std::string("seed"), 1).status();
  }),
                      "the second client's first read"));
  std::atomic<int> taken{0};
  auto run = [&](Workspace* ws, int16_t hp) {
    std::vector<TransactionHandle> handles;
    for (int i = 0; i < kKeys; ++i) {
      handles.push_back(ws->performChanges<Monster>([&, i, hp](TransactionContext& txn) {
        absl::Status s = txn.submit(creation(absl::StrCat("m", i), hp)).status();
        if (!absl::IsAlreadyExists(s)) return s;
        taken.fetch_add(1);
        return txn.submit(creation(absl::StrCat("m", i, "-", hp), hp)).status();
      }));
    }
    for (TransactionHandle& h : handles) EXPECT_OK(waitOrDie(h, "a creation"));
  };
  std::thread other([&] { run(second, 2); });
  run(first, 1);
  other.join();
  int alternatives = 0;
  for (int i = 0; i < kKeys; ++i) {
    std::optional<int> hp = hpOf(*first, absl::StrCat("m", i));
    ASSERT_TRUE(hp.has_value()) << i;
    ASSERT_TRUE(*hp == 1 || *hp == 2) << *hp;
    // The other client's alternative, and not the winner's.
    const int loser = *hp == 1 ? 2 : 1;
    EXPECT_EQ(hpOf(*first, absl::StrCat("m", i, "-", loser)), loser) << i;
    EXPECT_EQ(hpOf(*first, absl::StrCat("m", i, "-", *hp)), std::nullopt) << i;
    alternatives += 1;
  }
  EXPECT_EQ(alternatives, kKeys);
  EXPECT_GE(taken.load(), kKeys);
  auto count = first->fetch<Monster>().count();
  ASSERT_OK(count);
  EXPECT_EQ(*count, 1 + 2 * kKeys);
}

// A closure creates the key that a request still in flight (handed on, waiting in the
// mailbox) creates: it sees AlreadyExists at submit, and the first creation commits.
TEST_P(UncheckedKeysTest, CreationOfKeyThatAPipelinedPredecessorCreatesFailsAtSubmit) {
  Workspace* ws = open();
  ASSERT_NE(ws, nullptr);
  ASSERT_OK(create(*ws, "imp", 1));  // the table exists before the writer is held
  std::unique_ptr<CommitHold> held = hold(*ws);
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
  held->letClosuresRun();
  ASSERT_TRUE(second_ran.WaitForNotificationWithTimeout(kBoundedWait));
  ASSERT_OK(held->release());
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
