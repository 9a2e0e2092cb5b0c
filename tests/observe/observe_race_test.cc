// Subscriptions under concurrency; built to run under ThreadSanitizer (label
// "concurrency"):
//   - cancel() from another thread while deliveries run, on a multi-threaded executor,
//     the default executor and the inline one: once cancel() has returned, the callback
//     never runs again;
//   - cancel() from inside the callback itself;
//   - destroying the workspace with live subscriptions and deliveries still queued, the
//     tokens destroyed after the workspace and before it;
//   - many subscribe/cancel cycles on several threads while several threads write;
//   - a callback that blocks does not block commits, and its pending results coalesce.
//
// A callback checks a `cancelled` flag that its test sets right after cancel() returns,
// on entry and again on exit: a callback that starts after cancel() returned, or that is
// still running when it returns, counts as a violation. Every wait is bounded.
#include <atomic>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gtest/gtest.h"
#include "tests/observe/observe_util.h"
#include "tests/support/notification_barrier.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"

namespace flatstore::test::game {
namespace {

using ::flatstore::testing::CallbackGate;
using ::flatstore::testing::checkChangeset;
using ::flatstore::testing::describeRows;
using ::flatstore::testing::kBoundedWait;
using ::flatstore::testing::NotificationBarrier;
using ::flatstore::testing::sameRows;
using ::flatstore::testing::TempDir;
using ::flatstore::testing::ThreadPoolExecutor;
using F = MonsterFields;
using EF = EventFields;
using MonsterPtr = std::shared_ptr<const MonsterEntity>;

constexpr int kMonsters = 16;

enum class Exec { kInline, kDefault, kPool };

std::string execName(Exec e) {
  switch (e) {
    case Exec::kInline:
      return "Inline";
    case Exec::kDefault:
      return "Default";
    case Exec::kPool:
      return "Pool";
  }
  return "?";
}
std::string execParamName(const ::testing::TestParamInfo<Exec>& info) {
  return execName(info.param);
}
void PrintTo(Exec e, std::ostream* os) { *os << execName(e); }

std::string monsterName(int i) { return absl::StrCat("m", i); }

// Upserts monster `name` with `hp`.
absl::Status setHp(Workspace& ws, const std::string& name, int hp) {
  return ws
      .performChangesAndWait<Monster>([&](TransactionContext& txn) {
        auto r = MonsterChangeRequest::upsert();
        r.setName(name).setRealm(0).setHp(static_cast<int16_t>(hp));
        return txn.submit(r).status();
      })
      .status();
}

// What a callback of a cancelled subscription must never do: start after cancel()
// returned, or still run when it returns.
struct CancelProbe {
  std::atomic<bool> cancelled{false};  // set by the test right after cancel() returns
  std::atomic<int> calls{0};
  std::atomic<int> violations{0};
  std::atomic<int64_t> work{0};  // a sink for busywork, so it is not optimized away

  void enter() {
    if (cancelled.load(std::memory_order_acquire)) violations.fetch_add(1);
    calls.fetch_add(1);
  }
  void leave() {
    if (cancelled.load(std::memory_order_acquire)) violations.fetch_add(1);
  }
};

// A callback that checks every delivery against the one before it.
struct ChainRecorder {
  explicit ChainRecorder(std::vector<MonsterPtr> initial) : last(std::move(initial)) {}

  absl::Mutex mu;
  std::vector<MonsterPtr> last ABSL_GUARDED_BY(mu);
  uint64_t last_sequence ABSL_GUARDED_BY(mu) = 0;
  int deliveries ABSL_GUARDED_BY(mu) = 0;
  std::vector<std::string> errors ABSL_GUARDED_BY(mu);

