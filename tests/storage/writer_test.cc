// The writer's mailbox: which queued requests one group commit takes.
#include "runtime/writer.h"

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "runtime/catalog.h"
#include "tests/storage/test_util.h"

namespace flatstore::internal {
namespace {

using ::flatstore::testing::TempDir;

class WriterGroupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Connection::open(dir_.file("writer.db"), /*read_only=*/false);
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(initializeDatabase(**c, /*synchronous_full=*/false).ok());
    writer_ = std::make_unique<Writer>(std::move(*c), WriterOptions{}, nullptr, nullptr);
  }

  // Queues a request named `name` that changes nothing; its completion records the
  // sequence of the group that committed it.
  void queue(const std::string& name, int priority) {
    auto r = std::make_unique<CommitRequest>();
    r->priority = priority;
    r->apply = [](Connection&) { return absl::OkStatus(); };
    r->complete = [this, name](absl::StatusOr<TransactionResult> result) {
      absl::MutexLock lock(&mu_);
      EXPECT_TRUE(result.ok()) << name << ": " << result.status();
      // Completions run right after their group's commit, before the next group.
      group_of_[name] = writer_->lastCommitSequence();
    };
    writer_->submit(std::move(r));
  }

  // Holds the writer inside a group until `release_` is notified, so that what is
  // queued meanwhile waits in the mailbox together.
  void blockWriter() {
    auto r = std::make_unique<CommitRequest>();
    r->apply = [this](Connection&) {
      entered_.Notify();
      release_.WaitForNotification();
      return absl::OkStatus();
    };
    r->complete = [](absl::StatusOr<TransactionResult>) {};
    writer_->submit(std::move(r));
    entered_.WaitForNotification();
  }

  std::map<std::string, uint64_t> groups() {
    writer_->stop();  // commits everything queued first
    absl::MutexLock lock(&mu_);
    return group_of_;
  }

  TempDir dir_;
  std::unique_ptr<Writer> writer_;
  absl::Notification entered_;
  absl::Notification release_;
  absl::Mutex mu_;
  std::map<std::string, uint64_t> group_of_ ABSL_GUARDED_BY(mu_);
};

// Requests waiting together commit in one group; a group that starts with
// user-initiated requests leaves background ones for the next group.
TEST_F(WriterGroupsTest, UserInitiatedRequestsCommitWithoutBackgroundOnes) {
  blockWriter();
  queue("background", 2);
  queue("default", 1);
  queue("user-1", 0);
  queue("user-2", 0);
  release_.Notify();
  std::map<std::string, uint64_t> g = groups();
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(g["user-1"], g["user-2"]);
  EXPECT_EQ(g["default"], g["user-1"]);
  EXPECT_GT(g["background"], g["user-1"]);
}

// Without user-initiated work, background requests share the group.
TEST_F(WriterGroupsTest, BackgroundRequestsJoinOtherGroups) {
  blockWriter();
  queue("background", 2);
  queue("default", 1);
  release_.Notify();
  std::map<std::string, uint64_t> g = groups();
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g["background"], g["default"]);
}

}  // namespace
}  // namespace flatstore::internal
