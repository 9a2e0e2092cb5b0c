#include "runtime/reader_pool.h"

#include <algorithm>
#include <iterator>
#include <optional>
#include <vector>

#include "absl/time/clock.h"
#include "flatstore/status.h"
#include "runtime/sqlite_read_view.h"

namespace flatstore::internal {

namespace {

absl::StatusOr<std::unique_ptr<Connection>> openReader(const std::string& path) {
  FLATSTORE_ASSIGN_OR_RETURN(auto c, Connection::open(path, /*read_only=*/true));
  // Readers rarely meet a lock in WAL mode (only while another process recovers the WAL
  // index); they wait it out rather than report SQLITE_BUSY.
  c->setBusyTimeout(absl::Seconds(30));
  return c;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ReaderPool>> ReaderPool::open(const std::string& path, int size,
                                                             MetricsRegistry* metrics, bool grows,
                                                             absl::Duration idle_close,
                                                             int64_t origin) {
  auto pool = std::make_unique<ReaderPool>();
  pool->path_ = path;
  pool->metrics_ = metrics;
  pool->grows_ = grows;
  pool->size_ = std::max(1, size);
  pool->idle_close_ = idle_close;
  pool->origin_ = origin;
  absl::MutexLock lock(&pool->mu_);
  for (int i = 0; i < pool->size_; ++i) {
    FLATSTORE_ASSIGN_OR_RETURN(auto c, openReader(path));
    pool->free_.push_back(Idle{std::move(c), absl::Now()});
    pool->open_ += 1;
  }
  return pool;
}

namespace {
// The connection this thread leased last, of whichever pool: only compared with the
// free connections of a pool, never dereferenced.
thread_local const Connection* last_leased = nullptr;
}  // namespace

ReaderPool::Lease ReaderPool::take() {
  // The thread's own last connection if it is free: its page cache holds what this
  // thread read before, as a hand-written reader's own connection would. Otherwise the
  // most recently used one.
  auto it = std::prev(free_.end());
  for (auto e = free_.begin(); e != free_.end(); ++e) {
    if (e->connection.get() == last_leased) {
      it = e;
      break;
    }
  }
  std::unique_ptr<Connection> c = std::move(it->connection);
  free_.erase(it);
  last_leased = c.get();
  return Lease(this, std::move(c));
}

ReaderPool::Lease ReaderPool::checkout() {
  {
    absl::MutexLock lock(&mu_);
    if (!free_.empty()) return take();
  }
  if (grows_) {
    // Opened outside the lock; it joins the pool when the lease ends.
    absl::StatusOr<std::unique_ptr<Connection>> c = openReader(path_);
    if (c.ok()) {
      last_leased = c->get();
      absl::MutexLock lock(&mu_);
      open_ += 1;
      return Lease(this, std::move(*c));
    }
  }
  auto available =
      +[](ReaderPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return !p->free_.empty(); };
  absl::MutexLock lock(&mu_);
  if (free_.empty() && metrics_ != nullptr) {
    absl::Time start = absl::Now();
    mu_.Await(absl::Condition(available, this));
    metrics_->recordReaderWait(absl::ToInt64Microseconds(absl::Now() - start));
  }
  mu_.Await(absl::Condition(available, this));
  return take();
}

int ReaderPool::connections() {
  absl::MutexLock lock(&mu_);
  return open_;
}

void ReaderPool::giveBack(std::unique_ptr<Connection> c) {
  std::vector<std::unique_ptr<Connection>> closing;
  {
    absl::MutexLock lock(&mu_);
    // Only a growing pool closes idle connections, so only it needs the time.
    absl::Time now = grows_ ? absl::Now() : absl::InfinitePast();
    free_.push_back(Idle{std::move(c), now});
    while (grows_ && open_ > size_ && now - free_.front().since >= idle_close_) {
      closing.push_back(std::move(free_.front().connection));
      free_.pop_front();
      open_ -= 1;
    }
  }
  // Closed outside the lock (sqlite3_close frees the connection's page cache).
}

void ReaderPool::close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

ReaderPool::Lease::~Lease() {
  if (c_ != nullptr) pool_->giveBack(std::move(c_));
}

absl::Status ReaderPool::read(const std::function<absl::Status(Connection&)>& fn) {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::FailedPreconditionError("the workspace is shut down");
  }
  Lease c = checkout();
  return inReadTransaction(*c, [&] { return fn(*c); });
}

namespace {
// A view that holds its connection's lease: ends its read transaction before the lease
// gives the connection back.
class LeasedView : public SqliteReadView {
 public:
  LeasedView(ReaderPool::Lease lease, int64_t origin)
      : SqliteReadView(&*lease, origin), lease_(std::move(lease)) {}
  ~LeasedView() override { end(); }

 private:
  ReaderPool::Lease lease_;
};
}  // namespace

absl::StatusOr<std::unique_ptr<ReadView>> ReaderPool::view(bool snapshot) {
  std::optional<Lease> lease;
  {
    // One acquire of the pool's lock in the common case: checked open, and a free
    // connection taken.
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::FailedPreconditionError("the workspace is shut down");
    if (!free_.empty()) lease.emplace(take());
  }
  if (!lease.has_value()) lease.emplace(checkout());
  auto v = std::make_unique<LeasedView>(std::move(*lease), origin_);
  if (snapshot) FLATSTORE_RETURN_IF_ERROR(v->begin());
  return std::unique_ptr<ReadView>(std::move(v));
}

absl::StatusOr<std::unique_ptr<ReadView>> ReaderPool::read() { return view(false); }

absl::StatusOr<std::unique_ptr<ReadView>> ReaderPool::snapshot() { return view(true); }

absl::Status inReadTransaction(Connection& c, const std::function<absl::Status()>& fn) {
  FLATSTORE_RETURN_IF_ERROR(c.exec("BEGIN", "read transaction"));
  absl::Status s = fn();
  absl::Status end = c.exec(s.ok() ? "COMMIT" : "ROLLBACK", "read transaction");
  if (!end.ok()) c.rollbackQuietly();
  return s.ok() ? end : s;
}

}  // namespace flatstore::internal