  void onDelivery(const FetchedResult<Monster>& r, const Changeset& cs) {
    absl::MutexLock lock(&mu);
    deliveries += 1;
    std::string e = checkChangeset(last, r.objects(), cs);
    if (!e.empty() && errors.size() < 4) errors.push_back(e);
    if (cs.commit_sequence < last_sequence && errors.size() < 4) {
      errors.push_back(absl::StrCat("commit sequence went back from ", last_sequence, " to ",
                                    cs.commit_sequence));
    }
    last = r.objects();
    last_sequence = cs.commit_sequence;
  }
};

// A write load: threads that each commit `per_thread` transactions on Monster, changing
// the hp of a pseudo-random monster, now and then deleting or re-creating one.
class WriteLoad {
 public:
  WriteLoad(Workspace& ws, int threads, int per_thread) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, &ws, t, per_thread] {
        uint64_t x = 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(t + 1);
        for (int i = 0; i < per_thread; ++i) {
          x = x * 6364136223846793005ULL + 1442695040888963407ULL;
          std::string name = monsterName(static_cast<int>((x >> 33) % kMonsters));
          int hp = static_cast<int>((x >> 40) % 300);
          bool drop = (x >> 20) % 10 == 0;
          auto done = ws.performChangesAndWait<Monster>([&](TransactionContext& txn) {
            auto current = txn.get<Monster>(name, 0);
            if (!current.ok()) return current.status();
            if (drop && *current != nullptr) {
              return txn.submit(MonsterChangeRequest::deletionOf(**current)).status();
            }
            auto r = MonsterChangeRequest::upsert();
            r.setName(name).setRealm(0).setHp(static_cast<int16_t>(hp));
            return txn.submit(r).status();
          });
          absl::MutexLock lock(&mu_);
          if (done.ok()) {
            committed_ += 1;
          } else if (first_error_.ok()) {
            first_error_ = done.status();
          }
        }
      });
    }
  }
  ~WriteLoad() { join(); }

  void join() {
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int committed() {
    absl::MutexLock lock(&mu_);
    return committed_;
  }
  absl::Status firstError() {
    absl::MutexLock lock(&mu_);
    return first_error_;
  }

 private:
  absl::Mutex mu_;
  int committed_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

class ObserveRaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ws = Workspace::open(dir_.file("race.db"));
    ASSERT_TRUE(ws.ok()) << ws.status();
    ws_ = std::move(*ws);
    for (int i = 0; i < kMonsters; ++i) ASSERT_OK(setHp(*ws_, monsterName(i), i * 10));
  }

  Executor* executor(Exec e) {
    switch (e) {
      case Exec::kInline:
        return &inlineExecutor();
      case Exec::kDefault:
        return nullptr;
      case Exec::kPool:
        return &pool_;
    }
    return nullptr;
  }

  // Returns once every delivery of every executor made so far has run.
  void settle() {
    ws_->awaitObservers();
    ASSERT_NO_FATAL_FAILURE(barrier_.pass(*ws_));
    ASSERT_TRUE(pool_.drain()) << "the pool did not drain";
  }

  absl::StatusOr<FetchedResult<Monster>> fetchAll() {
    return ws_->fetch<Monster>().orderBy(F::hp.ascending()).all();
  }

  // The blocking subscription watches m0 alone and the probes everything else, so a
  // commit to m0 is delivered to the blocker only and commits to the others to the
  // probes only, whatever order the hub hands one commit's deliveries to the executor.
  absl::StatusOr<FetchedResult<Monster>> fetchM0() {
    return ws_->fetch<Monster>().where(F::name == "m0").all();
  }
  absl::StatusOr<FetchedResult<Monster>> fetchAllButM0() {
    return ws_->fetch<Monster>().where(F::name != "m0").orderBy(F::hp.ascending()).all();
  }

  TempDir dir_;
  // Declared before the workspace: the pool outlives it, so the hub never hands a
  // delivery to a destroyed executor.
  ThreadPoolExecutor pool_{3};
  std::unique_ptr<Workspace> ws_;
  NotificationBarrier barrier_;
};

// ---------------------------------------------------------------------------------------
// cancel() from another thread while deliveries run.

class CancelRaceTest : public ObserveRaceTest, public ::testing::WithParamInterface<Exec> {};

