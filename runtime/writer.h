// Writer: the only code that writes to SQLite.
//
// Closures hand their encoded changes to the writer's mailbox. Whoever holds the writer
// role takes every request waiting (bounded by count and bytes, higher priorities
// first), opens one BEGIN IMMEDIATE, applies each request inside its own savepoint (a
// failing request, such as a unique violation, rolls back alone), appends the group's
// change-log row (which carries the commit sequence), and commits once: one WAL append
// (and with synchronous=FULL one fsync) for the group. The write lock is held only for
// this apply. Then it completes each request.
//
// The role is one mutex around the write connection. A thread that finished a closure
// takes it when it is free and commits the group itself (no hand-off to another thread
// and back: a lone transaction costs what SQLite's commit costs); when a group is
// being committed, the request waits in the mailbox for the writer thread, which
// commits whatever gathered meanwhile as the next group. The writer thread also runs
// index back-fills, and checkpoints as the Checkpointer's WAL policy asks.
//
// writer.cc holds the role, the mailbox and its batching, the writer thread, runSync and
// the back-fills; group_apply.cc applies and commits a group (commitGroup and what it
// calls).
//
// Thread-safety: the public methods may be called from any thread (runSync and
// awaitBackfills block, see there); the private ones that touch the database run under
// the role. Requests' callbacks run under the role (onWriterThread() is true there).
#ifndef FLATSTORE_RUNTIME_WRITER_H_
#define FLATSTORE_RUNTIME_WRITER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/transaction.h"
#include "runtime/catalog.h"
#include "runtime/change_log.h"
#include "runtime/checkpointer.h"
#include "runtime/commit_event.h"
#include "runtime/commit_path.h"
#include "runtime/commit_request.h"
#include "runtime/metrics.h"
#include "runtime/priority.h"
#include "runtime/sqlite.h"

namespace flatstore::internal {

struct WriterOptions {
  int max_group_transactions = 4096;
  int64_t max_group_bytes = 64 << 20;
  int backfill_batch = 1000;
  // Identifies this workspace's commits in the change log.
  int64_t origin = 0;
  // Commits whose change-log entries are kept.
  int64_t log_retention = 10000;
  // The WAL policy; see WorkspaceOptions.
  CheckpointOptions checkpoint;
};

// True on a thread holding the writer role: the writer thread in its loop, a thread
// committing a group of its own, in closures run under the write lock and in the
// completion callbacks. Waiting for the writer there would deadlock.
bool onWriterThread();

// Makes onWriterThread() true on the calling thread for a scope: the PostgreSQL commit
// path (pg_workspace.h), which commits, runs closures under the locks and completes
// requests on the thread that ran the closure, where waiting for another transaction
// could deadlock as it could under SQLite's writer role.
class CommittingScope {
 public:
  CommittingScope();
  ~CommittingScope();
  CommittingScope(const CommittingScope&) = delete;
  CommittingScope& operator=(const CommittingScope&) = delete;

 private:
  const void* previous_;
};

// A request failed because another process changed a table it read.
absl::Status conflictError(const TableState& table);
bool isConflict(const absl::Status& status);

class Writer : public CommitPath {
 public:
  // `publish` receives each committed group's changes to observed tables, on the writer
  // thread, before the group's handles complete.
  Writer(std::unique_ptr<Connection> connection, WriterOptions options,
         std::function<void(CommitEvent)> publish, MetricsRegistry* metrics);
  ~Writer() override;

  // Queues `request`; its completion runs later on the writer thread. After stop(),
  // completes it at once with FailedPrecondition.
  void submit(std::unique_ptr<CommitRequest> request) override;
  // Commits `request` (with whatever else is queued) on the calling thread when the
  // writer role is free, completing it before returning; otherwise as submit().
  void submitOrCommit(std::unique_ptr<CommitRequest> request) override;
  // Whether a request submitted now would wait: a group is being committed, or
  // requests are queued. A hint: it may change at once.
  bool busy() const override;
  // Commits what is queued on the calling thread when the writer role is free, completing
  // it before returning; otherwise leaves it to the writer thread.
  void commitQueued() override;
  // Commits `request` alone on the calling thread, completing it before returning, if
  // the writer is idle: the role is free and nothing is queued. Otherwise hands the
  // request back untouched.
  std::unique_ptr<CommitRequest> commitIfIdle(std::unique_ptr<CommitRequest> request) override;
  // While paused, background requests stay queued and other requests
  // commit without them; passive checkpoints pause them (see loop()). A stopping writer
  // commits them regardless.
  void pauseBackground(bool paused) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs `fn` in a write transaction of its own on the writer thread and waits. Called
  // on the writer thread itself (from a completion callback) it runs `fn` at once; from
  // inside a write transaction there (a closure under the write lock) it runs `fn` in a
  // savepoint of that transaction when `may_join`, and fails with FailedPrecondition
  // otherwise.
  absl::Status runSync(std::function<absl::Status(Connection&)> fn, bool may_join = false);
  // Registers a table whose incomplete indexes the writer back-fills when idle.
  void addBackfill(TableState* table) override;
  // Blocks until no registered back-fill remains (each finished or failed) or the
  // writer stops.
  void awaitBackfills() override;
  // Commits everything queued, then stops the thread, leaving an empty WAL. Returns the
  // error of that last checkpoint (a full disk leaves the WAL as it was). Idempotent:
  // later calls return the same status.
  absl::Status stop() override;

