#include "flatstore/workspace.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/backup.h"
#include "runtime/change_log.h"
#include "runtime/workspace_impl.h"

namespace flatstore {
namespace internal {

// ---------------------------------------------------------------------------------------
// ReaderPool

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
                                                             absl::Duration idle_close) {
  auto pool = std::make_unique<ReaderPool>();
  pool->path_ = path;
  pool->metrics_ = metrics;
  pool->grows_ = grows;
  pool->size_ = std::max(1, size);
  pool->idle_close_ = idle_close;
  absl::MutexLock lock(&pool->mu_);
  for (int i = 0; i < pool->size_; ++i) {
    FLATSTORE_ASSIGN_OR_RETURN(auto c, openReader(path));
    pool->free_.push_back(Idle{std::move(c), absl::Now()});
    pool->open_ += 1;
  }
  return pool;
}

ReaderPool::Lease ReaderPool::take() {
  std::unique_ptr<Connection> c = std::move(free_.back().connection);
  free_.pop_back();
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

ReaderPool::Lease::~Lease() {
  if (c_ != nullptr) pool_->giveBack(std::move(c_));
}

absl::Status inReadTransaction(Connection& c, const std::function<absl::Status()>& fn) {
  FLATSTORE_RETURN_IF_ERROR(c.exec("BEGIN", "read transaction"));
  absl::Status s = fn();
  absl::Status end = c.exec(s.ok() ? "COMMIT" : "ROLLBACK", "read transaction");
  if (!end.ok()) c.rollbackQuietly();
  return s.ok() ? end : s;
}

// ---------------------------------------------------------------------------------------
// Dictionary

namespace {

class DictionaryImpl : public Dictionary {
 public:
  explicit DictionaryImpl(WorkspaceImpl* ws) : ws_(ws) {}

 protected:
  absl::Status write(std::string_view key, Kind kind, std::string_view type,
                     std::span<const uint8_t> value) override {
    std::string k(key);
    std::string t(type);
    std::vector<uint8_t> v(value.begin(), value.end());
    return ws_->writer().runSync(
        [k, kind, t, v](Connection& c) -> absl::Status {
          FLATSTORE_ASSIGN_OR_RETURN(
              Statement * s,
              c.cached("INSERT INTO flatstore_kv(key, kind, type, value) VALUES(?, ?, ?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET kind = excluded.kind, type = excluded.type, "
                       "value = excluded.value",
                       "dictionary"));
          s->bindText(1, k);
          s->bindInt(2, static_cast<int64_t>(kind));
          s->bindText(3, t);
          s->bindBlob(4, v);
          return s->run(absl::StrCat("dictionary key '", k, "'"));
        },
        /*may_join=*/true);
  }

  absl::Status remove(std::string_view key) override {
    std::string k(key);
    return ws_->writer().runSync(
        [k](Connection& c) -> absl::Status {
          FLATSTORE_ASSIGN_OR_RETURN(
              Statement * s, c.cached("DELETE FROM flatstore_kv WHERE key = ?", "dictionary"));
          s->bindText(1, k);
          return s->run(absl::StrCat("dictionary key '", k, "'"));
        },
        /*may_join=*/true);
  }

  absl::StatusOr<std::optional<Record>> load(std::string_view key) override {
    ReaderPool::Lease c = ws_->readers().checkout();
    std::optional<Record> out;
    FLATSTORE_RETURN_IF_ERROR(inReadTransaction(*c, [&]() -> absl::Status {
      FLATSTORE_ASSIGN_OR_RETURN(
          Statement * s,
          c->cached("SELECT kind, type, value FROM flatstore_kv WHERE key = ?", "dictionary"));
      s->bindText(1, key);
      absl::StatusOr<bool> row = s->step("dictionary");
      if (row.ok() && *row) {
        auto blob = s->columnBlob(2);
        out = Record{static_cast<Kind>(s->columnInt(0)), std::string(s->columnText(1)),
                     std::vector<uint8_t>(blob.begin(), blob.end())};
      }
      s->reset();
      return row.status();
    }));
    return out;
  }

 private:
  WorkspaceImpl* ws_;
};

int defaultWorkers() {
  unsigned n = std::thread::hardware_concurrency();
  return static_cast<int>(std::max(2u, n));
}

// Clear errors for paths SQLite would only call "unable to open".
absl::Status checkPath(const std::string& path) {
  std::filesystem::path p(path);
  std::filesystem::path dir =
      p.parent_path().empty() ? std::filesystem::path(".") : p.parent_path();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", path, ": directory ", dir.string(), " does not exist"));
  }
  bool exists = std::filesystem::exists(p, ec);
  if (exists && std::filesystem::is_directory(p, ec)) {
    return absl::FailedPreconditionError(absl::StrCat("cannot open ", path, ": it is a directory"));
  }
  if (exists && ::access(path.c_str(), R_OK | W_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", path, ": the file is not readable and writable"));
  }
  // WAL mode needs the -wal and -shm files beside the database.
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("cannot open ", path, ": directory ",
                                                    dir.string(),
                                                    " is not writable (WAL mode needs it)"));
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------------------
// WorkspaceImpl

absl::StatusOr<std::unique_ptr<WorkspaceImpl>> WorkspaceImpl::open(
    const std::string& path, const WorkspaceOptions& options) {
  FLATSTORE_RETURN_IF_ERROR(checkPath(path));
  FLATSTORE_ASSIGN_OR_RETURN(auto writer_connection, Connection::open(path, /*read_only=*/false));
  writer_connection->setBusyTimeout(options.lock_timeout);
  FLATSTORE_RETURN_IF_ERROR(
      initializeDatabase(*writer_connection, options.synchronous == Synchronous::kFull));
  std::unique_ptr<WorkspaceImpl> ws(new WorkspaceImpl(path, options));
  // Start with an empty WAL (a crashed predecessor may have left a long one).
  sqlite3_wal_checkpoint_v2(writer_connection->db(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                            nullptr);
  FLATSTORE_ASSIGN_OR_RETURN(ws->readers_,
                             ReaderPool::open(path, options.reader_connections, &ws->metrics_));
  // Closures' snapshots: one connection per closure running at a time, opened as needed,
  // so that closures never hold up fetches (nor fetches closures).
  FLATSTORE_ASSIGN_OR_RETURN(ws->snapshots_,
                             ReaderPool::open(path, 1, /*metrics=*/nullptr, /*grows=*/true));
  WriterOptions wo;
  wo.max_group_transactions = std::clamp(options.max_group_transactions, 1, 65535);
  wo.max_group_bytes = options.max_group_bytes;
  wo.backfill_batch = std::max(1, options.backfill_batch);
  ws->origin_ = static_cast<int64_t>(std::random_device{}()) << 32 ^ std::random_device{}();
  wo.origin = ws->origin_;
  wo.log_retention = std::max<int64_t>(1, options.change_log_retention);
  wo.checkpoint_pages = std::max(1, options.checkpoint_pages);
  wo.wal_size_limit = options.wal_size_limit;
  wo.checkpoint_wait = options.checkpoint_wait;
  wo.lock_timeout = options.lock_timeout;
  ws->notifications_ = std::make_unique<NotificationThread>();
  WorkspaceImpl* raw = ws.get();
  ws->hub_ = std::make_shared<ObserverHub>(
      [raw](TableState* t, const QuerySpec& spec,
            const ObserverHub::TailQuery* tail) -> absl::StatusOr<ObserverHub::RequeryResult> {
        ReaderPool::Lease c = raw->readers().checkout();
        ObserverHub::RequeryResult out;
        FLATSTORE_RETURN_IF_ERROR(inReadTransaction(*c, [&]() -> absl::Status {
          FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(*c, "observer re-query"));
          out.sequence = head.sequence;
          if (tail != nullptr && head.sequence == tail->at) {
            FLATSTORE_ASSIGN_OR_RETURN(
                int changed, firstChangedSince(*c, tail->since, raw->origin_, {&t->id, 1}));
            out.tail = changed < 0;
          }
          FLATSTORE_ASSIGN_OR_RETURN(out.rows,
                                     executeQuery(*c, *t, out.tail ? tail->spec : spec, nullptr));
          return absl::OkStatus();
        }));
        return out;
      },
      [raw] { return raw->committedSequence(); });
  ws->hub_->start();
  ObserverHub* hub = ws->hub_.get();
  ws->writer_ = std::make_unique<Writer>(
      std::move(writer_connection), wo, [hub](CommitEvent e) { hub->publish(std::move(e)); },
      &ws->metrics_);
  ws->scheduler_ = std::make_unique<Scheduler>(options.worker_threads > 0 ? options.worker_threads
                                                                          : defaultWorkers());
  ws->dictionary_ = std::make_unique<DictionaryImpl>(ws.get());
  ws->watcher_ = std::thread([raw] { raw->watchLoop(); });
  return ws;
}

WorkspaceImpl::~WorkspaceImpl() { shutdown().IgnoreError(); }

absl::Status WorkspaceImpl::shutdown() {
  if (Scheduler::onWorkerThread() || onWriterThread()) {
    return absl::FailedPreconditionError(
        "shutdown() inside a closure or an onComplete callback would wait for itself; call "
        "it from another thread");
  }
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) {
      // Another call is shutting down: return when it is done, as it does.
      mu_.Await(absl::Condition(&shutdown_finished_));
      return absl::OkStatus();
    }
    shut_down_ = true;
  }
  // Order matters: closures still queued need the writer to commit and release them.
  if (scheduler_ != nullptr) scheduler_->stop();
  if (writer_ != nullptr) writer_->stop();
  if (watcher_.joinable()) watcher_.join();
  // Then observers: no callback runs after the workspace is gone.
  if (hub_ != nullptr) hub_->stop();
  if (notifications_ != nullptr) notifications_->stop();
  absl::MutexLock lock(&mu_);
  shutdown_finished_ = true;
  return absl::OkStatus();
}

absl::StatusOr<TableState*> WorkspaceImpl::table(const TableDescription& d) {
  std::string name(d.table_name);
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return absl::FailedPreconditionError("the workspace is shut down");
    auto it = tables_.find(name);
    if (it != tables_.end()) return it->second.get();
  }
  auto state = std::make_unique<TableState>(d);
  TableState* raw = state.get();
  FLATSTORE_RETURN_IF_ERROR(
      writer_->runSync([raw](Connection& c) { return ensureTable(c, *raw); }));
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = tables_.emplace(name, std::move(state));
  if (inserted) {
    for (size_t i = 0; i < d.indexes.size(); ++i) {
      if (!raw->indexReady(static_cast<int>(i))) {
        writer_->addBackfill(raw);
        break;
      }
    }
  }
  return it->second.get();
}

