// ReaderPool: read-only connections for queries and closures' snapshots, and the SQLite
// engine's ReadViews (storage_engine.h): a view is a lease of one connection.
//
// The writer never borrows them, so a backlog of commits can never starve reads. A
// fetch checks a connection out, reads (read(): one statement in SQLite's implicit read
// transaction; snapshot(): a read transaction for several) and gives it back. A pool that `grows`
// opens another connection when none is free instead of waiting (closures' snapshots: the scheduler
// bounds their number), and closes the extra ones again once they sat idle.
//
// Thread-safety: all methods are thread-safe; a Lease is used by one thread.
#ifndef FLATSTORE_RUNTIME_READER_POOL_H_
#define FLATSTORE_RUNTIME_READER_POOL_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/metrics.h"
#include "runtime/sqlite.h"
#include "runtime/storage_engine.h"

namespace flatstore::internal {

class ReaderPool : public ReadViews {
 public:
  // `size` connections, opened now. A pool that `grows` opens another connection when
  // none is free instead of waiting, and closes connections beyond `size` once they
  // were idle for `idle_close` (checked whenever a lease ends): a burst of closures
  // leaves no lasting crowd of connections, each with its own page cache. Waits for a
  // free connection are recorded in `metrics` (may be null). `origin` marks this
  // workspace's commits in the change log (ReadView::changedSince).
  static absl::StatusOr<std::unique_ptr<ReaderPool>> open(
      const std::string& path, int size, MetricsRegistry* metrics, bool grows = false,
      absl::Duration idle_close = absl::Seconds(30), int64_t origin = 0);

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
  // Checks a connection out and runs `fn` on it inside one read transaction.
  // FailedPrecondition after close().
  absl::Status read(const std::function<absl::Status(Connection&)>& fn);
  // ReadViews: a leased connection, in SQLite's implicit read transaction (read()) or
  // in one of its own (snapshot()). FailedPrecondition after close().
  absl::StatusOr<std::unique_ptr<ReadView>> read() override;
  absl::StatusOr<std::unique_ptr<ReadView>> snapshot() override;
  bool snapshotsBatchKeyLookups() const override { return false; }
  // Refuses every later read(): the workspace is shut down. Reads under way finish.
  void close() ABSL_LOCKS_EXCLUDED(mu_);
  // Connections open now, leased or free.
  int connections();

 private:
  struct Idle {
    std::unique_ptr<Connection> connection;
    absl::Time since;
  };
  Lease take() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A view on a leased connection; FailedPrecondition after close().
  absl::StatusOr<std::unique_ptr<ReadView>> view(bool snapshot) ABSL_LOCKS_EXCLUDED(mu_);
  void giveBack(std::unique_ptr<Connection> c) ABSL_LOCKS_EXCLUDED(mu_);
  std::string path_;
  MetricsRegistry* metrics_ = nullptr;
  bool grows_ = false;
  int size_ = 1;
  absl::Duration idle_close_;
  int64_t origin_ = 0;
  absl::Mutex mu_;
  // Last returned at the back, so those that sat idle longest are at the front. A lease
  // takes the connection its thread leased last when that one is free (its page cache
  // holds what the thread read), else the most recently used one.
  std::deque<Idle> free_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// Runs fn inside one read transaction on `c`, always ending it.
absl::Status inReadTransaction(Connection& c, const std::function<absl::Status()>& fn);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_READER_POOL_H_
