// WorkspaceImpl: the parts of an open workspace and how they meet.
//
//   callers --performChanges--> Scheduler (per-table queues) --> worker runs closure
//     closure reads through a ReaderPool connection (one snapshot) + its PendingTables
//     closure's EncodedChanges --> Writer mailbox --> group commit --> complete handle
//     --> Scheduler::release (tables free for the next closure)
//   callers --fetch--> ReaderPool connection, one read transaction per query
//
// Thread-safety: all public methods are thread-safe.
#ifndef FLATSTORE_RUNTIME_WORKSPACE_IMPL_H_
#define FLATSTORE_RUNTIME_WORKSPACE_IMPL_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/dictionary.h"
#include "flatstore/fetch.h"
#include "flatstore/transaction.h"
#include "flatstore/workspace.h"
#include "runtime/catalog.h"
#include "runtime/metrics.h"
#include "runtime/observers.h"
#include "runtime/priority.h"
#include "runtime/query_exec.h"
#include "runtime/scheduler.h"
#include "runtime/sqlite.h"
#include "runtime/writer.h"

namespace flatstore::internal {

// Read-only connections for queries; the writer never borrows them. A pool that
// `grows` opens another connection when none is free instead of waiting (for closures'
// snapshots, whose number the scheduler bounds); waits are recorded in `metrics`.
class ReaderPool {
 public:
  // `size` connections, opened now. A pool that `grows` opens another connection when
  // none is free instead of waiting, and closes connections beyond `size` once they
  // were idle for `idle_close` (checked whenever a lease ends): a burst of closures
  // leaves no lasting crowd of connections, each with its own page cache.
  static absl::StatusOr<std::unique_ptr<ReaderPool>> open(
      const std::string& path, int size, MetricsRegistry* metrics, bool grows = false,
      absl::Duration idle_close = absl::Seconds(30));

  // A connection checked out for one read transaction; returned on destruction.
  class Lease {
   public:
    Lease(ReaderPool* pool, std::unique_ptr<Connection> c) : pool_(pool), c_(std::move(c)) {}
    Lease(Lease&&) = default;
    ~Lease();
    Connection& operator*() const { return *c_; }
    Connection* operator->() const { return c_.get(); }

   private:
    ReaderPool* pool_;
    std::unique_ptr<Connection> c_;
  };
  // Blocks until a connection is free (a growing pool opens one).
  Lease checkout();
  // Connections open now, leased or free.
  int connections();

 private:
  struct Idle {
    std::unique_ptr<Connection> connection;
    absl::Time since;
  };
  Lease take() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void giveBack(std::unique_ptr<Connection> c) ABSL_LOCKS_EXCLUDED(mu_);
  std::string path_;
  MetricsRegistry* metrics_ = nullptr;
  bool grows_ = false;
  int size_ = 1;
  absl::Duration idle_close_;
  absl::Mutex mu_;
  // Last returned at the back: the next lease takes the most recently used connection,
  // and those that sat idle longest are at the front.
  std::deque<Idle> free_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

// Runs fn inside one read transaction on `c`, always ending it.
absl::Status inReadTransaction(Connection& c, const std::function<absl::Status()>& fn);

// The completion state behind a TransactionHandle.
class HandleState {
 public:
  void complete(absl::StatusOr<TransactionResult> result);
  absl::StatusOr<TransactionResult> wait();
  bool done();
  void onComplete(std::function<void(const absl::StatusOr<TransactionResult>&)> callback);
  // For a caller that runs its own closure: the scheduler's signal that its turn came
  // (Scheduler::Job::give_turn), and the wait for it. awaitTurn() returns true for a
  // turn, false once the transaction completed (another thread ran the closure).
  void giveTurn();
  bool awaitTurn();

 private:
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool turn_ ABSL_GUARDED_BY(mu_) = false;
  absl::StatusOr<TransactionResult> result_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void(const absl::StatusOr<TransactionResult>&)>> callbacks_
      ABSL_GUARDED_BY(mu_);
};

class WorkspaceImpl;

// The state of one running closure: its snapshot connection, the tables it declared,
// and its pending changes. Used only on the closure's thread.
class TransactionState {
 public:
  TransactionState(Connection* snapshot, std::vector<TableState*> tables);
  ~TransactionState();

