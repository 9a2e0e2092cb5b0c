// Scheduling: closures on one table run one at a time in submission order and each sees
// the previous one's commit; closures on disjoint tables run (and commit) in parallel;
// multi-table closures declared in any order from many threads never deadlock.
#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/concurrency/concurrency_util.h"

namespace flatstore::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kLogId[] = "log";

// Appends `entry` to the log Doc's body and counts it in its rank. Fails when what it
// read is inconsistent: a closure that ran beside another one on the table, or before
// the previous one's commit was visible, would see a count that does not match.
absl::Status appendToLog(TransactionContext& txn, const std::string& entry) {
  FLATSTORE_ASSIGN_OR_RETURN(auto log, txn.get<Doc>(kLogId));
  if (log == nullptr) return absl::NotFoundError("the log is missing");
  int64_t entries = std::count(log->body().begin(), log->body().end(), ';');
  if (entries != log->rank()) {
    return absl::DataLossError(
        absl::StrCat("the log holds ", entries, " entries but counts ", log->rank()));
  }
  auto change = DocChangeRequest::changeOf(*log);
  change.setRank(log->rank() + 1).setBody(absl::StrCat(std::string(log->body()), entry, ";"));
  return txn.submit(change).status();
}

// One log entry: "submitter:ticket".
struct Entry {
  int submitter;
  int64_t ticket;
};

std::vector<Entry> parseLog(std::string_view body) {
  std::vector<Entry> out;
  for (absl::string_view item :
       absl::StrSplit(absl::string_view(body.data(), body.size()), ';', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    Entry e{-1, -1};
    if (parts.size() == 2) {
      EXPECT_TRUE(absl::SimpleAtoi(parts[0], &e.submitter)) << item;
      EXPECT_TRUE(absl::SimpleAtoi(parts[1], &e.ticket)) << item;
    } else {
      ADD_FAILURE() << "bad log entry: " << item;
    }
    out.push_back(e);
  }
  return out;
}

class SchedulingTest : public ConcurrencyFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ConcurrencyFixture::SetUp());
    ASSERT_OK(ws_->performChangesAndWait<Doc>([](TransactionContext& txn) {
      auto log = DocChangeRequest::creation();
      log.setId(kLogId).setRank(0).setBody("");
      return txn.submit(log).status();
    }));
    auto counters = Counters::create(*ws_);
    ASSERT_OK(counters);
    counters_ = std::make_unique<Counters>(*counters);
  }

  // The declarations whose tables include Doc: the log lives there.
  static int declarationWithDoc(int i) {
    static constexpr int kWithDoc[] = {1, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 16};
    return kWithDoc[i % (sizeof kWithDoc / sizeof kWithDoc[0])];
  }

  std::unique_ptr<Counters> counters_;
};

constexpr Priority kPriorities[] = {Priority::kUserInitiated, Priority::kDefault,
                                    Priority::kBackground};

TransactionOptions withPriority(Priority priority) {
  TransactionOptions options;
  options.priority = priority;
  return options;
}

