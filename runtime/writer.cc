#include "runtime/writer.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/dictionary.h"
#include "runtime/query_exec.h"

namespace flatstore::internal {

Writer::Writer(std::unique_ptr<Connection> connection, WriterOptions options,
               std::function<void(CommitEvent)> publish, MetricsRegistry* metrics)
    : options_(options),
      publish_(std::move(publish)),
      metrics_(metrics),
      path_(connection->path()),
      db_(std::move(connection)) {
  {
    absl::MutexLock role(&role_);
    checkpointer_ = std::make_unique<Checkpointer>(*db_, options.checkpoint, metrics);
  }
  thread_ = std::thread([this] { loop(); });
}

Writer::~Writer() { stop().IgnoreError(); }

void Writer::submit(std::unique_ptr<CommitRequest> request) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_[queueOf(request->priority)].push_back(std::move(request));
      return;
    }
  }
  request->callbacks->complete(*request,
                               absl::FailedPreconditionError("the workspace is shut down"));
}

namespace {
// The writer whose role this thread holds, or kCommitting (CommittingScope).
thread_local const void* current_writer = nullptr;
const char kCommitting = 0;
}  // namespace

bool onWriterThread() { return current_writer != nullptr; }

namespace {

// Marks the current thread as holding the writer role for a scope.
class WriterScope {
 public:
  explicit WriterScope(const Writer* w) : previous_(current_writer) { current_writer = w; }
  ~WriterScope() { current_writer = previous_; }
  WriterScope(const WriterScope&) = delete;
  WriterScope& operator=(const WriterScope&) = delete;

 private:
  const void* previous_;
};

}  // namespace

CommittingScope::CommittingScope() : previous_(current_writer) { current_writer = &kCommitting; }
CommittingScope::~CommittingScope() { current_writer = previous_; }

std::unique_ptr<CommitRequest> Writer::tryLead(std::unique_ptr<CommitRequest> request, Lead how) {
  // Under the role already (a completion callback), or a group is being committed.
  if (current_writer != nullptr || !role_.TryLock()) return request;
  std::vector<std::unique_ptr<CommitRequest>> group;
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      if (how == Lead::kAlone) {
        bool paused = background_paused_ && request->priority == Priority::kBackground;
        if (!queued() && !paused) group.push_back(std::move(request));
      } else {
        // Into the mailbox and out again with whatever waits there, without releasing
        // mu_: the writer thread never sees it queued. A background request may stay
        // queued while background work is paused.
        if (request != nullptr) queue_[queueOf(request->priority)].push_back(std::move(request));
        takeGroup(&group);
      }
      if (!group.empty()) leaders_ += 1;
    }
  }
  if (group.empty()) {
    role_.Unlock();
    return request;
  }
  {
    WriterScope scope(this);
    commitAndNote(group);
    // The WAL policy holds for this commit too: a caller that leads group after group
    // (performChangesAndWait in a loop) would otherwise keep the role from the writer
    // thread, and the WAL would grow past its limit meanwhile.
    restartIfDue();
  }
  role_.Unlock();
  absl::MutexLock lock(&mu_);
  leaders_ -= 1;
  return nullptr;
}

void Writer::restartIfDue() {
  // Without mu_: after most commits nothing is due. A stop is set under the role too.
  if (!role_checkpoint_due_ || has_stopped_.load(std::memory_order_acquire)) return;
  // Passive rounds run without the role, on the writer thread: leave them to it.
  bool passive = checkpointer_->runDue(*db_) && checkpointKeptFile();
  absl::MutexLock lock(&mu_);
  checkpoint_due_ = passive;
  role_checkpoint_due_ = passive;
}

