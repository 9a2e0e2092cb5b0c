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
// index back-fills and checkpoints.
//
// Thread-safety: submit(), submitOrCommit() and stop() may be called from any thread;
// the rest runs under the role.
#ifndef FLATSTORE_RUNTIME_WRITER_H_
#define FLATSTORE_RUNTIME_WRITER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "flatstore/entity.h"
#include "flatstore/transaction.h"
#include "flatstore/value.h"
#include "runtime/catalog.h"
#include "runtime/change_log.h"
#include "runtime/metrics.h"
#include "runtime/observers.h"
#include "runtime/priority.h"
#include "runtime/sqlite.h"

namespace flatstore::internal {

// One change, fully encoded on the closure's thread.
struct EncodedChange {
  enum class Op { kInsert, kUpdate, kDelete, kNone };
  Op op = Op::kNone;
  TableState* table = nullptr;
  int64_t rowid = 0;  // update, delete
  ObjectBuffer bytes;
  std::vector<Value> key;
  std::vector<Value> index_values;
  // For updates: the index values before the change, so unchanged ones are skipped,
  // and whether the primary key changed.
  std::vector<Value> old_index_values;
  bool key_changed = false;
  // For updates: the version the change was made over, and which top-level fields
  // differ from it (EncodedObject::changed_fields, accumulated), for observers.
  Versionstamp base_version;
  uint64_t changed_fields = ~uint64_t{0};
};

// What a closure read through its snapshot: objects by (table id, rowid) and by table
// id and primary key (keyOf), and the tables its queries scanned.
struct ReadSet {
  absl::flat_hash_set<std::pair<int64_t, int64_t>> rowids;
  absl::flat_hash_set<std::string> keys;
  absl::flat_hash_set<int64_t> scanned;
};
// The ReadSet and InFlight form of a primary key of table `table_id`.
std::string keyOf(int64_t table_id, const std::vector<Value>& key);

// What a request writes, in ReadSet's terms. A table where it changes a primary key,
// or (before it is applied) creates objects with automatic ids, counts as written whole.
struct WriteSet {
  absl::flat_hash_set<std::pair<int64_t, int64_t>> rowids;
  absl::flat_hash_set<std::string> keys;
  absl::flat_hash_set<int64_t> wide;
  absl::flat_hash_set<int64_t> tables;  // every table written
  // Whether the writes touch what `reads` read.
  bool touches(const ReadSet& reads) const;
};

// What `changes` write (an insert counts by its rowid once it is applied).
WriteSet writesOf(const std::vector<EncodedChange>& changes);

// A request whose tables were given to the next closures on them as soon as it reached
// the mailbox, before its commit (pipelining). Those closures run on snapshots that may
// lack its changes, so each names it as a predecessor: the closure's thread compares
// what it read with `intended` before it hands its own request on (and runs again after
// the predecessors' commits on a match), and the writer compares with what was applied.
struct InFlight {
  int priority = kDefaultLevel;
  WriteSet intended;  // fixed before the record is published
  // Written and read only under the writer role: the sequence of the group that applied
  // it (0 before) and what it wrote; `failed` when nothing of it reached the database.
  uint64_t sequence = 0;
  bool failed = false;
  WriteSet applied;
  // Notified once its handle's result is known.
  absl::Notification done;
};

// What one closure (or one internal job) asks the writer to commit.
struct CommitRequest {
  std::vector<EncodedChange> changes;
  // The tables the closure read and the commit sequence its snapshot saw. If another
  // process changed one of them since, the request fails with a conflict (see
  // isConflict) and is run again on a fresh snapshot.
  std::vector<TableState*> read_tables;
  uint64_t snapshot_sequence = 0;
  // When set, produces `changes` and `apply` on the writer thread inside the write
  // transaction, before they are applied (a closure run under the write lock). An error
  // fails the request.
  std::function<absl::Status(Connection&, CommitRequest&)> produce;
  // Pipelining (see InFlight). `predecessors`: the requests on this request's tables
  // that were in flight when its snapshot was taken; `reads`: what its closure read;
  // `in_flight`: its own record, when its tables were released early (`released`).
  // When a predecessor applied after the snapshot wrote something the closure read, or
  // another process changed a table of a request that no longer holds its tables, the
  // writer replaces the changes by running `rerun` inside the write transaction, where
  // the closure sees everything before it.
  std::vector<std::shared_ptr<InFlight>> predecessors;
  ReadSet reads;
  std::shared_ptr<InFlight> in_flight;
  bool released = false;
  std::function<absl::Status(Connection&, CommitRequest&)> rerun;
  // Extra work inside the request's savepoint (catalog DDL, dictionary writes).
  std::function<absl::Status(Connection&)> apply;
  // Called on the writer thread after the group committed or failed.
  std::function<void(absl::StatusOr<TransactionResult>)> complete;
  int64_t bytes = 0;
  // Set by the writer before `complete`: how long the group held the write lock.
  int64_t lock_hold_us = -1;
  // A level of priority.h: when more is queued than one group takes, higher priorities
  // go first.
  int priority = kDefaultLevel;
};

struct WriterOptions {
  int max_group_transactions = 4096;
  int64_t max_group_bytes = 64 << 20;
  int backfill_batch = 1000;
  // Identifies this workspace's commits in the change log.
  int64_t origin = 0;
  // Commits whose change-log entries are kept.
  int64_t log_retention = 10000;
  // Checkpoint policy; see WorkspaceOptions.
  int checkpoint_pages = 2000;
  int64_t wal_size_limit = 32 << 20;
  absl::Duration checkpoint_wait = absl::Milliseconds(200);
  absl::Duration lock_timeout = absl::Seconds(30);
};

// True on a thread holding the writer role: the writer thread in its loop, a thread
// committing a group of its own, in closures run under the write lock and in the
// completion callbacks. Waiting for the writer there would deadlock.
bool onWriterThread();

// A request failed because another process changed a table it read.
absl::Status conflictError(const TableState& table);
bool isConflict(const absl::Status& status);

class Writer {
 public:
  // `publish` receives each committed group's changes to observed tables, on the writer
  // thread, before the group's handles complete.
  Writer(std::unique_ptr<Connection> connection, WriterOptions options,
         std::function<void(CommitEvent)> publish, MetricsRegistry* metrics);
  ~Writer();