TransactionHandle WorkspaceImpl::performChanges(
    std::vector<const TableDescription*> descriptions,
    std::function<absl::Status(TransactionContext&)> closure, TransactionOptions options,
    bool internal_continuation, bool caller_waits) {
  auto txn = std::make_shared<Txn>();
  auto handle = std::make_shared<HandleState>();
  txn->handles.push_back(handle);
  txn->timing.name = std::move(options.name);
  txn->timing.submitted = absl::Now();
  txn->priority = static_cast<int>(options.priority);
  txn->closure = std::move(closure);
  for (const TableDescription* d : descriptions) {
    absl::StatusOr<TableState*> t = table(*d);
    if (!t.ok()) {
      handle->complete(t.status());
      return TransactionHandle(handle);
    }
    if (std::find(txn->tables.begin(), txn->tables.end(), *t) == txn->tables.end()) {
      txn->tables.push_back(*t);
    }
  }
  // Background work with a coalescing key replaces a queued one that has not started.
  if (options.priority == Priority::kBackground && !options.coalescing_key.empty()) {
    absl::MutexLock lock(&coalesce_mu_);
    auto it = coalescing_.find(options.coalescing_key);
    if (it != coalescing_.end()) {
      it->second->closure = std::move(txn->closure);
      it->second->handles.push_back(handle);
      return TransactionHandle(handle);
    }
    txn->coalescing_key = options.coalescing_key;
    coalescing_.emplace(options.coalescing_key, txn);
  }
  absl::Status admitted = internal_continuation ? absl::OkStatus() : admit(options.when_full);
  if (internal_continuation) {
    absl::MutexLock lock(&admission_mu_);
    pending_ += 1;
  }
  if (!admitted.ok()) {
    dropCoalescing(*txn);
    std::vector<std::shared_ptr<HandleState>> handles;
    {
      absl::MutexLock lock(&coalesce_mu_);
      handles.swap(txn->handles);  // including requests coalesced into it meanwhile
    }
    for (auto& h : handles) h->complete(admitted);
    return TransactionHandle(handle);
  }
  auto job = std::make_shared<Scheduler::Job>();
  for (TableState* t : txn->tables) job->tables.emplace_back(t->desc.table_name);
  std::sort(job->tables.begin(), job->tables.end());
  job->priority = txn->priority;
  job->run = [this, txn](Scheduler::Job* self) { runClosure(self, txn); };
  Scheduler::Job* raw_job = job.get();
  // A caller that is going to wait anyway may run the closure itself; not on the writer
  // thread, and not inside another closure, whose slot it would need twice.
  bool may_run_here = caller_waits && !onWriterThread() && !Scheduler::onWorkerThread();
  if (may_run_here) job->give_turn = [handle] { handle->giveTurn(); };
  absl::StatusOr<bool> run_here = scheduler_->submit(std::move(job), may_run_here);
  if (!run_here.ok()) {
    dropCoalescing(*txn);
    finish(*txn, run_here.status(), -1);
  } else if (*run_here) {
    scheduler_->runHere(raw_job);
  } else if (may_run_here && handle->awaitTurn()) {
    // Its turn came (unless a thread running the closure before it took it along, and
    // the transaction is complete already).
    scheduler_->takeTurn(raw_job);
    scheduler_->runHere(raw_job);
  }
  return TransactionHandle(handle);
}