absl::Status Writer::stoppedError() const {
  if (!has_stopped_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  return stopped_;
}

absl::Status Writer::stopCommitting(const absl::Status& cause, std::string_view why) {
  absl::MutexLock lock(&mu_);
  if (stopped_.ok()) {
    stopped_ = absl::FailedPreconditionError(
        absl::StrCat(path_, ": ", cause.message(), "; ", av(why),
                     ", so this workspace commits nothing more: reopen it (reads go on "
                     "meanwhile)"));
    has_stopped_.store(true, std::memory_order_release);
    // Back-fills write too: they end here, their indexes incomplete (queries read past
    // them), and awaitBackfills() returns.
    backfills_.clear();
    if (metrics_ != nullptr) metrics_->recordStopped(stopped_);
  }
  return stopped_;
}

void Writer::rollbackOrStop() {
  absl::Status rolled_back = db_->rollback("writer");
  // A write transaction left open would make every later BEGIN IMMEDIATE fail, and
  // what it holds is unknown: no later commit can be trusted.
  if (!rolled_back.ok()) {
    stopCommitting(rolled_back, "a write transaction stayed open").IgnoreError();  // see above
  }
}

bool Writer::checkpointKeptFile() {
  absl::Status in_doubt = checkpointer_->writesInDoubtError();
  if (in_doubt.ok()) return true;
  stopCommitting(in_doubt).IgnoreError();  // commits and shutdown() report it
  return false;
}

void Writer::submitOrCommit(std::unique_ptr<CommitRequest> request) {
  // Not led (the role is busy, or the writer is stopping): the mailbox, which refuses it
  // after stop().
  request = tryLead(std::move(request), Lead::kWithQueue);
  if (request != nullptr) submit(std::move(request));
}

void Writer::commitQueued() { tryLead(nullptr, Lead::kWithQueue); }

std::unique_ptr<CommitRequest> Writer::commitIfIdle(std::unique_ptr<CommitRequest> request) {
  return tryLead(std::move(request), Lead::kAlone);
}

void Writer::takeGroup(std::vector<std::unique_ptr<CommitRequest>>* group) {
  int64_t bytes = 0;
  for (int priority = 0; priority < kPriorityLevels; ++priority) {
    // User-initiated transactions commit without background work (a bulk chunk would
    // make their commit as slow as its own); the background goes in the next group.
    if (priority == queueOf(Priority::kBackground) && !group->empty() &&
        group->front()->priority == Priority::kUserInitiated) {
      break;
    }
    if (priority == queueOf(Priority::kBackground) && background_paused_ && !stopping_) break;
    auto& queue = queue_[priority];
    while (!queue.empty() && static_cast<int>(group->size()) < options_.max_group_transactions &&
           (group->empty() || bytes + queue.front()->bytes <= options_.max_group_bytes)) {
      bytes += queue.front()->bytes;
      group->push_back(std::move(queue.front()));
      queue.pop_front();
    }
  }
}

absl::Status Writer::runSync(std::function<absl::Status(Connection&)> fn, bool may_join) {
  if (current_writer == this) {
    role_.AssertHeld();
    if (!db_->autocommit() && may_join) {
      FLATSTORE_RETURN_IF_ERROR(db_->exec("SAVEPOINT joined", "closure"));
      absl::Status s = fn(*db_);
      if (!s.ok()) FLATSTORE_RETURN_IF_ERROR(db_->exec("ROLLBACK TO joined", "closure"));
      FLATSTORE_RETURN_IF_ERROR(db_->exec("RELEASE joined", "closure"));
      return s;
    }
    if (!db_->autocommit()) {
      return absl::FailedPreconditionError(
          "a closure running under the write lock cannot create tables or indexes; use "
          "the tables before, or from outside the closure");
    }
    FLATSTORE_RETURN_IF_ERROR(stoppedError());
    FLATSTORE_RETURN_IF_ERROR(db_->exec("BEGIN IMMEDIATE", "catalog"));
    absl::Status s = fn(*db_);
    if (s.ok()) {
      s = db_->exec("COMMIT", "catalog");
      if (!s.ok() && writesInDoubt(db_->db())) s = stopCommitting(s);
    }
    if (!s.ok()) rollbackOrStop();
    return s;
  }
  // Completes into a status the caller waits for.
  class Sync : public CommitCallbacks {
   public:
    absl::Status runUnderLock(ReadView&, CommitRequest&, bool) override {
      return absl::InternalError("a writer job has no closure to run");
    }
    void complete(CommitRequest&, absl::StatusOr<TransactionResult> r) override {
      absl::MutexLock lock(&mu_);
      status_ = r.status();
      done_ = true;
    }
    absl::Status wait() {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&done_));
      return status_;
    }

   private:
    absl::Mutex mu_;
    bool done_ ABSL_GUARDED_BY(mu_) = false;
    absl::Status status_ ABSL_GUARDED_BY(mu_);
  };
  auto sync = std::make_shared<Sync>();
  auto request = std::make_unique<CommitRequest>();
  request->apply = std::move(fn);
  request->callbacks = sync;
  submit(std::move(request));
  return sync->wait();
}

absl::Status Writer::putEntry(std::string_view key, Dictionary::Kind kind, std::string_view type,
                              std::span<const uint8_t> value) {
  std::string k(key);
  std::string t(type);
  std::vector<uint8_t> v(value.begin(), value.end());
  return runSync([k, kind, t, v](Connection& c) { return writeEntry(c, k, kind, t, v); },
                 /*may_join=*/true);
}

absl::Status Writer::eraseEntry(std::string_view key) {
  std::string k(key);
  return runSync([k](Connection& c) { return internal::eraseEntry(c, k); }, /*may_join=*/true);
}

void Writer::addBackfill(TableState* table) {
  absl::MutexLock lock(&mu_);
  if (!stopped_.ok()) return;  // nothing is written any more (see stopCommitting)
  backfills_.push_back(table);
}