TEST_P(CancelRaceTest, NoCallbackAfterCancelReturns) {
  constexpr int kRounds = 40;
  constexpr int kSubsPerRound = 4;
  WriteLoad load(*ws_, 3, 120);
  std::vector<std::shared_ptr<CancelProbe>> probes;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<SubscriptionToken> tokens;
    std::vector<std::shared_ptr<CancelProbe>> mine;
    auto first = std::make_shared<absl::Notification>();
    auto notified = std::make_shared<std::atomic<bool>>(false);
    for (int k = 0; k < kSubsPerRound; ++k) {
      auto q = ws_->fetch<Monster>();
      if (k == 1) q.where(F::hp > 100);
      if (k == 2) q.orderBy(F::hp.descending()).limit(3);
      if (k == 3) q.orderBy(F::name.ascending()).offset(2);
      auto initial = q.all();
      ASSERT_TRUE(initial.ok()) << initial.status();
      auto probe = std::make_shared<CancelProbe>();
      auto token = ws_->subscribe(
          *initial,
          [probe, first, notified](const FetchedResult<Monster>& r, const Changeset& cs) {
            probe->enter();
            // Some work, to widen the window cancel() races with.
            int64_t hp = 0;
            for (int pass = 0; pass < 200; ++pass) {
              for (const MonsterPtr& m : r) hp += m->hp() + pass;
            }
            probe->work.fetch_add(hp, std::memory_order_relaxed);
            if (cs.commit_sequence > 0 && !notified->exchange(true)) first->Notify();
            probe->leave();
          },
          executor(GetParam()));
      ASSERT_TRUE(token.ok()) << token.status();
      tokens.push_back(std::move(*token));
      mine.push_back(probe);
    }
    // A commit of our own, so the round sees a delivery even when the load is done.
    ASSERT_OK(setHp(*ws_, monsterName(round % kMonsters), 1000 + round));
    ASSERT_TRUE(first->WaitForNotificationWithTimeout(kBoundedWait)) << "round " << round;
    // Cancel from two other threads, half each, while deliveries keep coming.
    auto cancelHalf = [&](int parity) {
      for (size_t i = parity; i < tokens.size(); i += 2) {
        tokens[i].cancel();
        mine[i]->cancelled.store(true, std::memory_order_release);
        EXPECT_FALSE(tokens[i].active());
      }
    };
    std::thread a(cancelHalf, 0);
    std::thread b(cancelHalf, 1);
    a.join();
    b.join();
    probes.insert(probes.end(), mine.begin(), mine.end());
  }
  load.join();
  EXPECT_OK(load.firstError());
  ASSERT_NO_FATAL_FAILURE(settle());
  int calls = 0;
  for (size_t i = 0; i < probes.size(); ++i) {
    EXPECT_EQ(probes[i]->violations.load(), 0) << "subscription " << i;
    calls += probes[i]->calls.load();
  }
  EXPECT_GE(calls, kRounds);
}

// cancel() from inside the callback: the callback finishes normally, and never runs
// again, though commits keep coming from several threads.
TEST_P(CancelRaceTest, CancelFromInsideTheCallback) {
  struct Self {
    absl::Mutex mu;
    SubscriptionToken token ABSL_GUARDED_BY(mu);
    std::atomic<int> calls{0};
    std::atomic<int> still_active{0};
  };
  std::vector<std::shared_ptr<Self>> selves;
  for (int k = 0; k < 4; ++k) {
    auto initial = fetchAll();
    ASSERT_TRUE(initial.ok()) << initial.status();
    auto self = std::make_shared<Self>();
    std::weak_ptr<Self> weak = self;  // the core holds the callback: no cycle
    auto token = ws_->subscribe(
        *initial,
        [weak](const FetchedResult<Monster>&, const Changeset&) {
          auto self = weak.lock();
          if (self == nullptr) return;
          self->calls.fetch_add(1);
          absl::MutexLock lock(&self->mu);
          self->token.cancel();
          if (self->token.active()) self->still_active.fetch_add(1);
        },
        executor(GetParam()));
    ASSERT_TRUE(token.ok()) << token.status();
    absl::MutexLock lock(&self->mu);
    self->token = std::move(*token);
    selves.push_back(self);
  }
  {
    WriteLoad load(*ws_, 3, 30);
    load.join();
    EXPECT_OK(load.firstError());
    EXPECT_GT(load.committed(), 0);
  }
  ASSERT_NO_FATAL_FAILURE(settle());
  for (size_t k = 0; k < selves.size(); ++k) {
    EXPECT_EQ(selves[k]->calls.load(), 1) << "subscription " << k;
    EXPECT_EQ(selves[k]->still_active.load(), 0) << "subscription " << k;
    absl::MutexLock lock(&selves[k]->mu);
    EXPECT_FALSE(selves[k]->token.active());
  }
}

