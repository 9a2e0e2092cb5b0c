// The writer's mailbox: which queued requests one group commit takes.
#include "runtime/writer.h"

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "runtime/catalog.h"
#include "tests/support/temp_dir.h"

namespace flatstore::internal {
namespace {

using ::flatstore::testing::TempDir;

// Completes a request by calling `done`; runs no closure.
class OnComplete : public CommitCallbacks {
 public:
  explicit OnComplete(std::function<void(absl::StatusOr<TransactionResult>)> done)
      : done_(std::move(done)) {}
  absl::Status runUnderLock(ReadView&, CommitRequest&, bool) override {
    return absl::InternalError("no closure");
  }
  void complete(CommitRequest&, absl::StatusOr<TransactionResult> result) override {
    done_(std::move(result));
  }

 private:
  std::function<void(absl::StatusOr<TransactionResult>)> done_;
};

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
  // With `how`, the request goes through submitOrCommit (kCommit) or commitIfIdle
  // (kIfIdle, which hands back a request it did not commit; it is then submitted).
  enum class How { kSubmit, kCommit, kIfIdle };
  void queue(const std::string& name, Priority priority, How how = How::kSubmit) {
    auto r = std::make_unique<CommitRequest>();
    r->priority = priority;
    r->apply = [](Connection&) { return absl::OkStatus(); };
    r->callbacks =
        std::make_shared<OnComplete>([this, name](absl::StatusOr<TransactionResult> result) {
          absl::MutexLock lock(&mu_);
          EXPECT_TRUE(result.ok()) << name << ": " << result.status();
          // Completions run right after their group's commit, before the next group.
          group_of_[name] = writer_->lastCommitSequence();
        });
    switch (how) {
      case How::kSubmit:
        writer_->submit(std::move(r));
        break;
      case How::kCommit:
        writer_->submitOrCommit(std::move(r));
        break;
      case How::kIfIdle:
        r = writer_->commitIfIdle(std::move(r));
        if (r != nullptr) writer_->submit(std::move(r));
        break;
    }
  }

  bool committed(const std::string& name) {
    absl::MutexLock lock(&mu_);
    return group_of_.contains(name);
  }

  // Waits until `name` committed.
  void awaitCommitted(const std::string& name) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return group_of_.contains(name); };
    mu_.Await(absl::Condition(&done));
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
    r->callbacks = std::make_shared<OnComplete>([](absl::StatusOr<TransactionResult>) {});
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
  queue("background", Priority::kBackground);
  queue("default", Priority::kDefault);
  queue("user-1", Priority::kUserInitiated);
  queue("user-2", Priority::kUserInitiated);
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
  queue("background", Priority::kBackground);
  queue("default", Priority::kDefault);
  release_.Notify();
  std::map<std::string, uint64_t> g = groups();
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g["background"], g["default"]);
}

// While background work is paused (as during a passive checkpoint), background
// requests stay queued however they were handed in, and other requests commit past
// them; they commit once the pause ends.
TEST_F(WriterGroupsTest, PausedBackgroundRequestsWaitWhileOthersCommit) {
  writer_->pauseBackground(true);
  queue("queued", Priority::kBackground);
  queue("led", Priority::kBackground, How::kCommit);
  queue("idle", Priority::kBackground, How::kIfIdle);
  queue("default", Priority::kDefault, How::kCommit);
  queue("user", Priority::kUserInitiated);
  awaitCommitted("default");
  awaitCommitted("user");
  EXPECT_FALSE(committed("queued"));
  EXPECT_FALSE(committed("led"));
  EXPECT_FALSE(committed("idle"));
  writer_->pauseBackground(false);
  awaitCommitted("queued");
  awaitCommitted("led");
  awaitCommitted("idle");
  std::map<std::string, uint64_t> g = groups();
  EXPECT_GT(g["queued"], g["default"]);
  EXPECT_GT(g["queued"], g["user"]);
}

// A writer that stops commits paused background requests rather than leave them.
TEST_F(WriterGroupsTest, StoppingCommitsPausedBackgroundRequests) {
  writer_->pauseBackground(true);
  queue("background", Priority::kBackground);
  std::map<std::string, uint64_t> g = groups();
  EXPECT_EQ(g.size(), 1u);
  EXPECT_GT(g["background"], 0u);
}

}  // namespace
}  // namespace flatstore::internal