// Many threads submit closures on the Doc table (some also declaring Monster and Event,
// at every priority), each taking an increasing ticket just before its own submissions. Every
// submitter's entries must land in its submission order, each exactly once, and the
// read-modify-write counter must end at exactly the number of closures.
TEST_F(SchedulingTest, OneTableKeepsEachSubmittersOrderAndLosesNoUpdate) {
  constexpr int kSubmitters = 8;
  constexpr int kPerSubmitter = 40;
  std::atomic<int64_t> next_ticket{0};
  std::vector<std::vector<TransactionHandle>> handles(kSubmitters);
  std::vector<std::thread> threads;
  for (int t = 0; t < kSubmitters; ++t) {
    threads.emplace_back([&, t] {
      for (int s = 0; s < kPerSubmitter; ++s) {
        int64_t ticket = next_ticket.fetch_add(1);
        std::string entry = absl::StrCat(t, ":", ticket);
        // Priorities vary too: they choose among runnable closures and never reorder a
        // table's queue.
        handles[t].push_back(performDeclared(
            *ws_, declarationWithDoc(t + s),
            [entry](TransactionContext& txn) { return appendToLog(txn, entry); },
            withPriority(kPriorities[(t + s) % 3])));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<TransactionHandle> all;
  for (const auto& hs : handles) all.insert(all.end(), hs.begin(), hs.end());
  waitAllOrDie(all, "closures on one table");

  for (int t = 0; t < kSubmitters; ++t) {
    Versionstamp previous;
    for (int s = 0; s < kPerSubmitter; ++s) {
      auto r = handles[t][s].wait();
      ASSERT_OK(r);
      // Each submitter's closures commit in its order, one per commit.
      EXPECT_GT(r->versionstamp, previous) << "submitter " << t << " closure " << s;
      previous = r->versionstamp;
    }
  }
  auto log = ws_->get<Doc>(kLogId);
  ASSERT_OK(log);
  ASSERT_NE(*log, nullptr);
  constexpr int kTotal = kSubmitters * kPerSubmitter;
  EXPECT_EQ((*log)->rank(), kTotal);
  std::vector<Entry> entries = parseLog((*log)->body());
  ASSERT_EQ(entries.size(), static_cast<size_t>(kTotal));
  std::vector<int64_t> last(kSubmitters, -1);
  std::vector<int> seen(kTotal, 0);
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    ASSERT_GE(e.submitter, 0);
    ASSERT_LT(e.submitter, kSubmitters);
    ASSERT_GE(e.ticket, 0);
    ASSERT_LT(e.ticket, kTotal);
    EXPECT_GT(e.ticket, last[e.submitter])
        << "entry " << i << ": submitter " << e.submitter << "'s ticket " << e.ticket
        << " landed after its ticket " << last[e.submitter];
    last[e.submitter] = e.ticket;
    seen[e.ticket] += 1;
  }
  for (int ticket = 0; ticket < kTotal; ++ticket) EXPECT_EQ(seen[ticket], 1) << ticket;
}

// When submission itself is serialized across threads (ticket and submit under one
// lock), the log must be exactly 0, 1, 2, ... and the commits must follow the tickets.
TEST_F(SchedulingTest, SerializedSubmissionsCommitInTicketOrder) {
  constexpr int kSubmitters = 6;
  constexpr int kPerSubmitter = 30;
  constexpr int kTotal = kSubmitters * kPerSubmitter;
  absl::Mutex submit_mu;
  int64_t next_ticket = 0;
  std::vector<TransactionHandle> by_ticket;
  std::vector<std::thread> threads;
  for (int t = 0; t < kSubmitters; ++t) {
    threads.emplace_back([&, t] {
      for (int s = 0; s < kPerSubmitter; ++s) {
        absl::MutexLock lock(&submit_mu);
        int64_t ticket = next_ticket++;
        std::string entry = absl::StrCat(t, ":", ticket);
        by_ticket.push_back(performDeclared(
            *ws_, declarationWithDoc(t * 7 + s),
            [entry](TransactionContext& txn) { return appendToLog(txn, entry); },
            withPriority(kPriorities[s % 3])));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  waitAllOrDie(by_ticket, "serialized submissions");

  Versionstamp previous;
  for (int ticket = 0; ticket < kTotal; ++ticket) {
    auto r = by_ticket[ticket].wait();
    ASSERT_OK(r);
    EXPECT_GT(r->versionstamp, previous) << "ticket " << ticket;
    previous = r->versionstamp;
  }
  auto log = ws_->get<Doc>(kLogId);
  ASSERT_OK(log);
  ASSERT_NE(*log, nullptr);
  EXPECT_EQ((*log)->rank(), kTotal);
  std::vector<Entry> entries = parseLog((*log)->body());
  ASSERT_EQ(entries.size(), static_cast<size_t>(kTotal));
  for (int i = 0; i < kTotal; ++i) EXPECT_EQ(entries[i].ticket, i) << "position " << i;
}

// A closure on Monster and one on Doc must be running at the same time, and the Doc
// closure must commit while the Monster one still runs. Were disjoint tables serialized,
// or the writer held up by a running closure, the first closure would wait in vain: the
// bounded wait turns that into a failed handle instead of a hang.
TEST_F(SchedulingTest, DisjointTablesRunAndCommitInParallel) {
  absl::Notification monster_started;
  absl::Notification doc_started;
  absl::Notification doc_committed;
  auto monster = ws_->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
    monster_started.Notify();
    if (!doc_started.WaitForNotificationWithTimeout(kBoundedWait)) {
      return absl::DeadlineExceededError("the Doc closure did not start beside this one");
    }
    if (!doc_committed.WaitForNotificationWithTimeout(kBoundedWait)) {
      return absl::DeadlineExceededError("the Doc closure did not commit while this one ran");
    }
    auto m = MonsterChangeRequest::creation();
    m.setName("parallel").setRealm(1);
    return txn.submit(m).status();
  });
  auto doc = ws_->performChanges<Doc>([&](TransactionContext& txn) -> absl::Status {
    doc_started.Notify();
    if (!monster_started.WaitForNotificationWithTimeout(kBoundedWait)) {
      return absl::DeadlineExceededError("the Monster closure did not start beside this one");
    }
    auto d = DocChangeRequest::creation();
    d.setId("parallel");
    return txn.submit(d).status();
  });
  doc.onComplete([&](const absl::StatusOr<TransactionResult>&) { doc_committed.Notify(); });

  auto doc_result = waitOrDie(doc, "the Doc closure");
  EXPECT_OK(doc_result);
  auto monster_result = waitOrDie(monster, "the Monster closure");
  EXPECT_OK(monster_result);
  ASSERT_TRUE(doc_result.ok() && monster_result.ok());
  EXPECT_LT(doc_result->versionstamp, monster_result->versionstamp);
  EXPECT_NE(*ws_->get<Monster>("parallel", 1), nullptr);
  EXPECT_NE(*ws_->get<Doc>("parallel"), nullptr);
}

// Waiting is confined to the tables involved: while a Monster closure runs, a closure on
// Monster+Doc waits for it, a later Doc closure waits behind that one (no overtaking on
// Doc), and an Event closure runs at once; the Monster closure only finishes once the
// Event closure has run.
TEST_F(SchedulingTest, WaitingStaysOnTheTablesInvolved) {
  absl::Notification event_ran;
  std::atomic<bool> both_ran{false};
  auto monster = ws_->performChanges<Monster>([&](TransactionContext&) -> absl::Status {
    if (!event_ran.WaitForNotificationWithTimeout(kBoundedWait)) {
      return absl::DeadlineExceededError("the Event closure was held up by Monster");
    }
    return absl::OkStatus();
  });
  auto both = ws_->performChanges<Monster, Doc>([&](TransactionContext& txn) -> absl::Status {
    if (!event_ran.HasBeenNotified()) {
      return absl::InternalError("ran while the Monster closure before it was still waiting");
    }
    both_ran.store(true);
    auto d = DocChangeRequest::creation();
    d.setId("both");
    return txn.submit(d).status();
  });
  auto doc = ws_->performChanges<Doc>([&](TransactionContext& txn) -> absl::Status {
    if (!both_ran.load()) return absl::InternalError("overtook the Monster+Doc closure on Doc");
    FLATSTORE_ASSIGN_OR_RETURN(auto d, txn.get<Doc>("both"));
    if (d == nullptr) return absl::InternalError("does not see the Monster+Doc closure's commit");
    return absl::OkStatus();
  });
  auto event = ws_->performChanges<Event>([&](TransactionContext& txn) -> absl::Status {
    event_ran.Notify();
    return absl::OkStatus();
  });
  waitAllOrDie({monster, both, doc, event}, "closures on overlapping tables");
  EXPECT_OK(event.wait());
  EXPECT_OK(monster.wait());
  EXPECT_OK(both.wait());
  EXPECT_OK(doc.wait());
}

// A thread that hands a table on takes the next closure on it along: while the first
// closure runs, two more are queued behind it on Doc; when it ends, its thread runs them
// back to back (no other thread is woken for them), and all three commit in order. (They
// write objects the others do not read: a closure that read its predecessor's pending
// change would run again after that commit instead.)
TEST_F(SchedulingTest, NextClosuresOnATableRunOnTheThreadThatHandsItOn) {
  absl::Notification first_started;
  absl::Notification release_first;
  absl::Mutex mu;
  std::vector<std::thread::id> threads;  // guarded by mu
  auto record = [&] {
    absl::MutexLock lock(&mu);
    threads.push_back(std::this_thread::get_id());
  };
  auto first = ws_->performChanges<Doc>([&](TransactionContext& txn) -> absl::Status {
    record();
    first_started.Notify();
    if (!release_first.WaitForNotificationWithTimeout(kBoundedWait)) {
      return absl::DeadlineExceededError("the test did not let the first closure go on");
    }
    auto d = DocChangeRequest::creation();
    d.setId("along-0");
    return txn.submit(d).status();
  });
  ASSERT_TRUE(first_started.WaitForNotificationWithTimeout(kBoundedWait));
  auto second = ws_->performChanges<Doc>([&](TransactionContext& txn) -> absl::Status {
    record();
    auto d = DocChangeRequest::creation();
    d.setId("along-1");
    return txn.submit(d).status();
  });
  auto third = ws_->performChanges<Doc>([&](TransactionContext& txn) -> absl::Status {
    record();
    auto d = DocChangeRequest::creation();
    d.setId("along-2");
    return txn.submit(d).status();
  });
  release_first.Notify();
  waitAllOrDie({first, second, third}, "three closures on Doc");
  auto r1 = first.wait();
  auto r2 = second.wait();
  auto r3 = third.wait();
  ASSERT_OK(r1);
  ASSERT_OK(r2);
  ASSERT_OK(r3);
  EXPECT_LT(r1->versionstamp, r2->versionstamp);
  EXPECT_LT(r2->versionstamp, r3->versionstamp);
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(threads.size(), 3u);
    EXPECT_EQ(threads[1], threads[0]);
    EXPECT_EQ(threads[2], threads[0]);
  }
  for (const char* id : {"along-0", "along-1", "along-2"}) {
    auto d = ws_->get<Doc>(id);
    ASSERT_OK(d);
    EXPECT_NE(*d, nullptr) << id;
  }
}

// Closures read on connections of their own: with one pooled reader connection and
// two closures holding their snapshots open, a fetch still runs at once. (Were the
// closures' snapshots taken from the fetch pool, the second closure and the fetch would
// wait until the first gave up, and it gives up only after the fetch ran.)
TEST_F(SchedulingTest, FetchesDoNotWaitForClosuresSnapshots) {
  auto opened =
      Workspace::open(dir_.file("pool.db"), {.worker_threads = 4, .reader_connections = 1});
  ASSERT_OK(opened);
  Workspace& ws = **opened;
  absl::Notification fetched;
  std::atomic<int> holding{0};
  // Holds the snapshot that `read` opened until the fetch ran.
  auto hold = [&](absl::Status read) -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(read);
    holding.fetch_add(1);
    if (!fetched.WaitForNotificationWithTimeout(kBoundedWait)) {
      return absl::DeadlineExceededError("the fetch waited for a closure's snapshot");
    }
    return absl::OkStatus();
  };
  auto doc = ws.performChanges<Doc>(
      [&](TransactionContext& txn) { return hold(txn.get<Doc>("nothing").status()); });
  auto monster = ws.performChanges<Monster>(
      [&](TransactionContext& txn) { return hold(txn.get<Monster>("nothing", 1).status()); });
  absl::Time deadline = absl::Now() + kBoundedWait;
  while (holding.load() < 2) {
    if (absl::Now() > deadline) failStuck("two closures holding snapshots");
    std::this_thread::yield();
  }
  auto found = ws.get<Doc>("nothing");
  fetched.Notify();
  EXPECT_OK(found);
  waitAllOrDie({doc, monster}, "closures holding snapshots");
  EXPECT_OK(doc.wait());
  EXPECT_OK(monster.wait());
}

// The converse: closures sharing a table never overlap. Each closure counts itself in an
// in-flight counter per declared table for its whole run (with reads in between, so an
// overlap has room to show); the highest count per table must be exactly 1.
TEST_F(SchedulingTest, ClosuresSharingATableNeverOverlap) {
  constexpr int kSubmitters = 6;
  constexpr int kPerSubmitter = 40;
  const uint64_t seed = baseSeed();
  SCOPED_TRACE(absl::StrCat("FLATSTORE_SEED=", seed));
  std::array<std::atomic<int>, 3> in_flight{};
  std::array<std::atomic<int>, 3> highest{};
  std::array<std::atomic<int>, 3> declared_by{};
  auto enter = [&](unsigned tables) {
    for (int i = 0; i < 3; ++i) {
      if ((tables & (1u << i)) == 0) continue;
      int now = in_flight[i].fetch_add(1) + 1;
      int seen = highest[i].load();
      while (now > seen && !highest[i].compare_exchange_weak(seen, now)) {
      }
    }
  };
  auto leave = [&](unsigned tables) {
    for (int i = 0; i < 3; ++i) {
      if (tables & (1u << i)) in_flight[i].fetch_sub(1);
    }
  };
  std::vector<std::vector<TransactionHandle>> handles(kSubmitters);
  std::vector<std::thread> threads;
  for (int t = 0; t < kSubmitters; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 31 + t);
      for (int s = 0; s < kPerSubmitter; ++s) {
        int declaration = static_cast<int>(rng() % kDeclarations);
        unsigned tables = declaredTables(declaration);
        for (int i = 0; i < 3; ++i) {
          if (tables & (1u << i)) declared_by[i].fetch_add(1);
        }
        handles[t].push_back(performDeclared(*ws_, declaration,
                                             [&, tables](TransactionContext& txn) -> absl::Status {
                                               enter(tables);
                                               absl::Status s = counters_->bump(txn, tables);
                                               if (s.ok() && (tables & kMonsterBit))
                                                 s = txn.fetch<Monster>().count().status();
                                               if (s.ok() && (tables & kDocBit))
                                                 s = txn.fetch<Doc>().count().status();
                                               if (s.ok() && (tables & kEventBit))
                                                 s = txn.fetch<Event>().count().status();
                                               leave(tables);
                                               return s;
                                             }));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<TransactionHandle> all;
  for (const auto& hs : handles) all.insert(all.end(), hs.begin(), hs.end());
  waitAllOrDie(all, "closures sharing tables");
  for (const TransactionHandle& h : all) ASSERT_OK(h.wait());

  const char* names[] = {"Monster", "Doc", "Event"};
  for (int i = 0; i < 3; ++i) {
    ASSERT_GT(declared_by[i].load(), 0) << names[i];
    EXPECT_EQ(highest[i].load(), 1) << "closures overlapped on " << names[i];
  }
  auto counts = counters_->read(*ws_);
  ASSERT_OK(counts);
  EXPECT_EQ(counts->monster, declared_by[0].load());
  EXPECT_EQ(counts->doc, declared_by[1].load());
  EXPECT_EQ(counts->event, declared_by[2].load());
}

// Closures over random subsets of the three tables, declared in every order (and with
// repeats), from many threads at once: all must complete within the bounded wait, and
// every table's counter must count exactly the closures that declared it.
TEST_F(SchedulingTest, MultiTableClosuresFromManyThreadsNeverDeadlock) {
  constexpr int kSubmitters = 8;
  constexpr int kPerSubmitter = 50;
  const uint64_t seed = baseSeed();
  SCOPED_TRACE(absl::StrCat("FLATSTORE_SEED=", seed));
  std::array<std::atomic<int64_t>, 3> expected{};
  std::vector<std::vector<TransactionHandle>> handles(kSubmitters);
  std::vector<std::thread> threads;
  for (int t = 0; t < kSubmitters; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 131 + t);
      for (int s = 0; s < kPerSubmitter; ++s) {
        int declaration = static_cast<int>(rng() % kDeclarations);
        unsigned tables = declaredTables(declaration);
        for (int i = 0; i < 3; ++i) {
          if (tables & (1u << i)) expected[i].fetch_add(1);
        }
        handles[t].push_back(performDeclared(
            *ws_, declaration,
            [this, tables](TransactionContext& txn) { return counters_->bump(txn, tables); }));
        // Now and then a submitter waits for its latest closure, so submissions and
        // completions interleave instead of all queueing up front.
        if (rng() % 8 == 0) {
          (void)waitOrDie(handles[t].back(), "a multi-table closure");
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<TransactionHandle> all;
  for (const auto& hs : handles) all.insert(all.end(), hs.begin(), hs.end());
  waitAllOrDie(all, "multi-table closures (deadlock?)");
  for (size_t i = 0; i < all.size(); ++i) {
    auto r = all[i].wait();
    ASSERT_TRUE(r.ok()) << "closure " << i << ": " << r.status();
  }

  auto counts = counters_->read(*ws_);
  ASSERT_OK(counts);
  EXPECT_EQ(counts->monster, expected[0].load());
  EXPECT_EQ(counts->doc, expected[1].load());
  EXPECT_EQ(counts->event, expected[2].load());
}

// ---------------------------------------------------------------------------------------
// Closures that wait for transactions on other tables

// A workspace with `workers` closure workers, for the tests of waits inside closures.
absl::StatusOr<std::unique_ptr<Workspace>> openWithWorkers(const TempDir& dir, int workers) {
  return Workspace::open(dir.file("nested.db"), {.worker_threads = workers});
}

// How long a test below waits for a nested transaction: far beyond what it takes, and a
// deadlock ends the test (failStuck) instead of hanging it.
constexpr absl::Duration kNestedWait = absl::Seconds(30);

// Creates the Doc `id` in a transaction of its own and waits for it, from inside a
// closure: through performChangesAndWait, or through performChanges(...).wait().
absl::Status createDocAndWait(Workspace& ws, const std::string& id, bool and_wait_form) {
  auto create = [id](TransactionContext& txn) {
    auto d = DocChangeRequest::creation();
    d.setId(id).setRank(1);
    return txn.submit(d).status();
  };
  if (and_wait_form) return ws.performChangesAndWait<Doc>(create).status();
  return ws.performChanges<Doc>(create).wait().status();
}

// Whether the Doc `id` is in the file.
bool docExists(Workspace& ws, const std::string& id) {
  auto d = ws.get<Doc>(id);
  EXPECT_OK(d);
  return d.ok() && *d != nullptr;
}

// With one worker, the closure holds the only slot while it waits for a Doc transaction,
// which needs a slot to run: the wait must lend its slot instead of hanging.
TEST(NestedWaitTest, ClosureWaitingForAnotherTableCompletesWithOneWorker) {
  TempDir dir;
  auto ws = openWithWorkers(dir, 1);
  ASSERT_OK(ws);
  for (bool and_wait_form : {true, false}) {
    std::string id = and_wait_form ? "inner-and-wait" : "inner-wait";
    auto outer = (*ws)->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
      FLATSTORE_RETURN_IF_ERROR(createDocAndWait(**ws, id, and_wait_form));
      auto m = MonsterChangeRequest::creation();
      m.setName(id).setRealm(0);
      return txn.submit(m).status();
    });
    ASSERT_OK(
        waitOrDie(outer, "a closure waiting for a Doc transaction with one worker", kNestedWait));
    EXPECT_TRUE(docExists(**ws, id)) << id;
  }
}

// Two closures (on Monster and on Event) hold both slots of two workers, the default on
// a two-core machine, and each waits for a Doc transaction: both must complete.
TEST(NestedWaitTest, TwoClosuresWaitingForAnotherTableCompleteWithTwoWorkers) {
  TempDir dir;
  auto ws = openWithWorkers(dir, 2);
  ASSERT_OK(ws);
  absl::Mutex mu;
  int started = 0;  // guarded by mu
  // Both closures hold their slots before either waits (bounded: a closure that does not
  // see the other one start fails instead of waiting).
  auto bothStarted = [&]() -> absl::Status {
    absl::MutexLock lock(&mu);
    ++started;
    if (!mu.AwaitWithTimeout(absl::Condition(
                                 +[](int* n) { return *n >= 2; }, &started),
                             kNestedWait)) {
      return absl::DeadlineExceededError("the other closure never started");
    }
    return absl::OkStatus();
  };
  auto onMonster = (*ws)->performChanges<Monster>([&](TransactionContext&) -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(bothStarted());
    return createDocAndWait(**ws, "from-monster", /*and_wait_form=*/true);
  });
  auto onEvent = (*ws)->performChanges<Event>([&](TransactionContext&) -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(bothStarted());
    return createDocAndWait(**ws, "from-event", /*and_wait_form=*/true);
  });
  waitAllOrDie({onMonster, onEvent}, "two closures waiting for Doc transactions", kNestedWait);
  EXPECT_OK(onMonster.wait());
  EXPECT_OK(onEvent.wait());
  EXPECT_TRUE(docExists(**ws, "from-monster"));
  EXPECT_TRUE(docExists(**ws, "from-event"));
}

// A closure that waits for a transaction on a table it holds itself waits for a
// transaction queued behind it: that is refused at once, never a hang.
TEST(NestedWaitTest, ClosureWaitingForItsOwnTableFailsWithFailedPrecondition) {
  TempDir dir;
  auto ws = openWithWorkers(dir, 2);
  ASSERT_OK(ws);
  absl::Status inner_status;
  auto outer = (*ws)->performChanges<Doc>([&](TransactionContext&) -> absl::Status {
    inner_status = createDocAndWait(**ws, "same-table", /*and_wait_form=*/false);
    return absl::OkStatus();
  });
  ASSERT_OK(waitOrDie(outer, "a closure waiting for a transaction on its own table", kNestedWait));
  EXPECT_EQ(inner_status.code(), absl::StatusCode::kFailedPrecondition) << inner_status;
  EXPECT_THAT(inner_status.message(), HasSubstr("Doc"));
}

// Closures that wait for each other's tables: each runs on its own table and waits for a
// transaction on the next one's, so each transaction waited for is queued behind a
// closure that waits too. Only the wait that closes the circle can tell; it fails with
// FailedPrecondition naming the tables, its closure ends, and the others complete.

// A barrier for `n` closures: each holds its table before any of them waits (bounded: a
// closure that does not see the others start fails instead of waiting).
class StartBarrier {
 public:
  explicit StartBarrier(int n) : n_(n) {}
  absl::Status arriveAndWait() {
    absl::MutexLock lock(&mu_);
    ++arrived_;
    auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return arrived_ >= n_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&all), kNestedWait)) {
      return absl::DeadlineExceededError("the other closures never started");
    }
    return absl::OkStatus();
  }

 private:
  const int n_;
  absl::Mutex mu_;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
};