  // Queues `request`; its `complete` runs later on the writer thread. After stop(),
  // completes it at once with FailedPrecondition.
  void submit(std::unique_ptr<CommitRequest> request);
  // Commits `request` (with whatever else is queued) on the calling thread when the
  // writer role is free, completing it before returning; otherwise as submit().
  void submitOrCommit(std::unique_ptr<CommitRequest> request);
  // Whether a request submitted now would wait: a group is being committed, or
  // requests are queued. A hint: it may change at once.
  bool busy() const;
  // Commits what is queued on the calling thread when the writer role is free, completing
  // it before returning; otherwise leaves it to the writer thread.
  void commitQueued();
  // Commits `request` alone on the calling thread, completing it before returning, if
  // the writer is idle: the role is free and nothing is queued. Otherwise hands the
  // request back untouched.
  std::unique_ptr<CommitRequest> commitIfIdle(std::unique_ptr<CommitRequest> request);
  // While paused, background requests stay queued and other requests
  // commit without them; passive checkpoints pause them (see passiveCheckpoint). A
  // stopping writer commits them regardless.
  void pauseBackground(bool paused) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs `fn` in a write transaction of its own on the writer thread and waits. Called
  // on the writer thread itself (from a completion callback) it runs `fn` at once; from
  // inside a write transaction there (a closure under the write lock) it runs `fn` in a
  // savepoint of that transaction when `may_join`, and fails with FailedPrecondition
  // otherwise.
  absl::Status runSync(std::function<absl::Status(Connection&)> fn, bool may_join = false);
  // Registers a table whose incomplete indexes the writer back-fills when idle.
  void addBackfill(TableState* table);
  // Blocks until no registered back-fill remains (each finished or failed) or the
  // writer stops.
  void awaitBackfills();
  // Commits everything queued, then stops the thread. Idempotent.
  void stop();

  // The commit sequence of the last group this writer committed.
  uint64_t lastCommitSequence() const;
  // How long recent requests with many changes held the write lock (apply and commit),
  // per change (a moving average; 20 µs before the first such request). Sizes chunks
  // (performChunked).
  int64_t nanosPerChange() const { return nanos_per_change_.load(std::memory_order_relaxed); }

