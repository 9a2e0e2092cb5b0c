// CommitWatcher: notices commits made by other processes on the same file and hands
// them to the observers as CommitEvents, as the writer does for this process's own.
//
// Every `interval` it reads SQLite's data version on a read-only connection of its own;
// when it moved, it reads the change log after the last commit it looked at, skipping
// this workspace's own entries (`origin`), and publishes the changes to tables that
// have subscriptions, with the objects as they are now. It also tracks how far the file
// has come (watchedSequence), which tells subscriptions whether a result may be stale.
//
// Thread-safety: start() and stop() from the owner; watchedSequence() from any thread;
// the rest runs on the watcher's thread.
#ifndef FLATSTORE_RUNTIME_COMMIT_WATCHER_H_
#define FLATSTORE_RUNTIME_COMMIT_WATCHER_H_

#include <cstdint>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/observers.h"
#include "runtime/sqlite.h"
#include "runtime/table_registry.h"

namespace flatstore::internal {

class CommitWatcher {
 public:
  CommitWatcher(std::string path, absl::Duration interval, int64_t origin, TableRegistry* tables,
                ObserverHub* hub)
      : path_(std::move(path)), interval_(interval), origin_(origin), tables_(tables), hub_(hub) {}
  ~CommitWatcher() { stop(); }

  // Starts the thread.
  void start();
  // Stops and joins the thread. Idempotent.
  void stop() ABSL_LOCKS_EXCLUDED(mu_);
  // The last commit sequence of the file (any process) the watcher has looked at.
  uint64_t watchedSequence() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void loop();
  // Publishes what other processes committed since the last look.
  absl::Status publishForeignCommits(Connection& c, int64_t* data_version);
  void noteSequence(uint64_t sequence) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string path_;
  const absl::Duration interval_;
  const int64_t origin_;
  TableRegistry* const tables_;
  ObserverHub* const hub_;
  absl::Mutex mu_;
  uint64_t watched_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_COMMIT_WATCHER_H_