void Writer::awaitBackfills() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return backfills_.empty() || stopping_; };
  mu_.Await(absl::Condition(&idle));
}

uint64_t Writer::lastCommitSequence() const {
  return last_sequence_.load(std::memory_order_acquire);
}

absl::Status Writer::stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // A thread that took the role before stopping_ was set finishes its group.
  absl::MutexLock lock(&mu_);
  auto no_leaders = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return leaders_ == 0; };
  mu_.Await(absl::Condition(&no_leaders));
  // A stopped writer ran no last checkpoint; its error is what shutdown() reports.
  return stopped_.ok() ? final_checkpoint_ : stopped_;
}

void Writer::pauseBackground(bool paused) {
  absl::MutexLock lock(&mu_);
  background_paused_ = paused;
}

bool Writer::busy() const {
  if (committing_.load(std::memory_order_relaxed)) return true;
  absl::MutexLock lock(&mu_);
  return queued();
}

void Writer::commitAndNote(std::vector<std::unique_ptr<CommitRequest>>& group) {
  committing_.store(true, std::memory_order_relaxed);
  commitGroup(group);
  committing_.store(false, std::memory_order_relaxed);
  if (checkpointer_->noteCommit()) {
    absl::MutexLock lock(&mu_);
    checkpoint_due_ = true;
    role_checkpoint_due_ = true;
  }
}

void Writer::loop() {
  current_writer = this;
  while (true) {
    std::vector<std::unique_ptr<CommitRequest>> group;
    bool exiting = false;
    bool checkpoint_due = false;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return queued() || stopping_ || !backfills_.empty() || checkpoint_due_;
      };
      mu_.Await(absl::Condition(&ready));
    }
    bool passive = false;
    {
      // Another thread may hold the role; what it leaves queued is the next group.
      absl::MutexLock role(&role_);
      {
        absl::MutexLock lock(&mu_);
        exiting = !queued() && stopping_;
        checkpoint_due = std::exchange(checkpoint_due_, false);
        role_checkpoint_due_ = false;
        takeGroup(&group);
      }
      // After a failed sync nothing more is written: no back-fill, no checkpoint (which
      // would copy pages in doubt into the database). Commits fail with the error.
      const bool stopped = has_stopped_.load(std::memory_order_acquire);
      if (exiting) {
        // A clean shutdown leaves an empty WAL behind; shutdown() reports why not.
        absl::Status truncated = stopped ? absl::OkStatus() : checkpointer_->truncate(*db_);
        checkpointKeptFile();
        absl::MutexLock lock(&mu_);
        final_checkpoint_ = std::move(truncated);
        return;
      }
      if (!group.empty()) {
        commitAndNote(group);
      } else if (!checkpoint_due && !stopped) {
        // Idle: one bounded back-fill step, then look at the mailbox again.
        backfillOnce();
      }
      if (checkpoint_due && !stopped) passive = checkpointer_->runDue(*db_) && checkpointKeptFile();
    }
    if (passive) {
      // Background commits wait until the tail is copied. A bulk import appends frames
      // as fast as the rounds copy them back: the tail stayed long (commits waited
      // milliseconds for it), or the WAL outgrew its limit and the restarting checkpoint
      // stopped every commit for tens of milliseconds. User-initiated and default
      // commits go on, and their few frames make a short tail.
      pauseBackground(true);
      absl::Cleanup resume = [this] { pauseBackground(false); };
      std::optional<Checkpointer::Rounds> rounds = checkpointer_->passiveRounds();
      if (rounds.has_value() && checkpointKeptFile()) {
        absl::MutexLock role(&role_);
        checkpointer_->copyTail(*db_, *rounds);
        checkpointKeptFile();
      }
    }
  }
}

bool Writer::backfillOnce() {
  TableState* table = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (backfills_.empty()) return false;
    table = backfills_.front();
  }
  bool more = false;
  absl::Status s = db_->exec("BEGIN IMMEDIATE", "index back-fill");
  if (s.ok()) {
    absl::StatusOr<bool> step = backfillStep(*db_, *table, options_.backfill_batch);
    if (step.ok()) {
      more = *step;
      s = db_->exec("COMMIT", "index back-fill");
      if (!s.ok() && writesInDoubt(db_->db())) s = stopCommitting(s);
    } else {
      s = step.status();
    }
  }
  if (!s.ok()) rollbackOrStop();
  // A failed back-fill (for example duplicates under a new unique index) leaves the
  // index incomplete; queries keep reading past it.
  if (!s.ok() || !more) {
    absl::MutexLock lock(&mu_);
    // Empty when the failure stopped the writer (stopCommitting ended every back-fill).
    if (!backfills_.empty()) backfills_.erase(backfills_.begin());
  }
  return more;
}

}  // namespace flatstore::internal
