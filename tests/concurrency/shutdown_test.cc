// Shutting down and destroying a workspace while closures are queued and running: every
// handle completes (committed, or refused with FailedPrecondition), nothing hangs, and
// what was reported committed is in the file after reopening.
#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/concurrency/concurrency_util.h"

namespace flatstore::testing {
namespace {

using ::testing::HasSubstr;

absl::Status createMonster(TransactionContext& txn, const std::string& name) {
  auto m = MonsterChangeRequest::creation();
  m.setName(name).setRealm(0);
  return txn.submit(m).status();
}
absl::Status createDoc(TransactionContext& txn, const std::string& id) {
  auto d = DocChangeRequest::creation();
  d.setId(id);
  return txn.submit(d).status();
}
absl::Status createEvent(TransactionContext& txn, const std::string& kind) {
  auto e = EventChangeRequest::creation();
  e.setKind(kind);
  return txn.submit(e).status();
}

// What is in the file: Monster names, Doc ids and Event kinds.
struct Contents {
  std::set<std::string> monsters, docs, events;
};

absl::StatusOr<Contents> contentsOf(Workspace& ws) {
  Contents c;
  FLATSTORE_ASSIGN_OR_RETURN(auto monsters, ws.fetch<Monster>().all());
  for (const auto& m : monsters) c.monsters.insert(std::string(m->name()));
  FLATSTORE_ASSIGN_OR_RETURN(auto docs, ws.fetch<Doc>().all());
  for (const auto& d : docs) c.docs.insert(std::string(d->id()));
  FLATSTORE_ASSIGN_OR_RETURN(auto events, ws.fetch<Event>().all());
  for (const auto& e : events) c.events.insert(std::string(e->kind()));
  return c;
}

// A closure blocked on a gate until the test opens it (bounded: an unopened gate fails
// the closure rather than hanging the test).
class Gate {
 public:
  absl::Status pass() {
    started_.Notify();
    if (!open_.WaitForNotificationWithTimeout(kBoundedWait)) {
      return absl::DeadlineExceededError("the gate was never opened");
    }
    return absl::OkStatus();
  }
  void waitStarted() {
    if (!started_.WaitForNotificationWithTimeout(kBoundedWait)) failStuck("the gate closure");
  }
  void open() { open_.Notify(); }

 private:
  absl::Notification started_;
  absl::Notification open_;
};

// Runs `fn` on a thread of its own; the test waits for it with a bound.
class Background {
 public:
  explicit Background(std::function<void()> fn)
      : thread_([this, fn = std::move(fn)] {
          fn();
          done_.Notify();
        }) {}
  ~Background() { thread_.join(); }
  void waitOrDie(const std::string& what) {
    if (!done_.WaitForNotificationWithTimeout(kBoundedWait)) failStuck(what);
  }

 private:
  absl::Notification done_;
  std::thread thread_;
};

// One closure the test submitted, with the object it creates.
struct Submitted {
  TransactionHandle handle;
  unsigned table;
  std::string name;
};

void expectInFile(const Contents& c, const Submitted& s, bool present) {
  const std::set<std::string>& names = s.table == kMonsterBit ? c.monsters
                                       : s.table == kDocBit   ? c.docs
                                                              : c.events;
  EXPECT_EQ(names.count(s.name), present ? 1u : 0u)
      << tableNames(s.table) << " " << s.name << (present ? " is missing" : " was written");
}

class ShutdownTest : public ConcurrencyFixture {};

// shutdown() while a Monster closure runs (held on a gate) with closures queued behind it,
// and while submitters keep submitting Doc closures. The gate opens only once a
// submitter was refused, so shutdown has certainly begun while closures were running and
// queued. shutdown() must then let them all run and commit, refuse every later
// submission with FailedPrecondition, and return only when every accepted handle is done.
TEST_F(ShutdownTest, ShutdownLetsQueuedAndRunningClosuresCommitAndRefusesNewOnes) {
  constexpr int kSubmitters = 3;
  Gate gate;
  std::vector<Submitted> accepted;
  accepted.push_back({ws_->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
                        FLATSTORE_RETURN_IF_ERROR(gate.pass());
                        return createMonster(txn, "gate");
                      }),
                      kMonsterBit, "gate"});
  gate.waitStarted();
  for (int i = 0; i < 20; ++i) {
    std::string m = absl::StrCat("queued", i);
    accepted.push_back({ws_->performChanges<Monster>(
                            [m](TransactionContext& txn) { return createMonster(txn, m); }),
                        kMonsterBit, m});
    if (i % 4 == 0) {
      // Behind the gate on Monster, and so holding up Event behind it.
      std::string e = absl::StrCat("queued", i);
      accepted.push_back({ws_->performChanges<Monster, Event>(
                              [e](TransactionContext& txn) { return createEvent(txn, e); }),
                          kEventBit, e});
    }
  }