  // OK while the writer commits. After a sync failed (a commit's or a checkpoint's; see
  // writesInDoubt), the error every commit fails with from then on, until the workspace
  // is reopened: the operating system may have dropped pages written before, so no later
  // commit could be acknowledged as durable (LevelDB's sticky background error). Reads
  // are not affected. Thread-safe.
  absl::Status stoppedError() const override ABSL_LOCKS_EXCLUDED(mu_);

  // The commit sequence of the last group this writer committed.
  uint64_t lastCommitSequence() const override;
  // How long recent requests with many changes held the write lock (apply and commit),
  // per change (a moving average; 20 µs before the first such request). Sizes chunks
  // (performChunked).
  int64_t nanosPerChange() const override {
    return nanos_per_change_.load(std::memory_order_relaxed);
  }
  // What `group` (committed as `seq`, with `results`) changed in tables that have
  // subscriptions, for the observers. Takes the objects' bytes out of the requests.
  // (group_apply.cc)
  static CommitEvent observedChanges(std::vector<std::unique_ptr<CommitRequest>>& group,
                                     const std::vector<absl::StatusOr<TransactionResult>>& results,
                                     uint64_t seq);
  // Closures run inside the write transaction (CommitCallbacks::runUnderLock).
  bool runsClosures() const override { return true; }
  bool handsOn() const override { return true; }
  bool commitsInBackground() const override { return true; }
  // The tables' primary keys refuse a taken key (group_apply.cc).
  bool refusesTakenKeys() const override { return true; }
  // Through runSync, joining a closure's write transaction when called inside it.
  absl::Status putEntry(std::string_view key, Dictionary::Kind kind, std::string_view type,
                        std::span<const uint8_t> value) override;
  absl::Status eraseEntry(std::string_view key) override;

 private:
  // How a thread other than the writer thread may lead (see tryLead).
  enum class Lead {
    kWithQueue,  // commit the request, if any, with whatever else is queued
    kAlone,      // commit the request alone, and only when nothing else is queued
  };
  // The one way a thread other than the writer thread takes the writer role: when the
  // role is free (and not held by this thread), takes a group as `how` says, commits it
  // and gives the role up, completing the group before returning. Returns `request`
  // untouched when it led no group with it: the role was busy, the writer is stopping,
  // or (kAlone) something else is queued. A request that went into the mailbox but
  // stayed there (background work while paused) is gone from the caller either way.
  std::unique_ptr<CommitRequest> tryLead(std::unique_ptr<CommitRequest> request, Lead how)
      ABSL_LOCKS_EXCLUDED(role_, mu_);
  // The writer thread: commits what the mailbox holds, back-fills and checkpoints.
  void loop();
  // Moves queued requests into `group`, higher priorities first, within the limits.
  void takeGroup(std::vector<std::unique_ptr<CommitRequest>>* group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Under the role, for a thread other than the writer's that committed a group: runs
  // the checkpoint due after it (the restart past the WAL's size limit); passive rounds
  // stay due for the writer thread.
  void restartIfDue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) ABSL_LOCKS_EXCLUDED(mu_);
  // Commits `group`, then notes whether the WAL needs a checkpoint.
  void commitAndNote(std::vector<std::unique_ptr<CommitRequest>>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Makes the failure `cause` the stopped error, unless one is set already, and returns
  // the stopped error. `why` says why no commit can be trusted after it.
  static constexpr std::string_view kPagesInDoubt =
      "the operating system may have dropped pages written to the file";
  absl::Status stopCommitting(const absl::Status& cause, std::string_view why = kPagesInDoubt)
      ABSL_LOCKS_EXCLUDED(mu_);
  // On an error path under the role: rolls back the write transaction, and stops
  // committing when one is still open after that.
  void rollbackOrStop() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // After a checkpoint: stops committing when it put the written pages in doubt.
  // Returns whether the writer commits still.
  bool checkpointKeptFile() ABSL_LOCKS_EXCLUDED(mu_);
  bool backfillOnce() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);