absl::Status WorkspaceImpl::admit(WhenFull when_full) {
  absl::MutexLock lock(&admission_mu_);
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(admission_mu_) {
    return pending_.load() < options_.max_pending_transactions;
  };
  if (!room()) {
    if (when_full == WhenFull::kFailFast) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the writer queue is full: ", pending_.load(),
                       " transactions are pending (WorkspaceOptions::max_pending_transactions)"));
    }
    admission_mu_.Await(absl::Condition(&room));
  }
  pending_ += 1;
  return absl::OkStatus();
}

void WorkspaceImpl::dropCoalescing(const Txn& txn) {
  if (txn.coalescing_key.empty()) return;
  absl::MutexLock lock(&coalesce_mu_);
  auto it = coalescing_.find(txn.coalescing_key);
  if (it != coalescing_.end() && it->second.get() == &txn) coalescing_.erase(it);
}

namespace {

// What one run of a closure produced.
struct ClosureRun {
  absl::Status status;
  std::vector<EncodedChange> changes;
  std::function<absl::Status(Connection&)> commit_hook;
  int64_t bytes = 0;
};

// Runs `closure` over `db`, which is inside a transaction: a reader's snapshot, or the
// writer's own write transaction for a run under the write lock.
ClosureRun runOn(Connection& db, const std::vector<TableState*>& tables,
                 const std::function<absl::Status(TransactionContext&)>& closure,
                 ReadSet* reads = nullptr) {
  ClosureRun run;
  TransactionState state(&db, tables);
  state.recordReads(reads);
  TransactionContext context(&state);
  try {
    run.status = closure(context);
  } catch (const std::exception& e) {
    run.status = absl::AbortedError(absl::StrCat("the closure threw: ", e.what()));
  } catch (...) {
    run.status = absl::AbortedError("the closure threw a non-standard exception");
  }
  if (run.status.ok() && state.aborted()) run.status = absl::AbortedError("aborted by its closure");
  if (run.status.ok()) {
    run.changes = state.takeChanges();
    run.bytes = state.pendingBytes();
    run.commit_hook = state.takeCommitHook();
  }
  return run;
}

// Runs of a transaction that conflicted with other processes before it runs under the
// write lock, where it cannot conflict.
constexpr int kOptimisticRuns = 2;

}  // namespace

