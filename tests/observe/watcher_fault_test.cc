// The commit watcher (other processes' commits reaching subscriptions) when it cannot
// open its connection: its attempts are retried with back-off and counted in the
// metrics, the subscriptions it cannot keep exact end with its error, and once it
// connects again other processes' commits reach subscriptions as before.
//
// A second workspace on the same file stands for the other process: its commits reach
// the first one's subscriptions only through the first one's watcher. Faults are made
// with a VFS that fails the opens of the watcher's thread, "flatstore-watch".
#include <algorithm>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
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
using F = MonsterFields;

// The watcher's failed attempts after which subscriptions end (kFailuresToEndSubscriptions).
constexpr int64_t kFailuresToEnd = 3;

class WatcherFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(FaultVfs::install());
    FaultVfs::watchThread("flatstore-watch");
  }
  void TearDown() override {
    FaultVfs::failWatchedThread(false);
    FaultVfs::watchThread("");
  }

  TempDir dir_;
};

TEST_F(WatcherFaultTest, FailingWatcherEndsSubscriptionsAndRecovers) {
  const std::string path = dir_.file("watched.db");
  // The other process, with its watcher connected before faults start.
  auto other = Workspace::open(path);
  ASSERT_OK(other);
  ASSERT_TRUE(FaultVfs::awaitOpens(1, kBoundedWait));
  ASSERT_OK(createMonster(**other, "first"));

  FaultVfs::failWatchedThread(true);
  auto ws = Workspace::open(path, {.watch_interval = absl::Milliseconds(1)});
  ASSERT_OK(ws);
  auto all = (*ws)->fetch<Monster>().orderBy(F::name.ascending()).all();
  ASSERT_OK(all);
  auto token = (*ws)->subscribe(*all, [](const FetchedResult<Monster>&, const Changeset&) {});
  ASSERT_OK(token);
  // The subscription is queued to the observers now. Every failed attempt from the
  // kFailuresToEnd-th on ends the subscriptions queued before it; the attempt after the
  // next failed one began after that one's failure was handled.
  const int64_t now = FaultVfs::failedOpens();
  ASSERT_TRUE(FaultVfs::awaitFailedOpens(std::max(now + 2, kFailuresToEnd + 1), kBoundedWait))
      << "the watcher does not try to open its connection again";
  (*ws)->awaitObservers();
  EXPECT_FALSE(token->active());
  absl::Status ended = token->status();
  EXPECT_EQ(ended.code(), absl::StatusCode::kUnavailable) << ended;
  EXPECT_THAT(ended.message(), HasSubstr("other processes' commits to " + path));
  Metrics m = (*ws)->metrics();
  EXPECT_GE(m.watcher.errors, kFailuresToEnd);
  EXPECT_TRUE(m.watcher.failing);
  EXPECT_THAT(m.watcher.last_error, HasSubstr(path));
  EXPECT_THAT(m.toJson(), HasSubstr(R"("watcher":{"errors":)"));
  EXPECT_THAT(m.toText(), HasSubstr("watcher: errors="));

  // The watcher connects again; the attempt that failed last was handled before.
  const int64_t opens = 1;  // the other workspace's watcher's
  FaultVfs::failWatchedThread(false);
  ASSERT_TRUE(FaultVfs::awaitOpens(opens + 1, kBoundedWait));
  // A commit the other process made while the watcher could not look reaches a new
  // subscription (made on a result that predates it), and so does a later one.
  ASSERT_OK(createMonster(**other, "while-failing"));
  absl::Mutex mu;
  std::vector<std::string> names;  // the latest delivery's, guarded by mu
  auto fresh = (*ws)->subscribe(*all, [&](const FetchedResult<Monster>& latest, const Changeset&) {
    absl::MutexLock lock(&mu);
    names.clear();
    for (const auto& monster : latest) names.emplace_back(monster->name());
  });
  ASSERT_OK(fresh);
  ASSERT_OK(createMonster(**other, "after"));
  {
    absl::MutexLock lock(&mu);
    auto all_three = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return names.size() == 3; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_three), kBoundedWait))
        << "the other process's commits never reached the subscription";
    EXPECT_THAT(names, ::testing::ElementsAre("after", "first", "while-failing"));
  }
  EXPECT_TRUE(fresh->active()) << fresh->status();
  EXPECT_FALSE((*ws)->metrics().watcher.failing);
  fresh->cancel();
}

}  // namespace
}  // namespace flatstore::test::game
