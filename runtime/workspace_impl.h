// WorkspaceImpl: the parts of an open workspace, and how they are wired together,
// opened and shut down. Each part lives in a file of its own:
//
//   callers --performChanges--> ClosureRunner (closure_runner.h): admission,
//     coalescing, Scheduler (scheduler.h: per-table queues, workers), run modes
//   closure --reads--> a snapshot from ReaderPool (reader_pool.h) + its TransactionState
//     (transaction_state.h); pipelining in pipeline.h
//   its CommitRequest (commit_request.h) --> Writer (writer.h): group commit, back-fill;
//     Checkpointer (checkpointer.h): the WAL policy
//   commits --CommitEvent (commit_event.h)--> ObserverHub (observers.h) --> executors;
//     other processes' commits: CommitWatcher (commit_watcher.h)
//   callers --fetch, snapshot, changesSince--> Reads (reads.h) --> ReaderPool
//   tables in use: TableRegistry (table_registry.h); dictionary: dictionary.h; chunked
//   work: chunked.h; metrics: metrics.h
//
// Thread-safety: all public methods are thread-safe.
#ifndef FLATSTORE_RUNTIME_WORKSPACE_IMPL_H_
#define FLATSTORE_RUNTIME_WORKSPACE_IMPL_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/dictionary.h"
#include "flatstore/workspace.h"
#include "runtime/closure_runner.h"
#include "runtime/commit_watcher.h"
#include "runtime/metrics.h"
#include "runtime/observers.h"
#include "runtime/reader_pool.h"
#include "runtime/reads.h"
#include "runtime/scheduler.h"
#include "runtime/table_registry.h"
#include "runtime/writer.h"

namespace flatstore::internal {

class WorkspaceImpl {
 public:
  static absl::StatusOr<std::unique_ptr<WorkspaceImpl>> open(const std::string& path,
                                                             const WorkspaceOptions& options);
  ~WorkspaceImpl();

  // Stops taking transactions, lets the submitted ones commit, stops every thread and
  // closes the connections. See Workspace::shutdown.
  absl::Status shutdown() ABSL_LOCKS_EXCLUDED(mu_);
  // The last commit sequence this workspace made or saw (any process).
  uint64_t committedSequence();
  // A subscription on `table`, delivered on `executor` (default: the notification
  // thread).
  absl::StatusOr<std::shared_ptr<SubscriptionCore>> newSubscription(const TableDescription& table,
                                                                    Executor* executor);

  const std::string& path() const { return path_; }
  MetricsRegistry& metrics() { return metrics_; }
  Writer& writer() { return *writer_; }
  ClosureRunner& runner() { return *runner_; }
  Reads& reads() { return *reads_; }
  ObserverHub& hub() { return *hub_; }
  Dictionary& dictionary() { return *dictionary_; }

 private:
  WorkspaceImpl(std::string path, WorkspaceOptions options)
      : path_(std::move(path)), options_(options) {}

  const std::string path_;
  const WorkspaceOptions options_;
  MetricsRegistry metrics_;
  // In the order they are opened; shutdown() stops them in its own order.
  std::unique_ptr<ReaderPool> readers_;    // fetches, snapshots, observers
  std::unique_ptr<ReaderPool> snapshots_;  // closures
  std::unique_ptr<NotificationThread> notifications_;
  std::shared_ptr<ObserverHub> hub_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<TableRegistry> tables_;
  std::unique_ptr<Reads> reads_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ClosureRunner> runner_;
  std::unique_ptr<Dictionary> dictionary_;
  std::unique_ptr<CommitWatcher> watcher_;

  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status shutdown_status_ ABSL_GUARDED_BY(mu_);  // what the first call returned
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_WORKSPACE_IMPL_H_