// A workspace with one worker per closure of a circle (or chain) of closures that wait
// for each other's tables, and the barrier they start at.
class WaitCircleTest : public ::testing::Test {
 protected:
  void open(int closures) {
    auto ws = openWithWorkers(dir_, closures);
    ASSERT_OK(ws);
    ws_ = std::move(*ws);
    barrier_ = std::make_unique<StartBarrier>(closures);
  }

  // A closure on T that, once every closure started, creates the object `id` of U in a
  // transaction of its own and waits for it; returns the wait's status.
  template <class T, class U>
  TransactionHandle waitForTheNext(std::string id) {
    return ws_->performChanges<T>([this, id](TransactionContext&) -> absl::Status {
      FLATSTORE_RETURN_IF_ERROR(barrier_->arriveAndWait());
      return ws_
          ->performChangesAndWait<U>([id](TransactionContext& txn) {
            if constexpr (std::is_same_v<U, Doc>) {
              auto d = DocChangeRequest::creation();
              d.setId(id).setRank(1);
              return txn.submit(d).status();
            } else if constexpr (std::is_same_v<U, Monster>) {
              auto m = MonsterChangeRequest::creation();
              m.setName(id).setRealm(0);
              return txn.submit(m).status();
            } else {
              auto e = EventChangeRequest::creation();
              e.setKind(id).setAt(1);
              return txn.submit(e).status();
            }
          })
          .status();
    });
  }