INSTANTIATE_TEST_SUITE_P(Executors, CancelRaceTest,
                         ::testing::Values(Exec::kInline, Exec::kDefault, Exec::kPool),
                         execParamName);

// ---------------------------------------------------------------------------------------
// Destroying the workspace with live subscriptions and queued deliveries.

// The default notification thread is held by one callback while commits queue deliveries
// for the others behind it; the workspace is destroyed meanwhile (on another thread, as
// its destructor waits for the held callback), and the tokens outlive it.
TEST_F(ObserveRaceTest, WorkspaceDestroyedWithQueuedDefaultDeliveriesTokensAfter) {
  CallbackGate gate;
  auto m0 = fetchM0();
  ASSERT_TRUE(m0.ok()) << m0.status();
  auto initial = fetchAllButM0();
  ASSERT_TRUE(initial.ok()) << initial.status();
  auto blocker = ws_->subscribe(
      *m0, [&gate](const FetchedResult<Monster>&, const Changeset&) { gate.pass(); });
  ASSERT_TRUE(blocker.ok()) << blocker.status();
  std::vector<SubscriptionToken> tokens;
  std::vector<std::shared_ptr<CancelProbe>> probes;
  for (int k = 0; k < 5; ++k) {
    auto probe = std::make_shared<CancelProbe>();
    auto token = ws_->subscribe(*initial, [probe](const FetchedResult<Monster>&, const Changeset&) {
      probe->enter();
      probe->leave();
    });
    ASSERT_TRUE(token.ok()) << token.status();
    tokens.push_back(std::move(*token));
    probes.push_back(probe);
  }
  // Registered before the commits: a subscription registered after a commit catches
  // up with a delivery of its own, which could run before the blocker's.
  ws_->awaitObservers();
  gate.arm();
  ASSERT_OK(setHp(*ws_, "m0", 500));
  ASSERT_TRUE(gate.awaitEntered());
  for (int i = 1; i <= 10; ++i) ASSERT_OK(setHp(*ws_, monsterName(i), 500 + i));
  ws_->awaitObservers();  // every delivery is now queued behind the blocked one

  absl::Notification destroyed;
  std::thread destroyer([&] {
    ws_.reset();
    destroyed.Notify();
  });
  gate.open();
  bool done = destroyed.WaitForNotificationWithTimeout(kBoundedWait);
  EXPECT_TRUE(done) << "the workspace destructor did not return";
  destroyer.join();
  EXPECT_FALSE(gate.timedOut());

  std::vector<int> calls;
  for (auto& p : probes) calls.push_back(p->calls.load());
  for (size_t k = 0; k < tokens.size(); ++k) {
    tokens[k].cancel();  // safe after the workspace is gone
    probes[k]->cancelled.store(true);
    EXPECT_FALSE(tokens[k].active());
  }
  blocker->cancel();
  tokens.clear();
  for (size_t k = 0; k < probes.size(); ++k) {
    // No executor is left to run anything; the counts are final.
    EXPECT_EQ(probes[k]->calls.load(), calls[k]);
    EXPECT_EQ(probes[k]->violations.load(), 0);
  }
}

