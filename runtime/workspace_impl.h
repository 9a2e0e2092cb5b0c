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
#include "runtime/pg_engine.h"
#include "runtime/pg_workspace.h"
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
  CommitPath& writer() { return *writer_; }
  // Whether the workspace is on a PostgreSQL server rather than a SQLite file.
  bool onPostgres() const { return engine_ != nullptr; }
  ClosureRunner& runner() { return *runner_; }
  Reads& reads() { return *reads_; }
  ObserverHub& hub() { return *hub_; }
  Dictionary& dictionary() { return *dictionary_; }

 private:
  WorkspaceImpl(std::string path, WorkspaceOptions options)
      : path_(std::move(path)), options_(options) {}
  // The workspace on the PostgreSQL server `uri` names.
  static absl::StatusOr<std::unique_ptr<WorkspaceImpl>> openPostgres(
      const std::string& uri, const WorkspaceOptions& options);
  // The notification thread and the observers' hub, whose re-queries go through Reads.
  void startHub();
  // The parts above the storage, the same on both engines (registry, reads, scheduler,
  // closures, dictionary), once writer_ and the views exist.
  void wireParts(TableRegistry::Register register_table);

  const std::string path_;
  const WorkspaceOptions options_;
  MetricsRegistry metrics_;
  // PostgreSQL: the storage engine, which every part below uses (destroyed last).
  std::unique_ptr<PgEngine> engine_;
  // In the order they are opened; shutdown() stops them in its own order.
  // SQLite: the reader pools (fetches, snapshots, observers; closures).
  std::unique_ptr<ReaderPool> readers_;
  std::unique_ptr<ReaderPool> snapshots_;
  // PostgreSQL: the engine's views, closed at shutdown, and the count of published
  // commits (PgSequence).
  std::unique_ptr<ClosableViews> engine_views_;
  PgSequence pg_sequence_;
  // Where reads and closures' snapshots get their views: the pools, or the engine's.
  ReadViews* read_views_ = nullptr;
  ReadViews* snapshot_views_ = nullptr;
  std::unique_ptr<NotificationThread> notifications_;
  std::shared_ptr<ObserverHub> hub_;
  std::unique_ptr<CommitPath> writer_;  // Writer (SQLite) or PgWriter
  std::unique_ptr<TableRegistry> tables_;
  std::unique_ptr<Reads> reads_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ClosureRunner> runner_;
  std::unique_ptr<Dictionary> dictionary_;
  std::unique_ptr<ForeignCommitWatcher> watcher_;

  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status shutdown_status_ ABSL_GUARDED_BY(mu_);  // what the first call returned
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_WORKSPACE_IMPL_H_