void WorkspaceImpl::runClosure(Scheduler::Job* job, const std::shared_ptr<Txn>& txn) {
  int attempt = txn->attempts++;
  std::function<absl::Status(TransactionContext&)> closure;
  {
    // From here on the transaction takes no more coalesced requests.
    absl::MutexLock lock(&coalesce_mu_);
    if (!txn->coalescing_key.empty()) {
      auto it = coalescing_.find(txn->coalescing_key);
      if (it != coalescing_.end() && it->second == txn) coalescing_.erase(it);
    }
    closure = txn->closure;
  }
  if (attempt == 0) txn->timing.started = absl::Now();
  auto request = std::make_unique<CommitRequest>();
  request->priority = txn->priority;
  CommitRequest* raw_request = request.get();
  request->complete = [this, job, txn, attempt,
                       raw_request](absl::StatusOr<TransactionResult> result) {
    // Another process changed a table the closure read: run it again on a fresh
    // snapshot, keeping its place in the table queues.
    if (!result.ok() && isConflict(result.status())) {
      if (attempt < options_.max_conflict_retries) {
        scheduler_->rerun(job);
        return;
      }
      result = absl::AbortedError(
          absl::StrCat(result.status().message(), " (gave up after ", attempt + 1, " runs)"));
    }
    // The commit is done, so the next closure on these tables sees it: release them
    // first, so that a caller woken by the handle finds them free and may run its next
    // closure itself (shutdown() still waits for this: the writer completes the handle
    // before it stops).
    scheduler_->release(job);
    finish(*txn, std::move(result), raw_request->lock_hold_us);
  };
  // A run inside the write transaction: its snapshot is the latest state and no other
  // process can change it before the commit.
  auto under_lock = [txn, closure](Connection& db, CommitRequest& r) -> absl::Status {
    absl::Time run_start = absl::Now();
    ClosureRun run = runOn(db, txn->tables, closure);
    txn->timing.run_us += absl::ToInt64Microseconds(absl::Now() - run_start);
    FLATSTORE_RETURN_IF_ERROR(run.status);
    r.changes = std::move(run.changes);
    r.apply = std::move(run.commit_hook);
    return absl::OkStatus();
  };
  if (attempt >= kOptimisticRuns) {
    // Other processes committed to its tables before each of its earlier runs reached
    // the write lock. This run happens on the writer thread inside the write
    // transaction: re-runs cannot starve.
    request->produce = under_lock;
    writer_->submitOrCommit(std::move(request));
    return;
  }
  if (attempt == 0 && job->on_caller) {
    // The caller runs the closure and waits for it. When the writer is idle, the
    // closure runs inside a write transaction of its own, as hand-written SQLite code
    // would: no snapshot to open, no conflict to check. Meanwhile commits of other
    // tables wait for it (for as long as a closure runs, which is meant to be short);
    // with work queued, it runs on a snapshot instead.
    request->produce = under_lock;
    request = writer_->commitIfIdle(std::move(request));
    if (request == nullptr) return;
    request->produce = nullptr;
  }
  // Runs the closure on a snapshot. Pipelining: `predecessors` are the requests on these
  // tables that gave them up before their commit. The snapshot is taken after this list,
  // so it lacks at most their changes; whether the closure read any of them is checked
  // below, and by the writer.
  std::vector<std::shared_ptr<InFlight>> predecessors;
  ClosureRun run;
  auto run_on_snapshot = [&] {
    predecessors = inFlightOn(txn->tables);
    for (const std::shared_ptr<InFlight>& p : predecessors) {
      // One of another priority waits in another queue of the mailbox, where this
      // request could overtake it: wait for its commit instead.
      if (p->priority != txn->priority) p->done.WaitForNotification();
    }
    absl::Time run_start = absl::Now();
    request->reads = ReadSet();
    ReaderPool::Lease snapshot = snapshots_->checkout();
    absl::Status read = inReadTransaction(*snapshot, [&]() -> absl::Status {
      // The commit this snapshot sees: the writer checks under the write lock that no
      // other process changed these tables since.
      FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(*snapshot, "snapshot"));
      request->snapshot_sequence = head.sequence;
      request->read_tables = txn->tables;
      run = runOn(*snapshot, txn->tables, closure, &request->reads);
      return absl::OkStatus();
    });
    if (!read.ok()) run.status = read;
    txn->timing.run_us += absl::ToInt64Microseconds(absl::Now() - run_start);
  };
  run_on_snapshot();
  bool stale = false;
  for (const std::shared_ptr<InFlight>& p : predecessors) {
    if (p->intended.touches(request->reads)) stale = true;
  }
  if (stale) {
    // The run read what a request still in flight writes. Run it again once those
    // requests completed (this job still holds its tables, so no other closure on them
    // runs meanwhile), and let the next closures on these tables wait for commits for a
    // while: they touch the same objects.
    for (TableState* t : txn->tables) t->pipeline_pause.store(16, std::memory_order_relaxed);
    for (const std::shared_ptr<InFlight>& p : predecessors) p->done.WaitForNotification();
    txn->attempts += 1;
    run_on_snapshot();
  }
  if (!run.status.ok() || (run.changes.empty() && !run.commit_hook)) {
    finish(*txn,
           run.status.ok() ? absl::StatusOr<TransactionResult>(TransactionResult{})
                           : absl::StatusOr<TransactionResult>(run.status),
           -1);
    scheduler_->release(job);
    return;
  }
  request->changes = std::move(run.changes);
  request->apply = std::move(run.commit_hook);
  request->bytes = run.bytes;
  request->predecessors = std::move(predecessors);
  request->rerun = [txn, under_lock](Connection& db, CommitRequest& r) {
    txn->attempts += 1;
    return under_lock(db, r);
  };
  // Pipelined, a conflict makes the writer run the closure again at once: only while
  // the retry bound allows another run.
  if (attempt < options_.max_conflict_retries && pipelining(txn->tables) &&
      (scheduler_->hasFollowers(job) || writer_->busy())) {
    // Closures wait for these tables, or may come while this request waits for the
    // writer: give the tables up as soon as the request has its place in the mailbox,
    // ahead of theirs, instead of after the commit. A conflict with another process is
    // then settled by the writer, which runs the closure again inside the write
    // transaction.
    auto record = std::make_shared<InFlight>();
    record->priority = txn->priority;
    record->intended = writesOf(request->changes);
    request->in_flight = record;
    request->released = true;
    setInFlight(txn->tables, record, true);
    request->complete = [this, txn, record, raw_request](absl::StatusOr<TransactionResult> result) {
      setInFlight(txn->tables, record, false);
      record->done.Notify();
      finish(*txn, std::move(result), raw_request->lock_hold_us);
    };
    writer_->submit(std::move(request));
    // The next closure on these tables runs on this thread now when it may (its caller
    // is not woken for it); the writer thread commits this request meanwhile. Otherwise
    // this thread commits what is queued when no group is being committed.
    if (!scheduler_->release(job, /*take_next=*/true)) writer_->commitQueued();
    return;
  }
  // Commits here when no group is being committed; the job may be released (and a
  // re-run started) before this returns, so nothing after this touches `job` or `txn`.
  writer_->submitOrCommit(std::move(request));
}