  absl::Mutex mu;
  std::vector<Submitted> from_submitters;  // guarded by mu
  absl::Notification refused;
  std::atomic<bool> refused_once{false};
  std::vector<std::unique_ptr<Background>> submitters;
  for (int t = 0; t < kSubmitters; ++t) {
    submitters.push_back(std::make_unique<Background>([&, t] {
      for (int i = 0;; ++i) {
        std::string d = absl::StrCat("s", t, "-", i);
        TransactionHandle h =
            ws_->performChanges<Doc>([d](TransactionContext& txn) { return createDoc(txn, d); });
        {
          absl::MutexLock lock(&mu);
          from_submitters.push_back({h, kDocBit, d});
        }
        // A refused submission completes before performChanges returns; an accepted
        // Doc closure never fails with FailedPrecondition (Doc is not behind the gate).
        if (h.done() && h.wait().status().code() == absl::StatusCode::kFailedPrecondition) {
          if (!refused_once.exchange(true)) refused.Notify();
          return;
        }
        (void)::flatstore::testing::waitOrDie(h, "an accepted Doc closure");
      }
    }));
  }

  absl::Status shutdown_status;
  bool all_done_at_return = false;
  {
    Background shutdown([&] {
      shutdown_status = ws_->shutdown();
      all_done_at_return = true;
      for (const Submitted& s : accepted) all_done_at_return &= s.handle.done();
    });
    if (!refused.WaitForNotificationWithTimeout(kBoundedWait)) failStuck("no refusal");
    gate.open();
    shutdown.waitOrDie("shutdown()");
  }
  for (auto& s : submitters) s->waitOrDie("a submitter");
  submitters.clear();
  EXPECT_OK(shutdown_status);
  EXPECT_TRUE(all_done_at_return) << "shutdown() returned before every accepted closure was done";

  int refusals = 0;
  for (const Submitted& s : accepted) {
    ASSERT_TRUE(s.handle.done()) << s.name;
    EXPECT_OK(s.handle.wait());
  }
  for (const Submitted& s : from_submitters) {
    ASSERT_TRUE(s.handle.done()) << s.name;
    auto r = s.handle.wait();
    if (!r.ok()) {
      ++refusals;
      EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
      EXPECT_THAT(std::string(r.status().message()), HasSubstr("shut down"));
    }
  }
  EXPECT_EQ(refusals, kSubmitters);
  auto late =
      ws_->performChanges<Event>([](TransactionContext& txn) { return createEvent(txn, "late"); });
  ASSERT_TRUE(late.done());
  EXPECT_EQ(late.wait().status().code(), absl::StatusCode::kFailedPrecondition);

  ws_.reset();
  ASSERT_NO_FATAL_FAILURE(open());
  auto contents = contentsOf(*ws_);
  ASSERT_OK(contents);
  for (const Submitted& s : accepted) expectInFile(*contents, s, true);
  for (const Submitted& s : from_submitters) expectInFile(*contents, s, s.handle.wait().ok());
  EXPECT_EQ(contents->events.count("late"), 0u);
  EXPECT_EQ(contents->monsters.size(), 21u);
  EXPECT_EQ(contents->docs.size(), from_submitters.size() - kSubmitters);
}