  absl::StatusOr<SubmitOutcome> submit(const TableDescription& table, const ErasedChange& change);
  QuerySource* source(const TableDescription& table);
  void abort() { aborted_ = true; }
  bool aborted() const { return aborted_; }
  // The changes to commit. Ends the transaction: its pending view (what its queries
  // see of its own changes) is given up.
  std::vector<EncodedChange> takeChanges();
  // Work for the writer to do inside this transaction's savepoint (chunk cursors).
  void setCommitHook(std::function<absl::Status(Connection&)> hook) {
    commit_hook_ = std::move(hook);
  }
  std::function<absl::Status(Connection&)> takeCommitHook() { return std::move(commit_hook_); }
  int64_t pendingBytes() const { return bytes_; }
  // For chunks: after how many changes TransactionContext::chunkFull() turns true (0:
  // never) while other transactions are pending (`pending` counts the workspace's
  // pending transactions, this one included); with none, after kAloneFactor times as
  // many.
  static constexpr int64_t kAloneFactor = 16;
  void setChunkLimit(int64_t changes, const std::atomic<int64_t>* pending) {
    chunk_limit_ = changes;
    workspace_pending_ = pending;
  }
  bool chunkFull() const {
    int64_t n = static_cast<int64_t>(changes_.size());
    if (chunk_limit_ <= 0 || n < chunk_limit_) return false;
    return workspace_pending_->load(std::memory_order_relaxed) > 1 ||
           n / kAloneFactor >= chunk_limit_;
  }
  // Records in `reads` what the closure reads from its snapshot (for pipelining).
  void recordReads(ReadSet* reads) { reads_ = reads; }

 private:
  class Source;
  TableState* declared(const TableDescription& table);
  // The current version of the target of a change or deletion.
  struct Current {
    int64_t rowid = 0;    // 0 for a pending insert
    int64_t sort_id = 0;  // identifies a pending insert
    ObjectBuffer bytes;
    std::vector<Value> key;
    bool pending_insert = false;
    Versionstamp versionstamp;  // of the committed version; zero if changed here
  };
  absl::StatusOr<std::optional<Current>> find(TableState& t, int64_t rowid,
                                              const std::vector<Value>* key);
  absl::StatusOr<bool> keyTaken(TableState& t, const std::vector<Value>& key);
  void recordInsert(TableState& t, EncodedObject encoded, std::vector<Value> key,
                    std::vector<Value> index_values);
  void recordUpdate(TableState& t, const Current& current, EncodedObject encoded,
                    std::vector<Value> key, std::vector<Value> index_values);
  void recordDelete(TableState& t, const Current& current);

  Connection* snapshot_;
  std::vector<TableState*> tables_;
  std::map<TableState*, PendingTable> pending_;
  std::map<TableState*, std::unique_ptr<Source>> sources_;
  std::vector<EncodedChange> changes_;
  std::function<absl::Status(Connection&)> commit_hook_;
  int64_t bytes_ = 0;
  int64_t chunk_limit_ = 0;
  const std::atomic<int64_t>* workspace_pending_ = nullptr;
  bool aborted_ = false;
  ReadSet* reads_ = nullptr;
};

class WorkspaceImpl : public QuerySource {
 public:
  static absl::StatusOr<std::unique_ptr<WorkspaceImpl>> open(const std::string& path,
                                                             const WorkspaceOptions& options);
  ~WorkspaceImpl() override;