// The same, but the tokens are destroyed while their deliveries are queued, before the
// workspace: those deliveries must not run.
TEST_F(ObserveRaceTest, WorkspaceDestroyedWithQueuedDefaultDeliveriesTokensBefore) {
  CallbackGate gate;
  auto m0 = fetchM0();
  ASSERT_TRUE(m0.ok()) << m0.status();
  auto initial = fetchAllButM0();
  ASSERT_TRUE(initial.ok()) << initial.status();
  auto blocker = ws_->subscribe(
      *m0, [&gate](const FetchedResult<Monster>&, const Changeset&) { gate.pass(); });
  ASSERT_TRUE(blocker.ok()) << blocker.status();
  std::vector<SubscriptionToken> tokens;
  std::vector<std::shared_ptr<CancelProbe>> probes;
  for (int k = 0; k < 5; ++k) {
    auto probe = std::make_shared<CancelProbe>();
    auto token = ws_->subscribe(*initial, [probe](const FetchedResult<Monster>&, const Changeset&) {
      probe->enter();
      probe->leave();
    });
    ASSERT_TRUE(token.ok()) << token.status();
    tokens.push_back(std::move(*token));
    probes.push_back(probe);
  }
  // Registered before the commits: a subscription registered after a commit catches
  // up with a delivery of its own, which could run before the blocker's.
  ws_->awaitObservers();
  gate.arm();
  ASSERT_OK(setHp(*ws_, "m0", 500));
  ASSERT_TRUE(gate.awaitEntered());
  for (int i = 1; i <= 10; ++i) ASSERT_OK(setHp(*ws_, monsterName(i), 500 + i));
  ws_->awaitObservers();
  // Their deliveries wait behind the blocked callback; none has run.
  for (size_t k = 0; k < tokens.size(); ++k) {
    EXPECT_EQ(probes[k]->calls.load(), 0);
    tokens[k] = SubscriptionToken();  // move-assignment cancels the old subscription
    probes[k]->cancelled.store(true);
  }
  gate.open();
  ws_.reset();  // runs or drops what is queued, then stops the notification thread
  EXPECT_FALSE(gate.timedOut());
  blocker->cancel();
  for (size_t k = 0; k < probes.size(); ++k) {
    EXPECT_EQ(probes[k]->calls.load(), 0) << "subscription " << k;
    EXPECT_EQ(probes[k]->violations.load(), 0) << "subscription " << k;
  }
}

// A custom executor holds the deliveries (paused) while the workspace is destroyed. The
// tokens outlive the workspace: what runs afterwards must be consistent and safe, and
// nothing runs after the tokens are destroyed.
TEST_F(ObserveRaceTest, WorkspaceDestroyedWithDeliveriesQueuedOnACustomExecutor) {
  auto initial = fetchAll();
  ASSERT_TRUE(initial.ok()) << initial.status();
  std::vector<SubscriptionToken> kept;   // destroyed after the workspace
  std::vector<SubscriptionToken> early;  // destroyed before the workspace
  std::vector<std::shared_ptr<ChainRecorder>> kept_recorders;
  std::vector<std::shared_ptr<CancelProbe>> early_probes;
  for (int k = 0; k < 4; ++k) {
    auto recorder = std::make_shared<ChainRecorder>(initial->objects());
    auto token = ws_->subscribe(
        *initial,
        [recorder](const FetchedResult<Monster>& r, const Changeset& cs) {
          recorder->onDelivery(r, cs);
        },
        &pool_);
    ASSERT_TRUE(token.ok()) << token.status();
    kept.push_back(std::move(*token));
    kept_recorders.push_back(recorder);

    auto probe = std::make_shared<CancelProbe>();
    auto other = ws_->subscribe(
        *initial,
        [probe](const FetchedResult<Monster>&, const Changeset&) {
          probe->enter();
          probe->leave();
        },
        &pool_);
    ASSERT_TRUE(other.ok()) << other.status();
    early.push_back(std::move(*other));
    early_probes.push_back(probe);
  }
  pool_.pause();
  for (int i = 0; i < 10; ++i) ASSERT_OK(setHp(*ws_, monsterName(i), 600 + i));
  ws_->awaitObservers();
  EXPECT_GE(pool_.queued(), 8) << "the deliveries should be waiting in the paused pool";
  for (size_t k = 0; k < early.size(); ++k) {
    early[k].cancel();
    early_probes[k]->cancelled.store(true);
  }
  ws_.reset();
  pool_.resume();
  ASSERT_TRUE(pool_.drain());
  for (size_t k = 0; k < kept_recorders.size(); ++k) {
    absl::MutexLock lock(&kept_recorders[k]->mu);
    for (const std::string& e : kept_recorders[k]->errors) ADD_FAILURE() << e;
  }
  for (size_t k = 0; k < early_probes.size(); ++k) {
    EXPECT_EQ(early_probes[k]->calls.load(), 0) << "subscription " << k;
  }
  int after_workspace = 0;  // deliveries that ran after the workspace was destroyed
  for (auto& r : kept_recorders) {
    absl::MutexLock lock(&r->mu);
    after_workspace += r->deliveries;
  }
  RecordProperty("deliveries_after_workspace", after_workspace);
  for (SubscriptionToken& t : kept) {
    t.cancel();  // safe after the workspace is gone
    EXPECT_FALSE(t.active());
  }
  kept.clear();
}