// Destroying the workspace while closures run on two tables (held on a gate) with more
// queued behind them and others free to run: the destructor waits for all of them, every
// handle completes with success and runs its callback once, and everything is in the file.
TEST_F(ShutdownTest, DestroyingTheWorkspaceCompletesQueuedAndRunningClosures) {
  Gate monster_gate;
  Gate event_gate;
  std::vector<Submitted> submitted;
  submitted.push_back({ws_->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
                         FLATSTORE_RETURN_IF_ERROR(monster_gate.pass());
                         return createMonster(txn, "gate");
                       }),
                       kMonsterBit, "gate"});
  submitted.push_back({ws_->performChanges<Event>([&](TransactionContext& txn) -> absl::Status {
                         FLATSTORE_RETURN_IF_ERROR(event_gate.pass());
                         return createEvent(txn, "gate");
                       }),
                       kEventBit, "gate"});
  monster_gate.waitStarted();
  event_gate.waitStarted();
  for (int i = 0; i < 30; ++i) {
    std::string name = absl::StrCat("n", i);
    switch (i % 4) {
      case 0:
        submitted.push_back({ws_->performChanges<Monster>([name](TransactionContext& txn) {
                               return createMonster(txn, name);
                             }),
                             kMonsterBit, name});
        break;
      case 1:
        submitted.push_back({ws_->performChanges<Monster, Doc>(
                                 [name](TransactionContext& txn) { return createDoc(txn, name); }),
                             kDocBit, name});
        break;
      case 2:
        submitted.push_back({ws_->performChanges<Doc>(
                                 [name](TransactionContext& txn) { return createDoc(txn, name); }),
                             kDocBit, name});
        break;
      default:
        submitted.push_back({ws_->performChanges<Event>([name](TransactionContext& txn) {
                               return createEvent(txn, name);
                             }),
                             kEventBit, name});
        break;
    }
  }
  std::atomic<int> callbacks{0};
  for (const Submitted& s : submitted) {
    s.handle.onComplete([&](const absl::StatusOr<TransactionResult>&) { callbacks.fetch_add(1); });
  }
  {
    Background destroy([&] { ws_.reset(); });
    monster_gate.open();
    event_gate.open();
    destroy.waitOrDie("the workspace's destructor");
  }
  EXPECT_EQ(callbacks.load(), static_cast<int>(submitted.size()));
  for (const Submitted& s : submitted) {
    ASSERT_TRUE(s.handle.done()) << s.name;
    EXPECT_OK(s.handle.wait());
  }
  ASSERT_NO_FATAL_FAILURE(open());
  auto contents = contentsOf(*ws_);
  ASSERT_OK(contents);
  for (const Submitted& s : submitted) expectInFile(*contents, s, true);
  EXPECT_EQ(contents->monsters.size() + contents->docs.size() + contents->events.size(),
            submitted.size());
}

// Destroying the workspace right after a burst of submissions from several threads, with
// nothing held: the destructor drains every table's queue.
TEST_F(ShutdownTest, DestroyingRightAfterABurstCommitsEverything) {
  constexpr int kSubmitters = 4;
  constexpr int kPerSubmitter = 50;
  std::vector<std::vector<Submitted>> submitted(kSubmitters);
  std::vector<std::thread> threads;
  for (int t = 0; t < kSubmitters; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerSubmitter; ++i) {
        std::string name = absl::StrCat("b", t, "-", i);
        int declaration = (t * kPerSubmitter + i) % kDeclarations;
        unsigned tables = declaredTables(declaration);
        // The object goes to the first declared table.
        unsigned table = tables & kMonsterBit ? kMonsterBit
                         : tables & kDocBit   ? kDocBit
                                              : kEventBit;
        submitted[t].push_back({performDeclared(*ws_, declaration,
                                                [name, table](TransactionContext& txn) {
                                                  return table == kMonsterBit
                                                             ? createMonster(txn, name)
                                                         : table == kDocBit
                                                             ? createDoc(txn, name)
                                                             : createEvent(txn, name);
                                                }),
                                table, name});
      }
    });
  }
  for (std::thread& t : threads) t.join();
  {
    Background destroy([&] { ws_.reset(); });
    destroy.waitOrDie("the workspace's destructor");
  }
  ASSERT_NO_FATAL_FAILURE(open());
  auto contents = contentsOf(*ws_);
  ASSERT_OK(contents);
  for (const auto& ss : submitted) {
    for (const Submitted& s : ss) {
      ASSERT_TRUE(s.handle.done()) << s.name;
      EXPECT_OK(s.handle.wait());
      expectInFile(*contents, s, true);
    }
  }
  EXPECT_EQ(contents->monsters.size() + contents->docs.size() + contents->events.size(),
            static_cast<size_t>(kSubmitters * kPerSubmitter));
}

