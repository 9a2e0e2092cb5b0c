// Killing a writing process at random moments (design section 11): after every SIGKILL
// the file passes PRAGMA integrity_check, reopens, holds every acknowledged transaction
// in full and no transaction in part.
//
// The writer is mp_helper in "crash" mode. Transaction `seq` inserts Monsters ("s<seq>",
// 0) and ("s<seq>", 1) and Docs "s<seq>-0" and "s<seq>-1" (score seq), and updates the
// Doc "tally" (rank + 1, size = seq); after each successful handle the helper appends seq
// to an acknowledgement file and fsyncs it. Child i numbers its transactions from
// (i + 1) * kSpan on, until it is killed.
//
// The delay before each kill is drawn from a seeded RNG (FLATSTORE_CRASH_SEED overrides
// the seed; the seed is printed). Waiting it out is the point of the test, not a fix for
// a race: it puts the kill at a random point of the commit loop. Most kills come 0-20 ms
// after the helper said "ready" (it has opened the file), some at a random point of its
// start-up (exec, open, recovery, table registration).
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gtest/gtest.h"
#include "tests/multiprocess/process_util.h"

namespace flatstore {
namespace {

using ::flatstore::bench::Doc;
using ::flatstore::bench::DocFields;
using ::flatstore::test::game::Monster;
using ::flatstore::testing::Child;
using ::flatstore::testing::integrityCheck;
using ::flatstore::testing::readLines;
using ::flatstore::testing::TempDir;

constexpr int64_t kSpan = 100000;

uint32_t seed() {
  const char* env = std::getenv("FLATSTORE_CRASH_SEED");
  uint32_t s = 20240611;
  if (env != nullptr && !absl::SimpleAtoi(env, &s)) ADD_FAILURE() << "bad FLATSTORE_CRASH_SEED";
  return s;
}

struct CrashStats {
  int startup_kills = 0;     // killed before it said "ready"
  int unacknowledged = 0;    // a commit landed but its acknowledgement did not
  int64_t transactions = 0;  // committed in all
};

// Runs one helper until `delay` after it said "ready" (or, with `during_startup`, after
// it started), kills it and checks the file. Adds what it saw to `stats`.
void killOnceAndCheck(const std::string& path, const std::string& sync, Synchronous mode,
                      int iteration, bool during_startup, absl::Duration delay, const TempDir& dir,
                      CrashStats* stats) {
  SCOPED_TRACE(absl::StrCat("kill ", iteration, (during_startup ? " during start-up" : ""),
                            " after ", absl::FormatDuration(delay)));
  int64_t base = (iteration + 1) * kSpan;
  std::string ack = dir.file(absl::StrCat("ack-", iteration, ".txt"));
  auto child = Child::spawn({FLATSTORE_MP_HELPER, "crash", path, std::to_string(base), sync, ack});
  ASSERT_OK(child);
  if (!during_startup) {
    auto ready = (*child)->readLine();
    ASSERT_OK(ready);
    ASSERT_EQ(*ready, "ready");
  }
  absl::SleepFor(delay);
  (*child)->kill(SIGKILL);
  auto status = (*child)->waitExit();
  ASSERT_OK(status);
  // Anything but our SIGKILL means the helper failed on its own (its stderr says why).
  ASSERT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)
      << "the helper " << Child::describeExit(*status);

  ASSERT_EQ(integrityCheck(path), "ok");
  auto ws = Workspace::open(path, {.synchronous = mode});
  ASSERT_OK(ws);

  // The acknowledgements: base, base + 1, ... in order.
  std::vector<std::string> lines = readLines(ack);
  for (size_t i = 0; i < lines.size(); ++i) {
    ASSERT_EQ(lines[i], std::to_string(base + static_cast<int64_t>(i))) << ack;
  }
  int64_t acknowledged = static_cast<int64_t>(lines.size());
  if (acknowledged == 0) stats->startup_kills += during_startup ? 1 : 0;

