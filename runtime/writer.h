// Writer: the only code that writes to SQLite.
//
// Closures hand their encoded changes to the writer's mailbox. The writer thread takes
// every request waiting (bounded by count and bytes), opens one BEGIN IMMEDIATE, applies
// each request inside its own savepoint (a failing request, such as a unique violation,
// rolls back alone), appends the group's change-log row (which carries the commit
// sequence), and commits once: one WAL append (and with synchronous=FULL one fsync) for the group.
// The write lock is held only for this apply. Then it completes each request.
//
// Thread-safety: submit() and stop() may be called from any thread; everything else runs
// on the writer thread.
#ifndef FLATSTORE_RUNTIME_WRITER_H_
#define FLATSTORE_RUNTIME_WRITER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/entity.h"
#include "flatstore/transaction.h"
#include "flatstore/value.h"
#include "runtime/catalog.h"
#include "runtime/metrics.h"
#include "runtime/observers.h"
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
  // Extra work inside the request's savepoint (catalog DDL, dictionary writes).
  std::function<absl::Status(Connection&)> apply;
  // Called on the writer thread after the group committed or failed.
  std::function<void(absl::StatusOr<TransactionResult>)> complete;
  int64_t bytes = 0;
  // Set by the writer before `complete`: how long the group held the write lock.
  int64_t lock_hold_us = -1;
  // 0 user-initiated, 1 default, 2 background: when more is queued than one group
  // takes, higher priorities go first.
  int priority = 1;
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
  int checkpoint_pages = 1000;
  int64_t wal_size_limit = 32 << 20;
  absl::Duration checkpoint_wait = absl::Milliseconds(200);
  absl::Duration lock_timeout = absl::Seconds(30);
};

// True on a writer thread: in its loop, in closures it runs under the write lock and in
// the completion callbacks it calls. Waiting for the writer there would deadlock.
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
  // Runs `fn` in a write transaction of its own on the writer thread and waits. Called
  // on the writer thread itself (from a completion callback) it runs `fn` at once; from
  // inside a write transaction there (a closure under the write lock) it fails with
  // FailedPrecondition.
  absl::Status runSync(std::function<absl::Status(Connection&)> fn);
  // Registers a table whose incomplete indexes the writer back-fills when idle.
  void addBackfill(TableState* table);
  // Blocks until no registered back-fill remains (each finished or failed) or the
  // writer stops.
  void awaitBackfills();
  // Commits everything queued, then stops the thread. Idempotent.
  void stop();

  // The commit sequence of the last group this writer committed.
  uint64_t lastCommitSequence() const;

 private:
  void loop();
  void commitGroup(std::vector<std::unique_ptr<CommitRequest>>& group);
  absl::Status applyRequest(CommitRequest& request, Versionstamp vs, TransactionResult* result);
  // A request is applied in two passes (see writer.cc); applyWrites sets `rowid` of an
  // insert.
  absl::Status applyRemovals(const EncodedChange& change);
  absl::Status applyWrites(EncodedChange& change, int64_t vs);
  // Appends the group's change-log row and prunes old ones. `previous` is the log's
  // newest row before this commit.
  absl::Status writeLog(const std::vector<std::unique_ptr<CommitRequest>>& group,
                        const std::vector<absl::StatusOr<TransactionResult>>& results, uint64_t seq,
                        Versionstamp previous_last_change);
  CommitEvent observedChanges(std::vector<std::unique_ptr<CommitRequest>>& group,
                              const std::vector<absl::StatusOr<TransactionResult>>& results,
                              uint64_t seq);
  bool backfillOnce();
  // The WAL policy, run between groups: passive checkpoints as the WAL fills, a
  // truncating one (waiting briefly for readers) past the size limit.
  void maybeCheckpoint();
  bool checkpoint(int mode);
  static int onWalCommit(void* self, sqlite3* db, const char* name, int pages);

  std::unique_ptr<Connection> db_;  // writer thread only
  const WriterOptions options_;
  const std::function<void(CommitEvent)> publish_;
  MetricsRegistry* const metrics_;
  int wal_pages_ = 0;  // writer thread only (set by the WAL hook during COMMIT)
  // After a truncation gave up, the next try waits a while (writer thread only).
  absl::Time next_truncate_ = absl::InfinitePast();

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<CommitRequest>> queue_[3] ABSL_GUARDED_BY(mu_);
  bool queued() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_[0].empty() || !queue_[1].empty() || !queue_[2].empty();
  }
  std::vector<TableState*> backfills_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_WRITER_H_
