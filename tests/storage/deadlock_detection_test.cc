// WorkspaceOptions::disable_mutex_deadlock_detection: Abseil builds without NDEBUG (as
// Debian's is) check the lock order of every Mutex acquire; open() switches that off
// unless asked to keep the application's mode.
#include <string>

#include "absl/synchronization/mutex.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace flatstore::test::game {
namespace {

using ::flatstore::testing::TempDir;

// Takes two fresh mutexes in one order, then in the other: a lock-order cycle that
// Abseil reports (in kReport mode) when it checks lock order. Returns what it wrote to
// stderr. The mutexes live as long as the process, so no later mutex reuses their
// addresses (the order graph would remember them).
std::string invertLockOrder() {
  static absl::Mutex mutexes[16];
  static int used = 0;
  EXPECT_LE(used + 2, 16) << "more inversions than mutexes set aside";
  absl::Mutex* a = &mutexes[used++ % 16];
  absl::Mutex* b = &mutexes[used++ % 16];
  ::testing::internal::CaptureStderr();
  {
    absl::MutexLock la(a);
    absl::MutexLock lb(b);
  }
  {
    absl::MutexLock lb(b);
    absl::MutexLock la(a);
  }
  return ::testing::internal::GetCapturedStderr();
}

bool reportsCycles(const std::string& log) {
  return log.find("Potential Mutex deadlock") != std::string::npos;
}

class DeadlockDetectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kReport);
    if (!reportsCycles(invertLockOrder())) {
      GTEST_SKIP() << "this Abseil was built with NDEBUG and never checks lock order";
    }
  }
  TempDir dir_;
};

TEST_F(DeadlockDetectionTest, OpenSwitchesTheCheckOff) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kReport);
  auto ws = Workspace::open(dir_.file("off.db"));
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_FALSE(reportsCycles(invertLockOrder()));
}

TEST_F(DeadlockDetectionTest, OpenKeepsTheApplicationsModeWhenAsked) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kReport);
  WorkspaceOptions options;
  options.disable_mutex_deadlock_detection = false;
  auto ws = Workspace::open(dir_.file("kept.db"), options);
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_TRUE(reportsCycles(invertLockOrder()));
  // The workspace works with the check on: a transaction that creates an object, and
  // a fetch of it, take flatstore's own mutexes without a report.
  ::testing::internal::CaptureStderr();
  auto done = (*ws)->performChangesAndWait<Monster>([](TransactionContext& txn) {
    auto r = MonsterChangeRequest::creation();
    r.setName("orc").setRealm(1).setHp(10);
    return txn.submit(r).status();
  });
  auto count = (*ws)->fetch<Monster>().count();
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->inserted, 1);
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 1);
  EXPECT_FALSE(reportsCycles(log)) << log;
}

}  // namespace
}  // namespace flatstore::test::game