// ---------------------------------------------------------------------------------------
// Subscribe/cancel churn on several threads while several threads write.

TEST_F(ObserveRaceTest, SubscribeCancelChurnUnderWriteLoad) {
  constexpr int kChurners = 3;
  constexpr int kCycles = 40;
  // Long-lived subscriptions, one per executor, checked against a fresh fetch at the end.
  std::vector<std::shared_ptr<ChainRecorder>> recorders;
  std::vector<SubscriptionToken> long_lived;
  for (Exec e : {Exec::kInline, Exec::kDefault, Exec::kPool}) {
    auto initial = fetchAll();
    ASSERT_TRUE(initial.ok()) << initial.status();
    auto recorder = std::make_shared<ChainRecorder>(initial->objects());
    auto token = ws_->subscribe(
        *initial,
        [recorder](const FetchedResult<Monster>& r, const Changeset& cs) {
          recorder->onDelivery(r, cs);
        },
        executor(e));
    ASSERT_TRUE(token.ok()) << token.status();
    long_lived.push_back(std::move(*token));
    recorders.push_back(recorder);
  }

  absl::Mutex mu;
  std::vector<std::shared_ptr<CancelProbe>> probes;  // guarded by mu
  std::vector<std::string> errors;                   // guarded by mu
  {
    WriteLoad load(*ws_, 3, 100);
    std::vector<std::thread> churners;
    for (int c = 0; c < kChurners; ++c) {
      churners.emplace_back([&, c] {
        for (int i = 0; i < kCycles; ++i) {
          auto q = ws_->fetch<Monster>();
          switch ((i + c) % 4) {
            case 1:
              q.where(F::hp > 150);
              break;
            case 2:
              q.orderBy(F::hp.descending()).limit(3);
              break;
            case 3:
              q.orderBy(F::name.ascending()).offset(3);
              break;
          }
          auto initial = q.all();
          auto probe = std::make_shared<CancelProbe>();
          absl::StatusOr<SubscriptionToken> token = absl::UnknownError("not subscribed");
          if (initial.ok()) {
            token = ws_->subscribe(
                *initial,
                [probe](const FetchedResult<Monster>&, const Changeset&) {
                  probe->enter();
                  probe->leave();
                },
                executor(static_cast<Exec>((i + 2 * c) % 3)));
          }
          if (!initial.ok() || !token.ok()) {
            absl::MutexLock lock(&mu);
            errors.push_back(
                absl::StrCat(initial.status().ToString(), " / ", token.status().ToString()));
            return;
          }
          if (i % 5 == 0) ws_->awaitObservers();
          switch (i % 3) {
            case 0:
              token->cancel();
              break;
            case 1:
              *token = SubscriptionToken();  // move-assignment cancels
              break;
            default:
              token = absl::UnknownError("destroyed");  // the token's destructor cancels
          }
          probe->cancelled.store(true, std::memory_order_release);
          absl::MutexLock lock(&mu);
          probes.push_back(probe);
        }
      });
    }
    for (std::thread& t : churners) t.join();
    load.join();
    EXPECT_OK(load.firstError());
    EXPECT_GT(load.committed(), 0);
  }
  ASSERT_NO_FATAL_FAILURE(settle());
  absl::MutexLock lock(&mu);
  for (const std::string& e : errors) ADD_FAILURE() << e;
  EXPECT_EQ(probes.size(), static_cast<size_t>(kChurners * kCycles));
  for (size_t i = 0; i < probes.size(); ++i) {
    EXPECT_EQ(probes[i]->violations.load(), 0) << "churned subscription " << i;
  }
  auto fresh = fetchAll();
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  for (size_t k = 0; k < recorders.size(); ++k) {
    absl::MutexLock rlock(&recorders[k]->mu);
    for (const std::string& e : recorders[k]->errors)
      ADD_FAILURE() << "long-lived " << k << ": " << e;
    EXPECT_GT(recorders[k]->deliveries, 0) << "long-lived " << k;
    EXPECT_TRUE(sameRows(recorders[k]->last, fresh->objects()))
        << "long-lived " << k << ": " << describeRows(recorders[k]->last) << " vs fresh "
        << describeRows(fresh->objects());
  }
}

// ---------------------------------------------------------------------------------------
// A slow callback.