bool WorkspaceImpl::pipelining(const std::vector<TableState*>& tables) {
  bool paused = false;
  for (TableState* t : tables) {
    int left = t->pipeline_pause.load(std::memory_order_relaxed);
    if (left > 0) {
      t->pipeline_pause.store(left - 1, std::memory_order_relaxed);
      paused = true;
    }
  }
  return !paused;
}

std::vector<std::shared_ptr<InFlight>> WorkspaceImpl::inFlightOn(
    const std::vector<TableState*>& tables) {
  std::vector<std::shared_ptr<InFlight>> out;
  absl::MutexLock lock(&in_flight_mu_);
  for (const TableState* t : tables) {
    auto it = in_flight_.find(t);
    if (it == in_flight_.end()) continue;
    for (const auto& record : it->second) {
      if (std::find(out.begin(), out.end(), record) == out.end()) out.push_back(record);
    }
  }
  return out;
}

void WorkspaceImpl::setInFlight(const std::vector<TableState*>& tables,
                                const std::shared_ptr<InFlight>& record, bool present) {
  absl::MutexLock lock(&in_flight_mu_);
  for (const TableState* t : tables) {
    std::vector<std::shared_ptr<InFlight>>& list = in_flight_[t];
    if (present) {
      list.push_back(record);
    } else {
      std::erase(list, record);
      if (list.empty()) in_flight_.erase(t);
    }
  }
}

void WorkspaceImpl::finish(Txn& txn, absl::StatusOr<TransactionResult> result,
                           int64_t lock_hold_us) {
  absl::Time now = absl::Now();
  const Timing& timing = txn.timing;
  absl::Time started = timing.started == absl::Time() ? now : timing.started;
  metrics_.recordTransaction(
      timing.name, {absl::ToInt64Microseconds(started - timing.submitted), timing.run_us,
                    lock_hold_us, absl::ToInt64Microseconds(now - timing.submitted), !result.ok(),
                    std::max(0, txn.attempts - 1)});
  std::vector<std::shared_ptr<HandleState>> handles;
  {
    absl::MutexLock lock(&coalesce_mu_);
    handles.swap(txn.handles);
  }
  {
    absl::MutexLock lock(&admission_mu_);
    pending_ -= 1;
  }
  for (auto& h : handles) h->complete(result);
}

TransactionHandle WorkspaceImpl::performChunked(
    std::vector<const TableDescription*> tables, std::string name,
    std::function<absl::StatusOr<bool>(TransactionContext&, std::string&)> chunk,
    TransactionOptions options) {
  // Drives one chunk at a time; each chunk's commit saves the cursor with its changes.
  struct Driver {
    WorkspaceImpl* ws;
    std::vector<const TableDescription*> tables;
    std::string key;
    std::function<absl::StatusOr<bool>(TransactionContext&, std::string&)> chunk;
    TransactionOptions options;
    std::shared_ptr<HandleState> done = std::make_shared<HandleState>();
    TransactionResult total;
    // Touched by one chunk at a time: each chunk starts after the previous completed.
    std::string cursor;
    std::string next_cursor;
    bool more = false;
    bool started = false;
  };
  auto driver = std::make_shared<Driver>();
  driver->ws = this;
  driver->tables = std::move(tables);
  driver->key = "flatstore.chunked." + name;
  driver->chunk = std::move(chunk);
  driver->options = std::move(options);
  if (driver->options.name.empty()) driver->options.name = name;
  absl::StatusOr<std::optional<std::string>> saved = dictionary_->getString(driver->key);
  if (!saved.ok()) {
    driver->done->complete(saved.status());
    return TransactionHandle(driver->done);
  }
  if (saved->has_value()) driver->cursor = **saved;

  auto step = std::make_shared<std::function<void()>>();
  *step = [driver, step]() {
    TransactionHandle h = driver->ws->performChanges(
        driver->tables,
        [driver](TransactionContext& txn) -> absl::Status {
          driver->next_cursor = driver->cursor;
          // How many changes fill the chunk's budget of write-lock time at the writer's
          // recent pace (at least one).
          int64_t budget = absl::ToInt64Nanoseconds(driver->options.chunk_budget);
          txn.state()->setChunkLimit(
              std::max<int64_t>(1, budget / driver->ws->writer().nanosPerChange()),
              &driver->ws->pending_);
          FLATSTORE_ASSIGN_OR_RETURN(driver->more, driver->chunk(txn, driver->next_cursor));
          std::string key = driver->key;
          std::string cursor = driver->next_cursor;
          bool more = driver->more;
          txn.state()->setCommitHook([key, cursor, more](Connection& c) -> absl::Status {
            FLATSTORE_ASSIGN_OR_RETURN(
                Statement s,
                c.prepare(more ? "INSERT INTO flatstore_kv(key, kind, type, value) VALUES(?, 1, "
                                 "'', ?) ON CONFLICT(key) DO UPDATE SET kind = 1, value = "
                                 "excluded.value"
                               : "DELETE FROM flatstore_kv WHERE key = ?",
                          "chunk cursor"));
            s.bindText(1, key);
            if (more)
              s.bindBlob(2, {reinterpret_cast<const uint8_t*>(cursor.data()), cursor.size()});
            return s.run("chunk cursor");
          });
          return absl::OkStatus();
        },
        driver->options, /*internal_continuation=*/driver->started);
    driver->started = true;
    h.onComplete([driver, step](const absl::StatusOr<TransactionResult>& r) {
      if (!r.ok()) {
        driver->done->complete(r.status());
        *step = nullptr;  // breaks the driver <-> step cycle
        return;
      }
      driver->total.inserted += r->inserted;
      driver->total.updated += r->updated;
      driver->total.deleted += r->deleted;
      if (r->versionstamp != Versionstamp()) driver->total.versionstamp = r->versionstamp;
      driver->cursor = driver->next_cursor;
      if (driver->more) {
        (*step)();
      } else {
        driver->done->complete(driver->total);
        *step = nullptr;  // breaks the driver <-> step cycle
      }
    });
  };
  (*step)();
  return TransactionHandle(driver->done);
}