  // The group apply (group_apply.cc), under the role. Applies `group` in one write
  // transaction, commits it and completes its requests.
  void commitGroup(std::vector<std::unique_ptr<CommitRequest>>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Completes every request of `group` with `error`; nothing of it was committed.
  static void failGroup(std::vector<std::unique_ptr<CommitRequest>>& group,
                        const absl::Status& error);
  absl::Status applyRequest(CommitRequest& request, Versionstamp vs, TransactionResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Records in the request's InFlight what it wrote, applied in group `seq`.
  static void noteApplied(CommitRequest& request, uint64_t seq);
  // Appends the group's change-log row and prunes old ones. `last_change` comes in as
  // the log's newest row's and leaves as the one written.
  absl::Status writeLog(const std::vector<std::unique_ptr<CommitRequest>>& group,
                        const std::vector<absl::StatusOr<TransactionResult>>& results, uint64_t seq,
                        Versionstamp* last_change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // The change log's newest row inside the open write transaction. Read from the log
  // only when another connection committed since this writer last did (SQLite's data
  // version); otherwise it is the row this writer wrote last.
  absl::StatusOr<LogHead> logHead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Folds the write-lock time a request took (its apply and its share of the commit),
  // per change, into nanos_per_change_, for requests of at least kPaceMinChanges
  // changes.
  static constexpr size_t kPaceMinChanges = 16;
  void notePace(const CommitRequest& request, absl::Duration hold);

  const WriterOptions options_;
  const std::function<void(CommitEvent)> publish_;
  MetricsRegistry* const metrics_;

  const std::string path_;  // the database file's, for messages
  // The writer role: held while committing a group, back-filling or checkpointing.
  absl::Mutex role_;
  const std::unique_ptr<Connection> db_ ABSL_PT_GUARDED_BY(role_);
  // The log head after this writer's last commit, and the data version it holds for.
  std::optional<LogHead> head_ ABSL_GUARDED_BY(role_);
  std::optional<uint32_t> head_data_version_ ABSL_GUARDED_BY(role_);
  // The newest commit another connection may have made, as far as this writer knows:
  // the log head it last read from the log (because the data version had moved). Every
  // later commit is this writer's own, so a request whose snapshot saw this one needs
  // no check for other processes' changes (see applyRequest).
  uint64_t foreign_through_ ABSL_GUARDED_BY(role_) = 0;
  // The catalog generation (see readCatalogGeneration), read with the log head: when
  // another program stored a newer schema or added an index, tables in use here whose
  // bridge is older are refreshed before their next change is applied.
  int64_t catalog_generation_ ABSL_GUARDED_BY(role_) = 0;
  std::unique_ptr<Checkpointer> checkpointer_;

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<CommitRequest>> queue_[kPriorityLevels] ABSL_GUARDED_BY(mu_);
  // Whether a group could be taken now (background requests wait while paused).
  bool queued() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_[queueOf(Priority::kUserInitiated)].empty() ||
           !queue_[queueOf(Priority::kDefault)].empty() ||
           (!queue_[queueOf(Priority::kBackground)].empty() && (!background_paused_ || stopping_));
  }
  // Set while passive checkpoint rounds copy the WAL back: background requests stay
  // queued meanwhile, so that a bulk import's frames do not outrun the copying (see
  // loop()).
  bool background_paused_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<TableState*> backfills_ ABSL_GUARDED_BY(mu_);
  // Set after a commit that left the WAL past a checkpoint bound; the writer thread
  // checkpoints.
  bool checkpoint_due_ ABSL_GUARDED_BY(mu_) = false;
  // checkpoint_due_ as the role's holder reads it without taking mu_ (restartIfDue,
  // after each group a caller commits): every write of checkpoint_due_ happens under
  // the role and writes this too.
  bool role_checkpoint_due_ ABSL_GUARDED_BY(role_) = false;
  // Threads committing a group of their own (see tryLead); stop() waits for them.
  int leaders_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_checkpoint_ ABSL_GUARDED_BY(mu_);  // set when the thread ends
  absl::Status stopped_ ABSL_GUARDED_BY(mu_);           // see stoppedError()
  std::atomic<bool> has_stopped_{false};                // stopped_ is set: a cheap test
  // Written under the role, read by any thread (lastCommitSequence).
  std::atomic<uint64_t> last_sequence_{0};
  // Written under the role, read by closures' threads.
  std::atomic<int64_t> nanos_per_change_{20'000};
  std::atomic<bool> committing_{false};  // see busy()
  std::thread thread_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_WRITER_H_