class SlowCallbackTest : public ObserveRaceTest, public ::testing::WithParamInterface<Exec> {};

// Commits `n` transactions without waiting for each; true once all completed within the
// bounded wait.
bool commitWithoutBlocking(Workspace& ws, int n, int base_hp) {
  struct Done {
    absl::Mutex mu;
    int completed ABSL_GUARDED_BY(mu) = 0;
    int failed ABSL_GUARDED_BY(mu) = 0;
  };
  auto done = std::make_shared<Done>();
  for (int i = 0; i < n; ++i) {
    std::string name = monsterName(i % kMonsters);
    int hp = base_hp + i;
    TransactionHandle h = ws.performChanges<Monster>([name, hp](TransactionContext& txn) {
      auto r = MonsterChangeRequest::upsert();
      r.setName(name).setRealm(0).setHp(static_cast<int16_t>(hp));
      return txn.submit(r).status();
    });
    h.onComplete([done](const absl::StatusOr<TransactionResult>& r) {
      absl::MutexLock lock(&done->mu);
      done->completed += 1;
      if (!r.ok()) done->failed += 1;
    });
  }
  absl::MutexLock lock(&done->mu);
  auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(done->mu) { return done->completed == n; };
  return done->mu.AwaitWithTimeout(absl::Condition(&all), kBoundedWait) && done->failed == 0;
}

// While the callback is blocked, N transactions complete; once it is released it gets
// at most a couple more deliveries (its pending results coalesced), the last of which is
// the latest state, and the changesets chain across all of them.
TEST_P(SlowCallbackTest, DoesNotBlockCommitsAndCoalesces) {
  constexpr int kCommits = 40;
  CallbackGate gate;
  auto initial = fetchAll();
  ASSERT_TRUE(initial.ok()) << initial.status();
  auto recorder = std::make_shared<ChainRecorder>(initial->objects());
  auto token = ws_->subscribe(
      *initial,
      [recorder, &gate](const FetchedResult<Monster>& r, const Changeset& cs) {
        recorder->onDelivery(r, cs);
        gate.pass();
      },
      executor(GetParam()));
  ASSERT_TRUE(token.ok()) << token.status();

  gate.arm();
  ASSERT_OK(setHp(*ws_, "m0", 400));
  ASSERT_TRUE(gate.awaitEntered()) << "no delivery reached the callback";
  bool committed = commitWithoutBlocking(*ws_, kCommits, 0);
  int blocked_deliveries = 0;
  {
    absl::MutexLock lock(&recorder->mu);
    blocked_deliveries = recorder->deliveries;
  }
  if (GetParam() != Exec::kInline) {
    // The hub is not held by a callback on another executor: it keeps up too.
    absl::Notification observed;
    std::thread waiter([&] {
      ws_->awaitObservers();
      observed.Notify();
    });
    bool caught_up = observed.WaitForNotificationWithTimeout(kBoundedWait);
    gate.open();
    waiter.join();
    EXPECT_TRUE(caught_up) << "awaitObservers() waited for a blocked callback";
  } else {
    gate.open();
  }
  EXPECT_TRUE(committed) << kCommits << " commits did not complete while the callback was blocked";
  EXPECT_FALSE(gate.timedOut());
  ASSERT_NO_FATAL_FAILURE(settle());

  auto fresh = fetchAll();
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  absl::MutexLock lock(&recorder->mu);
  for (const std::string& e : recorder->errors) ADD_FAILURE() << e;
  EXPECT_EQ(blocked_deliveries, 1);
  if (GetParam() != Exec::kInline) {
    // The inline executor delivers each commit as the hub applies it: nothing to coalesce.
    EXPECT_GE(recorder->deliveries - blocked_deliveries, 1);
    EXPECT_LE(recorder->deliveries - blocked_deliveries, 2) << "pending results did not coalesce";
  }
  EXPECT_TRUE(sameRows(recorder->last, fresh->objects()))
      << describeRows(recorder->last) << " vs fresh " << describeRows(fresh->objects());
}

INSTANTIATE_TEST_SUITE_P(Executors, SlowCallbackTest,
                         ::testing::Values(Exec::kInline, Exec::kDefault, Exec::kPool),
                         execParamName);

}  // namespace
}  // namespace flatstore::test::game
