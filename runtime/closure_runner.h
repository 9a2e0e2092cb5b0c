// ClosureRunner: the path of a transaction from performChanges to its completed handle.
//
//   performChanges --admission, coalescing--> Scheduler (per-table queues)
//     --> run(): one of the run modes below, on a worker or the waiting caller
//     --> CommitRequest to the Writer --> Commit::complete --> finish(): handles
//
// Run modes, chosen per run:
//   - under the lock: a closure that conflicted with other processes twice runs inside
//     the write transaction, where it cannot conflict (runUnderLock);
//   - on the caller, alone: a caller waiting for its own transaction while the writer is
//     idle runs the closure inside a write transaction of its own (runOnIdleWriter);
//   - on a snapshot: the closure reads a snapshot of its own, outside the lock (taken at
//     its first read; a closure that reads nothing takes none and cannot conflict), and
//     hands its changes to the writer (runOnSnapshot), which then either holds its
//     tables until the commit (submitHolding) or hands them on to the next closure as
//     soon as the request has its place in the mailbox (handOn; see pipeline.h).
//
// Thread-safety: performChanges() from any thread; run() on the thread the scheduler
// gives the job; Commit's callbacks under the writer role.
#ifndef FLATSTORE_RUNTIME_CLOSURE_RUNNER_H_
#define FLATSTORE_RUNTIME_CLOSURE_RUNNER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flatstore/transaction.h"
#include "runtime/admission.h"
#include "runtime/catalog.h"
#include "runtime/commit_path.h"
#include "runtime/commit_request.h"
#include "runtime/metrics.h"
#include "runtime/pipeline.h"
#include "runtime/scheduler.h"
#include "runtime/storage_engine.h"
#include "runtime/table_registry.h"
#include "runtime/transaction_state.h"
#include "runtime/writer.h"

namespace flatstore::internal {

using Closure = std::function<absl::Status(TransactionContext&)>;

// One submitted transaction.
struct PendingTransaction {
  // Fixed at submission.
  std::vector<TableState*> tables;
  Priority priority = Priority::kDefault;
  std::string coalescing_key;
  std::string name;
  absl::Time submitted;
  // Owned by the run in progress: one run at a time, handed between the closure's thread
  // and the writer through the scheduler's and the writer's queues.
  absl::Time started;
  int64_t run_us = 0;
  int attempts = 0;
  // Changed by coalescing while the transaction is queued under its key (see
  // Coalescer); the run takes the closure, completion the handles.
  absl::Mutex mu;
  Closure closure ABSL_GUARDED_BY(mu);
  std::vector<std::shared_ptr<HandleState>> handles ABSL_GUARDED_BY(mu);
};

// Background transactions with a coalescing key that have not started yet, by key: a
// new one with the same key replaces the closure of the queued one and shares its
// result.
class Coalescer {
 public:
  // Joins `handle` and `closure` to the queued transaction with `txn`'s key and returns
  // true; or, when none is queued, registers `txn` under its key and returns false.
  bool joinOrAdd(const std::shared_ptr<PendingTransaction>& txn,
                 const std::shared_ptr<HandleState>& handle) ABSL_LOCKS_EXCLUDED(mu_);
  // The transaction starts a run: it takes no more requests. Returns its closure.
  Closure start(const std::shared_ptr<PendingTransaction>& txn) ABSL_LOCKS_EXCLUDED(mu_);
  // Unregisters `txn` if it is still registered.
  void drop(const PendingTransaction& txn) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<PendingTransaction>> queued_ ABSL_GUARDED_BY(mu_);
};

class ClosureRunner {
 public:
  ClosureRunner(TableRegistry* tables, Scheduler* scheduler, CommitPath* writer,
                ReadViews* snapshots, MetricsRegistry* metrics, int64_t max_pending,
                int max_conflict_retries)
      : tables_(tables),
        scheduler_(scheduler),
        writer_(writer),
        snapshots_(snapshots),
        metrics_(metrics),
        admission_(max_pending),
        max_conflict_retries_(max_conflict_retries) {}

  // Submits a closure on `tables`. `internal_continuation`: a follow-up the runtime
  // submits from a completion (the next chunk); it skips admission, which could
  // otherwise wait on the writer thread. `caller_waits`: the caller waits for the handle
  // next, so it may run the closure itself (see Scheduler::submit).
  TransactionHandle performChanges(std::vector<const TableDescription*> tables, Closure closure,
                                   TransactionOptions options, bool internal_continuation = false,
                                   bool caller_waits = false);
  // The transactions pending now (see Admission::pending).
  const std::atomic<int64_t>& pending() const { return admission_.pending(); }

 private:
  class Commit;
  // One run of the transaction's closure on the thread the scheduler gave `job`.
  void run(Scheduler::Job* job, const std::shared_ptr<PendingTransaction>& txn);
  // The run modes (see the top of this file).
  void runUnderLock(std::unique_ptr<CommitRequest> request);
  std::unique_ptr<CommitRequest> runOnIdleWriter(std::unique_ptr<CommitRequest> request);
  void runOnSnapshot(Scheduler::Job* job, const std::shared_ptr<PendingTransaction>& txn,
                     const Closure& closure, int attempt, std::unique_ptr<CommitRequest> request);
  void handOn(Scheduler::Job* job, const PendingTransaction& txn,
              std::unique_ptr<CommitRequest> request);
  void submitHolding(std::unique_ptr<CommitRequest> request);
  // Records metrics, counts the transaction out and completes every handle.
  void finish(PendingTransaction& txn, absl::StatusOr<TransactionResult> result,
              int64_t lock_hold_us);

  TableRegistry* const tables_;
  Scheduler* const scheduler_;
  CommitPath* const writer_;
  ReadViews* const snapshots_;
  MetricsRegistry* const metrics_;
  Admission admission_;
  Coalescer coalescer_;
  InFlightRegistry in_flight_;
  const int max_conflict_retries_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_CLOSURE_RUNNER_H_