  // The transactions of this child that committed, by their Docs.
  auto docs = (*ws)
                  ->fetch<Doc>()
                  .where(DocFields::score >= static_cast<int32_t>(base) &&
                         DocFields::score < static_cast<int32_t>(base + kSpan))
                  .all();
  ASSERT_OK(docs);
  std::map<int64_t, std::set<std::string>> by_seq;
  for (const auto& d : *docs) by_seq[d->score()].insert(std::string(d->id()));
  int64_t committed = static_cast<int64_t>(by_seq.size());
  // One transaction at a time: they commit in order, so the committed ones are
  // base .. base + committed - 1, and at most the last one lacks its acknowledgement.
  if (committed > 0) {
    ASSERT_EQ(by_seq.begin()->first, base);
    ASSERT_EQ(by_seq.rbegin()->first, base + committed - 1) << "a gap in the committed sequence";
  }
  ASSERT_GE(committed, acknowledged) << "an acknowledged transaction is missing";
  ASSERT_LE(committed, acknowledged + 1);
  stats->unacknowledged += static_cast<int>(committed - acknowledged);
  // Each committed transaction in full; the next one not at all.
  for (int64_t seq = base; seq <= base + committed; ++seq) {
    bool expect = seq < base + committed;
    if (expect) {
      EXPECT_EQ(by_seq[seq],
                (std::set<std::string>{absl::StrCat("s", seq, "-0"), absl::StrCat("s", seq, "-1")}))
          << "transaction " << seq;
    }
    for (int realm = 0; realm < 2; ++realm) {
      auto m = (*ws)->get<Monster>(absl::StrCat("s", seq), realm);
      ASSERT_OK(m);
      EXPECT_EQ(*m != nullptr, expect) << "transaction " << seq << ", Monster realm " << realm;
    }
  }
  stats->transactions += committed;
  // Across all children: the tally counts every committed transaction exactly once, and
  // no object exists outside a whole transaction.
  auto tally = (*ws)->get<Doc>("tally");
  ASSERT_OK(tally);
  if (stats->transactions > 0) {
    ASSERT_NE(*tally, nullptr);
    EXPECT_EQ((*tally)->rank(), stats->transactions);
    if (committed > 0) {
      EXPECT_EQ((*tally)->size(), base + committed - 1);
    }
  }
  EXPECT_EQ(*(*ws)->fetch<Monster>().count(), 2 * stats->transactions);
  EXPECT_EQ(*(*ws)->fetch<Doc>().count(), 2 * stats->transactions + (*tally != nullptr ? 1 : 0));
  ASSERT_OK((*ws)->shutdown());
}

void runKills(const std::string& sync, Synchronous mode, int kills) {
  TempDir dir;
  std::string path = dir.file("crash.db");
  uint32_t s = seed();
  std::cout << "FLATSTORE_CRASH_SEED=" << s << "\n";
  std::mt19937 rng(s);
  std::uniform_int_distribution<int> after_ready_us(0, 20000);
  std::uniform_int_distribution<int> startup_us(0, 30000);
  CrashStats stats;
  for (int i = 0; i < kills; ++i) {
    // The first child creates the file; later ones are killed during start-up one time
    // in eight.
    bool during_startup = i > 0 && rng() % 8 == 0;
    absl::Duration delay =
        absl::Microseconds(during_startup ? startup_us(rng) : after_ready_us(rng));
    killOnceAndCheck(path, sync, mode, i, during_startup, delay, dir, &stats);
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::cout << kills << " kills: " << stats.transactions << " transactions committed, "
            << stats.unacknowledged << " killed between commit and acknowledgement, "
            << stats.startup_kills << " during start-up\n";
  // Not a run of start-ups only: the children committed (how much depends on the
  // machine's fsync speed, so it is logged above, not asserted).
  EXPECT_GT(stats.transactions, 0);
}

TEST(Crash, KillsLoseNoAcknowledgedTransactionWithSynchronousFull) {
  runKills("full", Synchronous::kFull, 200);
}

// SIGKILL is not a power loss: what a commit wrote is in the OS page cache, so NORMAL
// loses nothing acknowledged either.
TEST(Crash, KillsLoseNoAcknowledgedTransactionWithSynchronousNormal) {
  runKills("normal", Synchronous::kNormal, 60);
}

}  // namespace
}  // namespace flatstore
