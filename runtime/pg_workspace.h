// The parts of a workspace on PostgreSQL that sit above the storage engine (pg_engine.h)
// where the SQLite workspace has its writer and its commit watcher:
//
//   PgWriter         the CommitPath (commit_path.h). Requests wait in its queue, and
//                    the threads that finished closures (scheduler workers, or callers
//                    that ran their own) commit them, each thread a group of requests in
//                    a write session holding the locks of the group's tables; a thread
//                    that committed a few groups leaves the rest to the writer's relief
//                    thread, so that no caller commits for others for long. Groups on disjoint
//                    tables commit in parallel, on separate connections; a group's tables are taken
//                    from the queue in the order its requests came, and no second group
//                    of this client takes a table while one holds it. A closure whose
//                    tables wait for other closures hands them on when its request is
//                    queued (pipeline.h), before its commit: the next closure runs on
//                    another thread while this thread commits, and what queues
//                    meanwhile goes into the next session together, one savepoint per
//                    request (the savepoints travel with the statements, so a group
//                    costs the round trips of one request).
//                    A conflict (another client changed a table the closure read since
//                    its snapshot) fails a request that holds its tables with the
//                    conflict error, and the closure runs again on a fresh snapshot;
//                    after two conflicts it runs inside a write session, reading the
//                    session's transaction under its tables' locks, where no other
//                    client can change them (ClosureRunner's run under the lock). A
//                    request that handed its tables on runs its closure again inside
//                    its session at once, as on SQLite: after a conflict, or when it
//                    read what a request before it in this client writes and its
//                    snapshot lacks. A change encoded with a table's bridge that a
//                    session replaced (another program changed the catalog,
//                    pg_engine.h) counts as a conflict.
//                    Creations take their keys as free (refusesTakenKeys): a unique
//                    violation of a request (a taken key, or a unique value another
//                    object has) rolls it back to its savepoint once the round trip's
//                    sync ended the statements the server skipped, and its closure
//                    runs again inside the session with every key looked up, in its
//                    place; the other requests of the session go on.
//                    Index back-fills run on a thread of their own.
//   PgCommitWatcher  other clients' commits, from the engine's CommitFeed (LISTEN/NOTIFY
//                    as a wake-up, the change log as the record), published to the
//                    observers as CommitEvents with the objects as they are now.
//
// Sequences. The observers order what they know by a commit sequence: a result fetched
// at sequence s holds every commit published at s or before, and events after s are
// applied on top (ObserverHub). On SQLite that is the file's commit sequence. PostgreSQL
// has no such order (transaction ids are taken in start order, and disjoint tables
// commit in any order), so here it is the workspace's own count of published commits
// (PgSequence): each commit, own or another client's, takes the next number when it is
// published, after it committed, so a fetch that read the count first saw every commit
// counted before it. Workspace::lastCommitSequence() reports this count here.
//
// Thread-safety: all public methods are thread-safe.
#ifndef FLATSTORE_RUNTIME_PG_WORKSPACE_H_
#define FLATSTORE_RUNTIME_PG_WORKSPACE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flatstore/status.h"
#include "runtime/commit_event.h"
#include "runtime/commit_path.h"
#include "runtime/commit_watcher.h"
#include "runtime/metrics.h"
#include "runtime/observers.h"
#include "runtime/pg_engine.h"
#include "runtime/table_registry.h"

namespace flatstore::internal {

// The count of commits published to the observers (see the file comment).
class PgSequence {
 public:
  // The number of the next commit published.
  uint64_t next() { return count_.fetch_add(1, std::memory_order_acq_rel) + 1; }
  uint64_t current() const { return count_.load(std::memory_order_acquire); }

 private:
  std::atomic<uint64_t> count_{0};
};

// The engine's views until close(): then every read fails, as on SQLite once the
// workspace is shut down.
class ClosableViews : public ReadViews {
 public:
  explicit ClosableViews(ReadViews* views) : views_(views) {}
  absl::StatusOr<std::unique_ptr<ReadView>> read() override {
    FLATSTORE_RETURN_IF_ERROR(check());
    return views_->read();
  }
  absl::StatusOr<std::unique_ptr<ReadView>> snapshot() override {
    FLATSTORE_RETURN_IF_ERROR(check());
    return views_->snapshot();
  }
  bool snapshotsBatchKeyLookups() const override { return views_->snapshotsBatchKeyLookups(); }
  void close() { closed_.store(true, std::memory_order_release); }

 private:
  absl::Status check() const {
    return closed_.load(std::memory_order_acquire)
               ? absl::FailedPreconditionError("the workspace is shut down")
               : absl::OkStatus();
  }
  ReadViews* const views_;
  std::atomic<bool> closed_{false};
};

class PgWriter : public CommitPath {
 public:
  // `publish` receives each commit's changes to observed tables before its handle
  // completes, on the committing thread.
  PgWriter(PgEngine* engine, std::function<void(CommitEvent)> publish, MetricsRegistry* metrics,
           int backfill_batch, PgSequence* sequence);
  ~PgWriter() override;