  TempDir dir_;
  std::unique_ptr<StartBarrier> barrier_;
  std::unique_ptr<Workspace> ws_;  // first to go: its closures use barrier_
};

// The outcomes of the closures of a circle: exactly one wait fails, with
// FailedPrecondition naming every table of the circle; the others succeed.
void expectOneWaitRefused(const std::vector<TransactionHandle>& closures,
                          const std::vector<std::string>& tables) {
  waitAllOrDie(closures, "closures waiting for each other's tables", kNestedWait);
  int refused = 0;
  for (const TransactionHandle& h : closures) {
    absl::StatusOr<TransactionResult> r = h.wait();
    if (r.ok()) continue;
    ++refused;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
    for (const std::string& t : tables) EXPECT_THAT(r.status().message(), HasSubstr(t));
    EXPECT_THAT(r.status().message(), HasSubstr("each other's tables"));
  }
  EXPECT_EQ(refused, 1);
}

TEST_F(WaitCircleTest, TwoClosuresWaitingForEachOthersTablesFailOneWait) {
  ASSERT_NO_FATAL_FAILURE(open(2));
  ASSERT_NO_FATAL_FAILURE(expectOneWaitRefused(
      {waitForTheNext<Monster, Doc>("from-monster"), waitForTheNext<Doc, Monster>("from-doc")},
      {"Monster", "Doc"}));
  // The transactions waited for are not cancelled: both commit, before a transaction
  // queued behind them on both tables commits.
  auto behind = ws_->performChanges<Monster, Doc>([](TransactionContext& txn) {
    auto d = DocChangeRequest::creation();
    d.setId("behind").setRank(1);
    return txn.submit(d).status();
  });
  ASSERT_OK(waitOrDie(behind, "a transaction behind the circle", kNestedWait));
  EXPECT_TRUE(docExists(*ws_, "from-monster"));
  auto monster = ws_->get<Monster>("from-doc", 0);
  ASSERT_OK(monster);
  EXPECT_NE(*monster, nullptr);
}

TEST_F(WaitCircleTest, ThreeClosuresWaitingInACircleFailOneWait) {
  ASSERT_NO_FATAL_FAILURE(open(3));
  ASSERT_NO_FATAL_FAILURE(expectOneWaitRefused(
      {waitForTheNext<Monster, Doc>("from-monster"), waitForTheNext<Doc, Event>("from-doc"),
       waitForTheNext<Event, Monster>("from-event")},
      {"Monster", "Doc", "Event"}));
}

// Closures that wait in a chain that does not close (Monster waits for Doc, Doc for
// Event) are not refused: every wait ends.
TEST_F(WaitCircleTest, ClosuresWaitingInAChainComplete) {
  ASSERT_NO_FATAL_FAILURE(open(2));
  std::vector<TransactionHandle> closures = {waitForTheNext<Monster, Doc>("from-monster"),
                                             waitForTheNext<Doc, Event>("from-doc")};
  waitAllOrDie(closures, "closures waiting in a chain", kNestedWait);
  for (const TransactionHandle& h : closures) EXPECT_OK(h.wait());
}

}  // namespace
}  // namespace flatstore::testing