 private:
  void loop();
  // Moves queued requests into `group`, higher priorities first, within the limits.
  void takeGroup(std::vector<std::unique_ptr<CommitRequest>>* group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits `group`, then notes whether the WAL needs a checkpoint.
  void commitAndNote(std::vector<std::unique_ptr<CommitRequest>>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // For a thread other than the writer thread that took the role (and counted itself
  // in leaders_): commits `group`, then gives up the role.
  void leadGroup(std::vector<std::unique_ptr<CommitRequest>>& group) ABSL_UNLOCK_FUNCTION(role_);
  void commitGroup(std::vector<std::unique_ptr<CommitRequest>>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  absl::Status applyRequest(CommitRequest& request, Versionstamp vs, TransactionResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Whether a predecessor of `request` applied after its snapshot wrote what it read.
  absl::StatusOr<bool> readsOverwritten(const CommitRequest& request) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Records in `request.in_flight` what the request wrote, applied in group `seq`.
  static void noteApplied(CommitRequest& request, uint64_t seq);
  // A request is applied in two passes (see writer.cc); applyWrites sets `rowid` of an
  // insert.
  absl::Status applyRemovals(const EncodedChange& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  absl::Status applyWrites(EncodedChange& change, int64_t vs) ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Appends the group's change-log row and prunes old ones. `last_change` comes in as
  // the log's newest row's and leaves as the one written.
  absl::Status writeLog(const std::vector<std::unique_ptr<CommitRequest>>& group,
                        const std::vector<absl::StatusOr<TransactionResult>>& results, uint64_t seq,
                        Versionstamp* last_change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // The change log's newest row inside the open write transaction. Read from the log
  // only when another connection committed since this writer last did (PRAGMA
  // data_version); otherwise it is the row this writer wrote last.
  absl::StatusOr<LogHead> logHead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Folds the write-lock time a request took (its apply and its share of the commit),
  // per change, into nanos_per_change_, for requests of at least kPaceMinChanges
  // changes.
  static constexpr size_t kPaceMinChanges = 16;
  void notePace(const CommitRequest& request, absl::Duration hold);
  CommitEvent observedChanges(std::vector<std::unique_ptr<CommitRequest>>& group,
                              const std::vector<absl::StatusOr<TransactionResult>>& results,
                              uint64_t seq);
  bool backfillOnce() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // The WAL policy, run by the writer thread after a commit left the WAL past a bound:
  // a restarting checkpoint (waiting briefly for readers) past the size limit. Returns
  // whether a passive checkpoint is due, which the caller runs after giving up the role.
  bool runCheckpoints() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // A checkpoint in `mode` (RESTART or TRUNCATE) that waits up to checkpoint_wait.
  bool resetWal(int mode) ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  void passiveCheckpoint() ABSL_LOCKS_EXCLUDED(role_);
  static int onWalCommit(void* self, sqlite3* db, const char* name, int pages);

  const WriterOptions options_;
  const std::function<void(CommitEvent)> publish_;
  MetricsRegistry* const metrics_;

  // The writer role: held while committing a group, back-filling or checkpointing.
  absl::Mutex role_;
  const std::unique_ptr<Connection> db_ ABSL_PT_GUARDED_BY(role_);
  // Frames in the WAL, from the WAL hook during COMMIT.
  int wal_pages_ ABSL_GUARDED_BY(role_) = 0;
  // The most frames the WAL held since this writer last truncated it: its file size.
  int wal_high_pages_ ABSL_GUARDED_BY(role_) = 0;
  // Frames in the WAL when the last passive checkpoint ran.
  int checkpointed_pages_ ABSL_GUARDED_BY(role_) = 0;
  // After a restart gave up, the next try waits until the WAL grew by a quarter of its
  // limit (each try stops commits for up to checkpoint_wait).
  int64_t next_restart_bytes_ ABSL_GUARDED_BY(role_) = 0;
  bool restartDue() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  const int page_size_;
  // The log head after this writer's last commit, and the data version it holds for.
  std::optional<LogHead> head_ ABSL_GUARDED_BY(role_);
  std::optional<uint32_t> head_data_version_ ABSL_GUARDED_BY(role_);
  // The writer thread's connection for passive checkpoints.
  std::unique_ptr<Connection> checkpointer_;
  // The bytes of a WAL of `frames` frames: with wal_high_pages_, the file's size (no
  // system call per commit).
  int64_t walBytes(int frames) const;

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<CommitRequest>> queue_[kPriorityLevels] ABSL_GUARDED_BY(mu_);
  // Whether a group could be taken now (background requests wait while paused).
  bool queued() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_[kUserInitiatedLevel].empty() || !queue_[kDefaultLevel].empty() ||
           (!queue_[kBackgroundLevel].empty() && (!background_paused_ || stopping_));
  }
  // Set while passive checkpoint rounds copy the WAL back: background requests stay
  // queued meanwhile, so that a bulk import's frames do not outrun the copying (see
  // passiveCheckpoint).
  bool background_paused_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<TableState*> backfills_ ABSL_GUARDED_BY(mu_);
  // Set after a commit that left the WAL past a checkpoint bound; the writer thread
  // checkpoints.
  bool checkpoint_due_ ABSL_GUARDED_BY(mu_) = false;
  // Threads committing a group of their own (see submitOrCommit); stop() waits for them.
  int leaders_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  // Written under the role, read by closures' threads.
  std::atomic<int64_t> nanos_per_change_{20'000};
  std::atomic<bool> committing_{false};  // see busy()
  std::thread thread_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_WRITER_H_