absl::StatusOr<std::vector<RawRow>> WorkspaceImpl::runQuery(const TableDescription& d,
                                                            const QuerySpec& spec) {
  FLATSTORE_ASSIGN_OR_RETURN(TableState * t, table(d));
  ReaderPool::Lease c = readers_->checkout();
  // A lookup by key is one statement: SQLite's implicit read transaction suffices.
  if (spec.key.has_value() || spec.rowid.has_value()) return executeQuery(*c, *t, spec, nullptr);
  std::vector<RawRow> rows;
  FLATSTORE_RETURN_IF_ERROR(inReadTransaction(*c, [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(rows, executeQuery(*c, *t, spec, nullptr));
    return absl::OkStatus();
  }));
  return rows;
}

absl::StatusOr<int64_t> WorkspaceImpl::runCount(const TableDescription& d, const QuerySpec& spec) {
  FLATSTORE_ASSIGN_OR_RETURN(TableState * t, table(d));
  ReaderPool::Lease c = readers_->checkout();
  int64_t n = 0;
  FLATSTORE_RETURN_IF_ERROR(inReadTransaction(*c, [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(n, executeCount(*c, *t, spec, nullptr));
    return absl::OkStatus();
  }));
  return n;
}

absl::Status WorkspaceImpl::snapshot(const std::function<absl::Status(Workspace::Snapshot&)>& fn) {
  // A source that runs every query on one held read transaction.
  class HeldSource : public QuerySource {
   public:
    HeldSource(WorkspaceImpl* ws, Connection* c) : ws_(ws), c_(c) {}
    absl::StatusOr<std::vector<RawRow>> runQuery(const TableDescription& d,
                                                 const QuerySpec& spec) override {
      FLATSTORE_ASSIGN_OR_RETURN(TableState * t, ws_->table(d));
      return executeQuery(*c_, *t, spec, nullptr);
    }
    absl::StatusOr<int64_t> runCount(const TableDescription& d, const QuerySpec& spec) override {
      FLATSTORE_ASSIGN_OR_RETURN(TableState * t, ws_->table(d));
      return executeCount(*c_, *t, spec, nullptr);
    }

   private:
    WorkspaceImpl* ws_;
    Connection* c_;
  };
  ReaderPool::Lease c = readers_->checkout();
  return inReadTransaction(*c, [&]() -> absl::Status {
    // Pin the snapshot now: SQLite starts it at the first read.
    FLATSTORE_RETURN_IF_ERROR(c->exec("SELECT 1 FROM flatstore_meta LIMIT 1", "snapshot"));
    HeldSource source(this, &*c);
    Workspace::Snapshot snap(&source);
    return fn(snap);
  });
}

Dictionary& WorkspaceImpl::dictionary() { return *dictionary_; }

uint64_t WorkspaceImpl::committedSequence() {
  uint64_t own = writer_->lastCommitSequence();
  absl::MutexLock lock(&mu_);
  return std::max(own, watched_sequence_);
}

void WorkspaceImpl::watchLoop() {
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::open(path_, /*read_only=*/true);
  if (!c.ok()) return;
  (*c)->setBusyTimeout(absl::Seconds(5));
  int64_t data_version = -1;
  {
    // Start after the last commit that exists now.
    absl::Status s = inReadTransaction(**c, [&]() -> absl::Status {
      FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(**c, "watcher"));
      absl::MutexLock lock(&mu_);
      watched_sequence_ = head.sequence;
      return absl::OkStatus();
    });
    (void)s;
  }
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return shut_down_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), options_.watch_interval)) return;
    }
    // A failed look is retried at the next interval.
    publishForeignCommits(**c, &data_version).IgnoreError();
  }
}

absl::Status WorkspaceImpl::publishForeignCommits(Connection& c, int64_t* data_version) {
  // data_version changes when any other connection commits, this process's writer too.
  FLATSTORE_ASSIGN_OR_RETURN(Statement * dv, c.cached("PRAGMA data_version", "watcher"));
  absl::StatusOr<bool> row = dv->step("watcher");
  int64_t now = row.ok() && *row ? dv->columnInt(0) : *data_version;
  dv->reset();
  FLATSTORE_RETURN_IF_ERROR(row.status());
  if (now == *data_version) return absl::OkStatus();
  *data_version = now;
  uint64_t after;
  std::map<int64_t, TableState*> observed;
  {
    absl::MutexLock lock(&mu_);
    after = watched_sequence_;
    for (auto& [name, t] : tables_) {
      if (t->subscriptions.load() > 0) observed[t->id] = t.get();
    }
  }
  if (observed.empty()) {
    // Nobody to tell: only note how far the file has come.
    FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(c, "watcher"));
    absl::MutexLock lock(&mu_);
    watched_sequence_ = std::max(watched_sequence_, head.sequence);
    return absl::OkStatus();
  }
  std::vector<CommitEvent> events;
  uint64_t last = after;
  FLATSTORE_RETURN_IF_ERROR(inReadTransaction(c, [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(c, "watcher"));
    last = std::max(last, head.sequence);
    FLATSTORE_ASSIGN_OR_RETURN(std::vector<LogEntry> entries, readLogAfter(c, after, origin_));
    for (LogEntry& e : entries) {
      CommitEvent event;
      event.sequence = e.sequence;
      std::map<TableState*, size_t> slot;
      for (const LogRecord& r : e.records) {
        auto t = observed.find(r.table_id);
        if (t == observed.end()) continue;
        ChangedObject changed;
        changed.rowid = r.rowid;
        changed.versionstamp = Versionstamp(e.sequence, r.position);
        if (r.deleted) {
          changed.deleted = true;
        } else {
          // The object as it is now; a later commit in this batch may have replaced it.
          FLATSTORE_ASSIGN_OR_RETURN(auto current, readRowByRowid(c, *t->second, r.rowid));
          if (!current.has_value()) continue;  // deleted since: a later entry says so
          changed.bytes = std::move(current->bytes);
          changed.versionstamp = current->versionstamp;
        }
        auto [it, inserted] = slot.emplace(t->second, event.tables.size());
        if (inserted) event.tables.emplace_back(t->second, std::vector<ChangedObject>());
        event.tables[it->second].second.push_back(std::move(changed));
      }
      if (!event.tables.empty()) events.push_back(std::move(event));
    }
    return absl::OkStatus();
  }));
  for (CommitEvent& e : events) hub_->publish(std::move(e));
  absl::MutexLock lock(&mu_);
  watched_sequence_ = std::max(watched_sequence_, last);
  return absl::OkStatus();
}