// Two shutdown() calls overlap while a closure runs: both return only after the closure
// completed, as shutdown() promises (the second call waits for the first).
TEST_F(ShutdownTest, OverlappingShutdownCallsBothWaitForRunningClosures) {
  Gate gate;
  auto running = ws_->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(gate.pass());
    return createMonster(txn, "running");
  });
  gate.waitStarted();
  absl::Mutex mu;
  int returned = 0;  // guarded by mu
  absl::Status status[2];
  bool running_done[2] = {false, false};
  auto call = [&](int i) {
    status[i] = ws_->shutdown();
    running_done[i] = running.done();
    absl::MutexLock lock(&mu);
    ++returned;
  };
  {
    Background first([&] { call(0); });
    Background second([&] { call(1); });
    {
      // A correct shutdown() cannot return while the gate is closed; a call that
      // returns early does so at once. This bounded wait only gives such a call time
      // to show; it cannot fail a correct implementation.
      absl::MutexLock lock(&mu);
      mu.AwaitWithTimeout(absl::Condition(
                              +[](int* n) { return *n > 0; }, &returned),
                          absl::Seconds(2));
    }
    gate.open();
    first.waitOrDie("the first shutdown()");
    second.waitOrDie("the second shutdown()");
  }
  for (int i = 0; i < 2; ++i) {
    EXPECT_OK(status[i]);
    EXPECT_TRUE(running_done[i]) << "shutdown() call " << i
                                 << " returned before the running closure was done";
  }
  EXPECT_OK(running.wait());
}

// shutdown() from a subscription callback would wait for the callback's own thread (the
// notification thread, or with the inline executor the thread that delivers): it must
// return FailedPrecondition there, as in closures and onComplete callbacks, and the
// workspace must go on working.
TEST_F(ShutdownTest, ShutdownFromASubscriptionCallbackIsFailedPrecondition) {
  for (bool inline_executor : {false, true}) {
    SCOPED_TRACE(inline_executor ? "inline executor" : "default executor");
    auto empty = ws_->fetch<Monster>().all();
    ASSERT_OK(empty);
    absl::Notification called;
    absl::Status from_callback;
    auto token = ws_->subscribe(
        *empty,
        [&](const FetchedResult<Monster>&, const Changeset&) {
          if (called.HasBeenNotified()) return;
          from_callback = ws_->shutdown();
          called.Notify();
        },
        inline_executor ? &inlineExecutor() : nullptr);
    ASSERT_OK(token);
    std::string name = inline_executor ? "inline" : "default";
    ASSERT_OK(ws_->performChangesAndWait<Monster>(
        [&](TransactionContext& txn) { return createMonster(txn, name); }));
    if (!called.WaitForNotificationWithTimeout(kBoundedWait)) failStuck("the callback");
    EXPECT_EQ(from_callback.code(), absl::StatusCode::kFailedPrecondition) << from_callback;
    EXPECT_THAT(from_callback.message(), HasSubstr("subscription callback"));
    token->cancel();
    // Not shut down: it still commits.
    EXPECT_OK(ws_->performChangesAndWait<Monster>(
        [&](TransactionContext& txn) { return createMonster(txn, name + "-after"); }));
  }
  EXPECT_OK(ws_->shutdown());
}

}  // namespace
}  // namespace flatstore::testing
