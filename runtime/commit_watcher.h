// CommitWatcher: notices commits made by other processes on the same file and hands
// them to the observers as CommitEvents, as the writer does for this process's own.
//
// Every `interval` it reads SQLite's data version on a read-only connection of its own;
// when it moved, it reads the change log after the last commit it looked at, skipping
// this workspace's own entries (`origin`), and publishes the changes to tables that
// have subscriptions, with the objects as they are now. It also tracks how far the file
// has come (watchedSequence), which tells subscriptions whether a result may be stale.
//
// A failed attempt (opening its connection, reading the log) is counted in the metrics
// and tried again with a back-off that doubles from `interval` up to a second; nothing
// is missed meanwhile, since each look reads the log from the last commit it published.
// While attempts keep failing (kFailuresToEndSubscriptions in a row, and every one
// after), subscriptions cannot be kept exact, and the watcher ends those that exist with
// its error (ObserverHub::failAll); a subscription made later is kept while looks
// succeed again.
//
// Thread-safety: start() and stop() from the owner; watchedSequence() from any thread;
// the rest runs on the watcher's thread (named "flatstore-watch").
#ifndef FLATSTORE_RUNTIME_COMMIT_WATCHER_H_
#define FLATSTORE_RUNTIME_COMMIT_WATCHER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/change_log.h"
#include "runtime/commit_event.h"
#include "runtime/metrics.h"
#include "runtime/observers.h"
#include "runtime/sqlite.h"
#include "runtime/table_registry.h"

namespace flatstore::internal {

// The CommitEvent of another client's commit `sequence` with its change-log `records`,
// for the tables in `observed` (by id); `current` reads an object as it is now (none:
// deleted since, and a later commit says so).
absl::StatusOr<CommitEvent> foreignCommitEvent(
    uint64_t sequence, std::span<const LogRecord> records,
    const std::map<int64_t, TableState*>& observed,
    const std::function<absl::StatusOr<std::optional<RawRow>>(const TableState&, int64_t)>&
        current);

// What the workspace needs of whichever watcher its engine has (this one for SQLite,
// PgCommitWatcher in pg_workspace.h).
class ForeignCommitWatcher {
 public:
  virtual ~ForeignCommitWatcher() = default;
  // Stops and joins the watcher's thread. Idempotent.
  virtual void stop() = 0;
  // The last commit sequence (any client) the watcher has looked at.
  virtual uint64_t watchedSequence() = 0;
};

class CommitWatcher : public ForeignCommitWatcher {
 public:
  // Failed attempts in a row after which subscriptions end with the error.
  static constexpr int kFailuresToEndSubscriptions = 3;

  // Watches the commits after `start_sequence` (the last one when the workspace opened).
  CommitWatcher(std::string path, absl::Duration interval, int64_t origin, uint64_t start_sequence,
                TableRegistry* tables, ObserverHub* hub, MetricsRegistry* metrics)
      : path_(std::move(path)),
        interval_(interval),
        origin_(origin),
        tables_(tables),
        hub_(hub),
        metrics_(metrics),
        watched_sequence_(start_sequence) {}
  ~CommitWatcher() override { stop(); }

  // Starts the thread.
  void start();
  // Stops and joins the thread. Idempotent.
  void stop() override ABSL_LOCKS_EXCLUDED(mu_);
  // The last commit sequence of the file (any process) the watcher has looked at.
  uint64_t watchedSequence() override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void loop();
  // Waits `delay`; true when stop() was called meanwhile.
  bool stopRequested(absl::Duration delay) ABSL_LOCKS_EXCLUDED(mu_);
  // Publishes what other processes committed since the last look.
  absl::Status publishForeignCommits(Connection& c, int64_t* data_version);
  // Counts a failed attempt (the `failures`-th in a row) and, from the
  // kFailuresToEndSubscriptions-th on, ends the subscriptions with it.
  void noteFailure(const absl::Status& error, int failures);
  void noteSequence(uint64_t sequence) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string path_;
  const absl::Duration interval_;
  const int64_t origin_;
  TableRegistry* const tables_;
  ObserverHub* const hub_;
  MetricsRegistry* const metrics_;
  absl::Mutex mu_;
  uint64_t watched_sequence_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_COMMIT_WATCHER_H_