absl::StatusOr<Versionstamp> WorkspaceImpl::latestVersionstamp() {
  ReaderPool::Lease c = readers_->checkout();
  Versionstamp vs;
  FLATSTORE_RETURN_IF_ERROR(inReadTransaction(*c, [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(*c, "latest versionstamp"));
    vs = head.last_change;
    return absl::OkStatus();
  }));
  return vs;
}

absl::Status WorkspaceImpl::changesSince(const TableDescription& d, Versionstamp since,
                                         std::vector<RawRow>* changed,
                                         std::vector<std::vector<Value>>* deleted,
                                         Versionstamp* through) {
  FLATSTORE_ASSIGN_OR_RETURN(TableState * t, table(d));
  ReaderPool::Lease c = readers_->checkout();
  return inReadTransaction(*c, [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(uint64_t pruned, logPrunedThrough(*c));
    if (pruned > 0 && since.commitSequence() <= pruned) {
      return absl::OutOfRangeError(absl::StrCat(
          "changes of table ", av(d.table_name), " since versionstamp ", since.toString(),
          " are no longer in the change log (it keeps commits after ", pruned,
          "); fetch the table instead"));
    }
    uint64_t from = since.commitSequence() > 0 ? since.commitSequence() - 1 : 0;
    FLATSTORE_ASSIGN_OR_RETURN(std::vector<LogEntry> entries, readLogAfter(*c, from));
    // The last change of each object since `since`.
    std::map<int64_t, const LogRecord*> last;
    for (const LogEntry& e : entries) {
      for (const LogRecord& r : e.records) {
        if (r.table_id != t->id || Versionstamp(e.sequence, r.position) <= since) continue;
        last[r.rowid] = &r;
      }
    }
    for (const auto& [rowid, r] : last) {
      if (r->deleted) {
        deleted->push_back(r->key.empty() ? std::vector<Value>{Value::integer(rowid)} : r->key);
        continue;
      }
      FLATSTORE_ASSIGN_OR_RETURN(auto row, readRowByRowid(*c, *t, rowid));
      if (row.has_value()) changed->push_back(std::move(*row));
    }
    FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(*c, "changes since"));
    *through = head.last_change;
    return absl::OkStatus();
  });
}

absl::StatusOr<std::shared_ptr<SubscriptionCore>> WorkspaceImpl::newSubscription(
    const TableDescription& d, Executor* executor) {
  FLATSTORE_ASSIGN_OR_RETURN(TableState * t, table(d));
  auto core = std::make_shared<SubscriptionCore>();
  core->table = t;
  core->executor = executor != nullptr ? executor : notifications_.get();
  core->hub = hub_;
  return core;
}

}  // namespace internal

// ---------------------------------------------------------------------------------------
// Workspace

absl::StatusOr<std::unique_ptr<Workspace>> Workspace::open(const std::string& path,
                                                           WorkspaceOptions options) {
  if (options.disable_mutex_deadlock_detection) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  FLATSTORE_ASSIGN_OR_RETURN(auto impl, internal::WorkspaceImpl::open(path, options));
  return std::unique_ptr<Workspace>(new Workspace(std::move(impl)));
}

Workspace::Workspace(std::unique_ptr<internal::WorkspaceImpl> impl) : impl_(std::move(impl)) {}
Workspace::~Workspace() = default;

TransactionHandle Workspace::performChangesErased(
    std::vector<const TableDescription*> tables,
    std::function<absl::Status(TransactionContext&)> closure, TransactionOptions options,
    bool caller_waits) {
  return impl_->performChanges(std::move(tables), std::move(closure), std::move(options),
                               /*internal_continuation=*/false, caller_waits);
}

internal::QuerySource* Workspace::querySource() { return impl_.get(); }

TransactionHandle Workspace::performChunkedErased(
    std::vector<const TableDescription*> tables, std::string name,
    std::function<absl::StatusOr<bool>(TransactionContext&, std::string&)> chunk,
    TransactionOptions options) {
  return impl_->performChunked(std::move(tables), std::move(name), std::move(chunk),
                               std::move(options));
}

absl::Status Workspace::snapshot(const std::function<absl::Status(Snapshot&)>& fn) {
  return impl_->snapshot(fn);
}

Dictionary& Workspace::dictionary() { return impl_->dictionary(); }
void Workspace::awaitIndexes() { impl_->writer().awaitBackfills(); }
absl::StatusOr<Versionstamp> Workspace::latestVersionstamp() { return impl_->latestVersionstamp(); }
absl::Status Workspace::changesSinceErased(const TableDescription& table, Versionstamp since,
                                           std::vector<internal::RawRow>* changed,
                                           std::vector<std::vector<Value>>* deleted,
                                           Versionstamp* through) {
  return impl_->changesSince(table, since, changed, deleted, through);
}
void Workspace::awaitObservers() { impl_->hub().drain(); }
Metrics Workspace::metrics() const { return impl_->metrics().snapshot(); }