  // Queues `request`; the caller commits it with commitQueued() (ClosureRunner::handOn).
  void submit(std::unique_ptr<CommitRequest> request) override ABSL_LOCKS_EXCLUDED(mu_);
  // Queues `request` and commits what this thread may (commitQueued).
  void submitOrCommit(std::unique_ptr<CommitRequest> request) override ABSL_LOCKS_EXCLUDED(mu_);
  // A closure runs inside a write session only after conflicts: hands the request back.
  std::unique_ptr<CommitRequest> commitIfIdle(std::unique_ptr<CommitRequest> request) override {
    return request;
  }
  // Commits groups of queued requests whose tables no session of this client holds,
  // until none is left. A session that ends leaves what waited for its tables to the
  // thread that ran it, which takes it next, for a few groups: then the writer's relief
  // thread goes on, so that a caller returns while others keep one table busy.
  void commitQueued() override ABSL_LOCKS_EXCLUDED(mu_) { commitGroups(kGroupsPerCall); }
  // Requests wait only for sessions of their own tables: no hint.
  bool busy() const override { return false; }
  // After conflicts a closure runs inside its write session (under its tables' locks).
  bool runsClosures() const override { return true; }
  bool handsOn() const override { return true; }
  bool commitsInBackground() const override { return false; }
  // A creation's key is left to the table's primary key (and its unique values to the
  // unique indexes): a unique violation rolls the request back to its savepoint, and
  // its closure runs again in the session with every key looked up (apply).
  bool refusesTakenKeys() const override { return true; }

  // Each in a write session of its own that locks no table.
  absl::Status putEntry(std::string_view key, Dictionary::Kind kind, std::string_view type,
                        std::span<const uint8_t> value) override;
  absl::Status eraseEntry(std::string_view key) override;

  void addBackfill(TableState* table) override ABSL_LOCKS_EXCLUDED(mu_);
  void awaitBackfills() override ABSL_LOCKS_EXCLUDED(mu_);
  // Waits for the commits under way, then stops the back-fill thread. Later requests
  // fail with FailedPrecondition.
  absl::Status stop() override ABSL_LOCKS_EXCLUDED(mu_);
  // Always OK: a failed commit fails its own request only (the server keeps the data
  // durable; there is no sync of this client's to doubt).
  absl::Status stoppedError() const override { return absl::OkStatus(); }
  // The count of published commits (PgSequence).
  uint64_t lastCommitSequence() const override { return sequence_->current(); }
  int64_t nanosPerChange() const override {
    return nanos_per_change_.load(std::memory_order_relaxed);
  }

 private:
  // A queued request and the tables its session locks: the declared ones, the ones its
  // closure read, the ones its changes write.
  struct Queued {
    std::unique_ptr<CommitRequest> request;
    std::vector<const TableState*> tables;
  };
  // A group taken from the queue, and the union of its tables (all the first
  // request's: the others' are among them).
  struct Group {
    std::vector<std::unique_ptr<CommitRequest>> requests;
    std::vector<const TableState*> tables;
  };
  // Groups one call of commitQueued() commits at most.
  static constexpr int kGroupsPerCall = 4;

  // Queues `request`; false when the writer stopped (the request is completed then).
  bool enqueue(std::unique_ptr<CommitRequest> request) ABSL_LOCKS_EXCLUDED(mu_);
  // commitQueued(), for at most `max_groups` groups; when more is queued then, wakes the
  // relief thread.
  void commitGroups(int max_groups) ABSL_LOCKS_EXCLUDED(mu_);
  // The relief thread: commits what a caller left at its limit.
  void reliefLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Takes the next group whose tables are free, and marks them held; empty when none.
  Group takeGroup() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits `group` in one session and completes its requests.
  void commitGroup(Group& group);
  // Whether `request`'s closure may run again inside its session, where a conflict or a
  // taken key then rolls it back to its savepoint (apply): it needs one even alone.
  static bool mayRunAgainInSession(const CommitRequest& request);
  // One request of a session at `position`: conflict and predecessor checks, a run of
  // its closure in the session when needed, its changes, its dictionary work.
  absl::StatusOr<TransactionResult> apply(CommitRequest& request, WriteSession& session,
                                          uint16_t position);
  absl::Status writeEntry(const std::function<absl::Status(EntryWriter&)>& fn);
  void backfillLoop() ABSL_LOCKS_EXCLUDED(mu_);

  PgEngine* const engine_;
  const std::function<void(CommitEvent)> publish_;
  MetricsRegistry* const metrics_;
  const int backfill_batch_;
  PgSequence* const sequence_;
  std::atomic<int64_t> nanos_per_change_{20000};

  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int committing_ ABSL_GUARDED_BY(mu_) = 0;  // groups being committed
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  // The tables of the sessions this client runs now.
  absl::flat_hash_set<const TableState*> held_ ABSL_GUARDED_BY(mu_);
  std::deque<TableState*> backfills_ ABSL_GUARDED_BY(mu_);
  std::thread backfill_thread_;
  bool relief_wanted_ ABSL_GUARDED_BY(mu_) = false;
  std::thread relief_thread_;
};

class PgCommitWatcher : public ForeignCommitWatcher {
 public:
  PgCommitWatcher(PgEngine* engine, absl::Duration interval, TableRegistry* tables,
                  ObserverHub* hub, MetricsRegistry* metrics, PgSequence* sequence)
      : engine_(engine),
        interval_(interval),
        tables_(tables),
        hub_(hub),
        metrics_(metrics),
        sequence_(sequence) {}
  ~PgCommitWatcher() override { stop(); }

  // Opens the feed (from the newest commit now) and starts the thread.
  absl::Status start();
  void stop() override ABSL_LOCKS_EXCLUDED(mu_);
  // The count of published commits (PgSequence).
  uint64_t watchedSequence() override { return sequence_->current(); }

 private:
  void loop();
  // Reads the feed and publishes what observed tables got.
  absl::Status publishForeignCommits();

  PgEngine* const engine_;
  const absl::Duration interval_;
  TableRegistry* const tables_;
  ObserverHub* const hub_;
  MetricsRegistry* const metrics_;
  PgSequence* const sequence_;
  std::unique_ptr<CommitFeed> feed_;
  // Read from the feed and not yet published (the watcher's thread only).
  std::vector<ForeignCommit> unpublished_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PG_WORKSPACE_H_