  // `internal_continuation`: a follow-up the runtime submits from a completion (the
  // next chunk); it skips admission, which could otherwise wait on the writer thread.
  // `caller_waits`: the caller waits for the handle next, so it may run the closure
  // itself (see Scheduler::submit).
  TransactionHandle performChanges(std::vector<const TableDescription*> tables,
                                   std::function<absl::Status(TransactionContext&)> closure,
                                   TransactionOptions options, bool internal_continuation = false,
                                   bool caller_waits = false);
  TransactionHandle performChunked(
      std::vector<const TableDescription*> tables, std::string name,
      std::function<absl::StatusOr<bool>(TransactionContext&, std::string&)> chunk,
      TransactionOptions options);
  absl::StatusOr<std::vector<RawRow>> runQuery(const TableDescription& table,
                                               const QuerySpec& spec) override;
  absl::StatusOr<int64_t> runCount(const TableDescription& table, const QuerySpec& spec) override;
  uint64_t committedSequence() override;
  absl::Status changesSince(const TableDescription& table, Versionstamp since,
                            std::vector<RawRow>* changed, std::vector<std::vector<Value>>* deleted,
                            Versionstamp* through);
  absl::StatusOr<Versionstamp> latestVersionstamp();
  absl::StatusOr<std::shared_ptr<SubscriptionCore>> newSubscription(const TableDescription& table,
                                                                    Executor* executor);
  ObserverHub& hub() { return *hub_; }
  absl::Status snapshot(const std::function<absl::Status(Workspace::Snapshot&)>& fn);
  Dictionary& dictionary();
  uint64_t lastCommitSequence() const { return writer_->lastCommitSequence(); }
  absl::Status shutdown();
  const std::string& path() const { return path_; }
  MetricsRegistry& metrics() { return metrics_; }

  // The state of `table`, creating the table in the database on first use.
  absl::StatusOr<TableState*> table(const TableDescription& table);
  Writer& writer() { return *writer_; }
  ReaderPool& readers() { return *readers_; }

 private:
  WorkspaceImpl(std::string path, WorkspaceOptions options)
      : path_(std::move(path)), options_(options) {}
  // Timing of one transaction, for metrics.
  struct Timing {
    std::string name;
    absl::Time submitted;
    absl::Time started;
    int64_t run_us = 0;
  };
  // One submitted transaction. `closure` and `handles` change (under coalesce_mu_)
  // only while the transaction is queued under its coalescing key; the worker that
  // starts it takes them out of that map first.
  struct Txn {
    std::vector<TableState*> tables;
    int priority = kDefaultLevel;  // a level of priority.h
    std::string coalescing_key;
    Timing timing;
    int attempts = 0;  // worker thread of the current run only
    std::function<absl::Status(TransactionContext&)> closure;
    std::vector<std::shared_ptr<HandleState>> handles;
  };
  void runClosure(Scheduler::Job* job, const std::shared_ptr<Txn>& txn);
  // Records metrics, frees the admission slot and completes every handle.
  void finish(Txn& txn, absl::StatusOr<TransactionResult> result, int64_t lock_hold_us);
  absl::Status admit(WhenFull when_full);
  // Pipelining (see InFlight): the requests handed to the writer, not yet complete,
  // whose tables were released early, by table.
  std::vector<std::shared_ptr<InFlight>> inFlightOn(const std::vector<TableState*>& tables);
  // Whether a closure on `tables` may hand them on early (see TableState::pipeline_pause);
  // counts a pause down.
  static bool pipelining(const std::vector<TableState*>& tables);
  void setInFlight(const std::vector<TableState*>& tables, const std::shared_ptr<InFlight>& record,
                   bool present);
  void dropCoalescing(const Txn& txn);
  // Watches for other processes' commits and publishes them to the hub.
  void watchLoop();
  absl::Status publishForeignCommits(Connection& c, int64_t* data_version);

  const std::string path_;
  const WorkspaceOptions options_;
  MetricsRegistry metrics_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<ReaderPool> readers_;    // fetches, snapshots, observers
  std::unique_ptr<ReaderPool> snapshots_;  // closures
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Dictionary> dictionary_;
  std::unique_ptr<NotificationThread> notifications_;
  std::shared_ptr<ObserverHub> hub_;

  int64_t origin_ = 0;  // this instance's mark in the change log

  absl::Mutex admission_mu_;
  // Pending transactions. Changed under admission_mu_ (its waits depend on it), read
  // without it by TransactionContext::chunkFull.
  std::atomic<int64_t> pending_{0};
  absl::Mutex coalesce_mu_;
  std::map<std::string, std::shared_ptr<Txn>> coalescing_ ABSL_GUARDED_BY(coalesce_mu_);

  absl::Mutex in_flight_mu_;
  absl::flat_hash_map<const TableState*, std::vector<std::shared_ptr<InFlight>>> in_flight_
      ABSL_GUARDED_BY(in_flight_mu_);

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<TableState>> tables_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_finished_ ABSL_GUARDED_BY(mu_) = false;
  // The last commit sequence the watcher has looked at (any process).
  uint64_t watched_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread watcher_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_WORKSPACE_IMPL_H_