absl::StatusOr<SubscriptionToken> Workspace::subscribeErased(
    const TableDescription& table, const internal::QuerySpec& spec, EntityFactory factory,
    std::vector<std::shared_ptr<const EntityBase>> initial, uint64_t seen,
    std::function<void(const std::vector<std::shared_ptr<const EntityBase>>&, const Changeset&)>
        deliver,
    Executor* executor) {
  FLATSTORE_ASSIGN_OR_RETURN(auto core, impl_->newSubscription(table, executor));
  core->spec = spec;
  core->factory = factory;
  core->result_callback = std::move(deliver);
  impl_->hub().add(core, std::move(initial), seen);
  return SubscriptionToken(std::move(core));
}

absl::StatusOr<SubscriptionToken> Workspace::subscribeObjectErased(
    const TableDescription& table, std::shared_ptr<const EntityBase> object, EntityFactory factory,
    std::function<void(const std::shared_ptr<const EntityBase>&)> deliver, Executor* executor) {
  if (object == nullptr) return absl::InvalidArgumentError("subscribe: the object is null");
  if (object->rowid() == 0) {
    return absl::InvalidArgumentError("subscribe: the object was not read from the database");
  }
  FLATSTORE_ASSIGN_OR_RETURN(auto core, impl_->newSubscription(table, executor));
  core->object_mode = true;
  core->object_rowid = object->rowid();
  core->factory = factory;
  core->object_callback = std::move(deliver);
  impl_->hub().add(core, {std::move(object)}, 0);
  return SubscriptionToken(std::move(core));
}
uint64_t Workspace::lastCommitSequence() const { return impl_->lastCommitSequence(); }
absl::Status Workspace::shutdown() { return impl_->shutdown(); }
const std::string& Workspace::path() const { return impl_->path(); }
absl::Status Workspace::backup(const std::string& dest) {
  return internal::backupDatabase(path(), dest);
}

// ---------------------------------------------------------------------------------------
// Dictionary (public, non-virtual parts)

namespace {
const char* kindName(Dictionary::Kind k) {
  switch (k) {
    case Dictionary::Kind::kString:
      return "a string";
    case Dictionary::Kind::kInteger:
      return "an integer";
    case Dictionary::Kind::kDouble:
      return "a double";
    case Dictionary::Kind::kBytes:
      return "bytes";
    case Dictionary::Kind::kObject:
      return "an object";
  }
  return "an unknown kind";
}
}  // namespace

absl::Status Dictionary::setString(std::string_view key, std::string_view value) {
  return write(key, Kind::kString, {},
               {reinterpret_cast<const uint8_t*>(value.data()), value.size()});
}
absl::Status Dictionary::setInteger(std::string_view key, int64_t value) {
  return write(key, Kind::kInteger, {}, {reinterpret_cast<const uint8_t*>(&value), sizeof value});
}
absl::Status Dictionary::setDouble(std::string_view key, double value) {
  return write(key, Kind::kDouble, {}, {reinterpret_cast<const uint8_t*>(&value), sizeof value});
}
absl::Status Dictionary::setBytes(std::string_view key, std::span<const uint8_t> value) {
  return write(key, Kind::kBytes, {}, value);
}
absl::Status Dictionary::erase(std::string_view key) { return remove(key); }

absl::StatusOr<std::optional<std::vector<uint8_t>>> Dictionary::read(std::string_view key,
                                                                     Kind kind,
                                                                     std::string_view type) {
  FLATSTORE_ASSIGN_OR_RETURN(std::optional<Record> record, load(key));
  if (!record.has_value()) return std::optional<std::vector<uint8_t>>();
  if (record->kind != kind || (kind == Kind::kObject && record->type != type)) {
    return absl::FailedPreconditionError(
        absl::StrCat("dictionary key '", internal::av(key), "' holds ", kindName(record->kind),
                     record->kind == Kind::kObject ? absl::StrCat(" of type ", record->type) : "",
                     ", not ", kindName(kind),
                     kind == Kind::kObject ? absl::StrCat(" of type ", internal::av(type)) : ""));
  }
  return std::optional<std::vector<uint8_t>>(std::move(record->value));
}

absl::StatusOr<std::optional<std::string>> Dictionary::getString(std::string_view key) {
  FLATSTORE_ASSIGN_OR_RETURN(auto v, read(key, Kind::kString));
  if (!v.has_value()) return std::optional<std::string>();
  return std::optional<std::string>(std::string(v->begin(), v->end()));
}

template <class N>
static absl::StatusOr<std::optional<N>> fixedWidth(std::string_view key,
                                                   std::optional<std::vector<uint8_t>> v) {
  if (!v.has_value()) return std::optional<N>();
  if (v->size() != sizeof(N)) {
    return absl::DataLossError(absl::StrCat("dictionary key '", internal::av(key), "' holds ",
                                            v->size(), " bytes, not ", sizeof(N)));
  }
  N n;
  std::memcpy(&n, v->data(), sizeof n);
  return std::optional<N>(n);
}

absl::StatusOr<std::optional<int64_t>> Dictionary::getInteger(std::string_view key) {
  FLATSTORE_ASSIGN_OR_RETURN(auto v, read(key, Kind::kInteger));
  return fixedWidth<int64_t>(key, std::move(v));
}
absl::StatusOr<std::optional<double>> Dictionary::getDouble(std::string_view key) {
  FLATSTORE_ASSIGN_OR_RETURN(auto v, read(key, Kind::kDouble));
  return fixedWidth<double>(key, std::move(v));
}
absl::StatusOr<std::optional<std::vector<uint8_t>>> Dictionary::getBytes(std::string_view key) {
  return read(key, Kind::kBytes);
}

}  // namespace flatstore
