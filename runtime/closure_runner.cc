#include "runtime/closure_runner.h"

#include <algorithm>
#include <exception>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "flatstore/status.h"
#include "runtime/change_log.h"

namespace flatstore::internal {
namespace {

// What one run of a closure produced.
struct ClosureRun {
  absl::Status status;
  std::vector<EncodedChange> changes;
  std::function<absl::Status(EntryWriter&)> commit_hook;
  int64_t bytes = 0;
  bool keys_unchecked = false;  // see CommitRequest::keys_unchecked
};

// A closure's snapshot, opened at the closure's first read. A closure that reads
// nothing (one that only creates objects whose keys the commit checks) opens no read
// transaction and has nothing another commit could invalidate. Should the opening fail,
// every read returns that error, and so does the run (`failure()`), whatever the
// closure made of it.
class LazySnapshot final : public ReadView {
 public:
  explicit LazySnapshot(ReadViews* views) : views_(views) {}

  bool opened() const { return view_ != nullptr; }
  const absl::Status& failure() const { return failure_; }
  ReadView* view() { return view_.get(); }

  absl::StatusOr<ReadMark> mark() override {
    FLATSTORE_RETURN_IF_ERROR(open());
    return view_->mark();
  }
  absl::StatusOr<int> changedSince(std::span<const TableState* const> tables,
                                   const ReadMark& since) override {
    FLATSTORE_RETURN_IF_ERROR(open());
    return view_->changedSince(tables, since);
  }
  absl::StatusOr<std::optional<RawRow>> rowByRowid(const TableState& table,
                                                   int64_t rowid) override {
    FLATSTORE_RETURN_IF_ERROR(open());
    return view_->rowByRowid(table, rowid);
  }
  absl::StatusOr<std::optional<RawRow>> rowByKey(const TableState& table,
                                                 const std::vector<Value>& key) override {
    FLATSTORE_RETURN_IF_ERROR(open());
    return view_->rowByKey(table, key);
  }
  bool batchesKeyLookups() const override { return views_->snapshotsBatchKeyLookups(); }
  absl::StatusOr<bool> anyKeyExists(const TableState& table,
                                    std::span<const std::vector<Value>> keys) override {
    FLATSTORE_RETURN_IF_ERROR(open());
    return view_->anyKeyExists(table, keys);
  }
  absl::StatusOr<std::vector<RawRow>> query(const TableState& table, const QuerySpec& spec,
                                            const PendingTable* pending) override {
    FLATSTORE_RETURN_IF_ERROR(open());
    return view_->query(table, spec, pending);
  }
  absl::StatusOr<int64_t> count(const TableState& table, const QuerySpec& spec,
                                const PendingTable* pending) override {
    FLATSTORE_RETURN_IF_ERROR(open());
    return view_->count(table, spec, pending);
  }
  absl::StatusOr<LogChanges> changesSince(const TableState& table, Versionstamp since) override {
    FLATSTORE_RETURN_IF_ERROR(open());
    return view_->changesSince(table, since);
  }
  absl::StatusOr<Versionstamp> latestVersionstamp() override {
    FLATSTORE_RETURN_IF_ERROR(open());
    return view_->latestVersionstamp();
  }
  absl::StatusOr<std::optional<Dictionary::Record>> entry(std::string_view key) override {
    FLATSTORE_RETURN_IF_ERROR(open());
    return view_->entry(key);
  }

 private:
  absl::Status open() {
    if (view_ == nullptr && failure_.ok()) {
      absl::StatusOr<std::unique_ptr<ReadView>> view = views_->snapshot();
      if (view.ok()) {
        view_ = *std::move(view);
      } else {
        failure_ = view.status();
      }
    }
    return failure_;
  }

  ReadViews* const views_;
  std::unique_ptr<ReadView> view_;
  absl::Status failure_;
};

// Runs `closure` over `view`: a reader's snapshot, or the writer's own write
// transaction for a run under the write lock. Records what the closure reads in `reads`
// when given. `keys_at_apply`: creations take their keys as free, and the commit path
// refuses a taken one (TransactionState::leaveKeyChecksToApply).
ClosureRun runOn(ReadView& view, const std::vector<TableState*>& tables, const Closure& closure,
                 bool keys_at_apply, ReadSet* reads = nullptr) {
  ClosureRun run;
  // Creations may take their keys as free and have them checked in one batch at the end
  // (TransactionState::deferKeyChecks) or when applied; if one checked at the end was
  // taken, the run is done again, on the same snapshot, asking key by key.
  for (bool defer : {true, false}) {
    if (!defer && !view.batchesKeyLookups() && !keys_at_apply) break;
    TransactionState state(&view, tables);
    state.recordReads(reads);
    if (defer) state.deferKeyChecks();
    if (defer && keys_at_apply) state.leaveKeyChecksToApply();
    TransactionContext context = TransactionAccess::context(&state);
    try {
      run.status = closure(context);
    } catch (const std::exception& e) {
      run.status = absl::AbortedError(absl::StrCat("the closure threw: ", e.what()));
    } catch (...) {
      run.status = absl::AbortedError("the closure threw a non-standard exception");
    }
    if (defer) {
      if (keys_at_apply && (!run.status.ok() || state.aborted())) state.changesWillNotApply();
      absl::StatusOr<bool> free = state.keysWereFree();
      if (!free.ok()) {
        run.status = free.status();
        return run;
      }
      if (!*free) {
        run = ClosureRun();
        continue;
      }
    }
    if (run.status.ok() && state.aborted()) {
      run.status = absl::AbortedError("aborted by its closure");
    }
    if (run.status.ok()) {
      run.changes = state.takeChanges();
      run.bytes = state.pendingBytes();
      run.commit_hook = state.takeCommitHook();
      run.keys_unchecked = state.keysUnchecked();
    }
    return run;
  }
  return run;
}

// Runs of a transaction that conflicted with other processes before it runs under the
// write lock, where it cannot conflict.
constexpr int kOptimisticRuns = 2;

}  // namespace

// ---------------------------------------------------------------------------------------
// Coalescer

bool Coalescer::joinOrAdd(const std::shared_ptr<PendingTransaction>& txn,
                          const std::shared_ptr<HandleState>& handle) {
  absl::MutexLock lock(&mu_);
  auto it = queued_.find(txn->coalescing_key);
  if (it == queued_.end()) {
    queued_.emplace(txn->coalescing_key, txn);
    return false;
  }
  PendingTransaction& queued = *it->second;
  Closure closure;
  {
    absl::MutexLock txn_lock(&txn->mu);
    closure = std::move(txn->closure);
  }
  absl::MutexLock queued_lock(&queued.mu);
  queued.closure = std::move(closure);
  queued.handles.push_back(handle);
  return true;
}

Closure Coalescer::start(const std::shared_ptr<PendingTransaction>& txn) {
  absl::MutexLock lock(&mu_);
  if (!txn->coalescing_key.empty()) {
    auto it = queued_.find(txn->coalescing_key);
    if (it != queued_.end() && it->second == txn) queued_.erase(it);
  }
  absl::MutexLock txn_lock(&txn->mu);
  return txn->closure;
}

void Coalescer::drop(const PendingTransaction& txn) {
  if (txn.coalescing_key.empty()) return;
  absl::MutexLock lock(&mu_);
  auto it = queued_.find(txn.coalescing_key);
  if (it != queued_.end() && it->second.get() == &txn) queued_.erase(it);
}

// ---------------------------------------------------------------------------------------
// Commit: what the writer calls back for one run of a closure.

class ClosureRunner::Commit : public CommitCallbacks {
 public:
  Commit(ClosureRunner* runner, Scheduler::Job* job, std::shared_ptr<PendingTransaction> txn,
         int attempt, Closure closure)
      : runner_(runner),
        job_(job),
        txn_(std::move(txn)),
        attempt_(attempt),
        closure_(std::move(closure)) {}

  // A new request of this run.
  std::unique_ptr<CommitRequest> request(std::shared_ptr<Commit> self) {
    auto r = std::make_unique<CommitRequest>();
    r->priority = txn_->priority;
    r->tables = txn_->tables;
    r->callbacks = std::move(self);
    return r;
  }

  absl::Status runUnderLock(ReadView& view, CommitRequest& r, bool again) override {
    if (again) txn_->attempts += 1;
    absl::Time run_start = absl::Now();
    ClosureRun run =
        runOn(view, txn_->tables, closure_, runner_->writer_->refusesTakenKeys() && !r.check_keys);
    txn_->run_us += absl::ToInt64Microseconds(absl::Now() - run_start);
    FLATSTORE_RETURN_IF_ERROR(run.status);
    r.changes = std::move(run.changes);
    r.entries = std::move(run.commit_hook);
    r.keys_unchecked = run.keys_unchecked;
    return absl::OkStatus();
  }

  void complete(CommitRequest& r, absl::StatusOr<TransactionResult> result) override {
    if (r.handedOn()) {
      // Its tables were handed on already; the writer settled any conflict by running
      // the closure again under the lock.
      const std::shared_ptr<InFlight>& record = r.pipelining.in_flight;
      runner_->in_flight_.remove(txn_->tables, record);
      record->done.Notify();
      runner_->finish(*txn_, std::move(result), r.lock_hold_us);
      return;
    }
    // Another process changed a table the closure read: run it again on a fresh
    // snapshot, keeping its place in the table queues.
    if (!result.ok() && isConflict(result.status())) {
      if (attempt_ < runner_->max_conflict_retries_) {
        runner_->scheduler_->rerun(job_);
        return;
      }
      result = absl::AbortedError(
          absl::StrCat(result.status().message(), " (gave up after ", attempt_ + 1, " runs)"));
    }
    // The commit is done, so the next closure on these tables sees it: release them
    // first, so that a caller woken by the handle finds them free and may run its next
    // closure itself (shutdown() still waits for this: the writer completes the handle
    // before it stops).
    runner_->scheduler_->release(job_);
    runner_->finish(*txn_, std::move(result), r.lock_hold_us);
  }

 private:
  ClosureRunner* const runner_;
  Scheduler::Job* const job_;
  const std::shared_ptr<PendingTransaction> txn_;
  const int attempt_;
  const Closure closure_;
};

// ---------------------------------------------------------------------------------------
// ClosureRunner

TransactionHandle ClosureRunner::performChanges(std::vector<const TableDescription*> descriptions,
                                                Closure closure, TransactionOptions options,
                                                bool internal_continuation, bool caller_waits) {
  auto txn = std::make_shared<PendingTransaction>();
  auto handle = std::make_shared<HandleState>();
  txn->name = std::move(options.name);
  txn->submitted = absl::Now();
  txn->priority = options.priority;
  {
    absl::MutexLock lock(&txn->mu);
    txn->handles.push_back(handle);
    txn->closure = std::move(closure);
  }
  // After a failed sync no commit is acknowledged any more (Writer::stoppedError): the
  // closure does not run.
  if (absl::Status stopped = writer_->stoppedError(); !stopped.ok()) {
    handle->complete(stopped);
    return TransactionHandle(handle);
  }
  for (const TableDescription* d : descriptions) {
    absl::StatusOr<TableState*> t = tables_->get(*d);
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
    txn->coalescing_key = options.coalescing_key;
    if (coalescer_.joinOrAdd(txn, handle)) return TransactionHandle(handle);
  }
  absl::Status admitted = absl::OkStatus();
  if (internal_continuation) {
    admission_.enter();
  } else {
    admitted = admission_.admit(options.when_full);
  }
  if (!admitted.ok()) {
    coalescer_.drop(*txn);
    std::vector<std::shared_ptr<HandleState>> handles;
    {
      absl::MutexLock lock(&txn->mu);
      handles.swap(txn->handles);  // including requests coalesced into it meanwhile
    }
    for (auto& h : handles) h->complete(admitted);
    return TransactionHandle(handle);
  }
  auto job = std::make_shared<Scheduler::Job>();
  for (TableState* t : txn->tables) job->tables.emplace_back(t->desc.table_name);
  std::sort(job->tables.begin(), job->tables.end());
  job->priority = txn->priority;
  job->run = [this, txn](Scheduler::Job* self) { run(self, txn); };
  Scheduler::Job* raw_job = job.get();
  // A closure waiting for this transaction must not hold one of its tables, nor close a
  // circle of closures waiting for each other's tables.
  handle->setWaitCheck(
      [scheduler = scheduler_, queued = std::weak_ptr<Scheduler::Job>(job)] {
        std::shared_ptr<Scheduler::Job> j = queued.lock();
        return j != nullptr ? scheduler->beginWait(*j) : absl::OkStatus();
      },
      [scheduler = scheduler_] { scheduler->endWait(); });
  // A caller that is going to wait anyway may run the closure itself; not on the writer
  // thread, and not inside another closure, whose slot it would need twice.
  bool may_run_here = caller_waits && !onWriterThread() && !Scheduler::onWorkerThread();
  if (may_run_here) job->give_turn = [handle] { handle->giveTurn(); };
  absl::StatusOr<bool> run_here = scheduler_->submit(std::move(job), may_run_here);
  if (!run_here.ok()) {
    coalescer_.drop(*txn);
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

void ClosureRunner::run(Scheduler::Job* job, const std::shared_ptr<PendingTransaction>& txn) {
  int attempt = txn->attempts++;
  Closure closure = coalescer_.start(txn);
  if (attempt == 0) txn->started = absl::Now();
  auto commit = std::make_shared<Commit>(this, job, txn, attempt, closure);
  std::unique_ptr<CommitRequest> request = commit->request(commit);
  if (attempt >= kOptimisticRuns && writer_->runsClosures()) {
    runUnderLock(std::move(request));
    return;
  }
  if (attempt == 0 && job->on_caller) {
    request = runOnIdleWriter(std::move(request));
    if (request == nullptr) return;
  }
  runOnSnapshot(job, txn, closure, attempt, std::move(request));
}

void ClosureRunner::runUnderLock(std::unique_ptr<CommitRequest> request) {
  // Other processes committed to its tables before each of its earlier runs reached the
  // write lock. This run happens inside the write transaction: re-runs cannot starve.
  request->run_under_lock = true;
  writer_->submitOrCommit(std::move(request));
}

std::unique_ptr<CommitRequest> ClosureRunner::runOnIdleWriter(
    std::unique_ptr<CommitRequest> request) {
  // The caller runs the closure and waits for it. When the writer is idle, the closure
  // runs inside a write transaction of its own, as hand-written SQLite code would: no
  // snapshot to open, no conflict to check. Meanwhile commits of other tables wait for
  // it (for as long as a closure runs, which is meant to be short); with work queued,
  // it runs on a snapshot instead, and the request comes back.
  request->run_under_lock = true;
  request = writer_->commitIfIdle(std::move(request));
  if (request != nullptr) request->run_under_lock = false;
  return request;
}

void ClosureRunner::runOnSnapshot(Scheduler::Job* job,
                                  const std::shared_ptr<PendingTransaction>& txn,
                                  const Closure& closure, int attempt,
                                  std::unique_ptr<CommitRequest> request) {
  // `predecessors` are the requests on these tables that gave them up before their
  // commit. The snapshot is taken after this list, so it lacks at most their changes;
  // whether the closure read any of them is checked below, and by the writer.
  std::vector<std::shared_ptr<InFlight>> predecessors;
  ClosureRun run;
  auto run_once = [&] {
    predecessors = in_flight_.on(txn->tables);
    for (const std::shared_ptr<InFlight>& p : predecessors) {
      // One of another priority waits in another queue of the mailbox, where this
      // request could overtake it: wait for its commit instead.
      if (p->priority != txn->priority) p->done.WaitForNotification();
    }
    absl::Time run_start = absl::Now();
    request->pipelining.reads = ReadSet();
    absl::Status read = [&]() -> absl::Status {
      LazySnapshot snapshot(snapshots_);
      run = runOn(snapshot, txn->tables, closure, writer_->refusesTakenKeys(),
                  &request->pipelining.reads);
      FLATSTORE_RETURN_IF_ERROR(snapshot.failure());
      request->snapshot_sequence = 0;
      request->snapshot_mark = ReadMark();
      request->read_tables.clear();
      if (!run.status.ok() || (run.changes.empty() && !run.commit_hook)) return absl::OkStatus();
      // A closure that read nothing depends on no snapshot: no conflict to check.
      if (!snapshot.opened()) return absl::OkStatus();
      // What this snapshot saw: the writer checks under the write lock that no other
      // process changed these tables since. Asked after the run, in the same snapshot:
      // on PostgreSQL the mark travels with the closure's first read.
      FLATSTORE_ASSIGN_OR_RETURN(ReadMark mark, snapshot.view()->mark());
      request->snapshot_sequence = mark.sequence;
      request->snapshot_mark = std::move(mark);
      request->read_tables = txn->tables;
      return absl::OkStatus();
    }();
    if (!read.ok()) run.status = read;
    txn->run_us += absl::ToInt64Microseconds(absl::Now() - run_start);
  };
  run_once();
  bool stale = false;
  for (const std::shared_ptr<InFlight>& p : predecessors) {
    if (p->intended.touches(request->pipelining.reads)) stale = true;
  }
  if (stale) {
    // The run read what a request still in flight writes. Run it again once those
    // requests completed (this job still holds its tables, so no other closure on them
    // runs meanwhile), and let the next closures on these tables wait for commits for a
    // while: they touch the same objects.
    pauseHandOn(txn->tables);
    for (const std::shared_ptr<InFlight>& p : predecessors) p->done.WaitForNotification();
    txn->attempts += 1;
    run_once();
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
  request->entries = std::move(run.commit_hook);
  request->bytes = run.bytes;
  request->keys_unchecked = run.keys_unchecked;
  request->pipelining.predecessors = std::move(predecessors);
  // Handed on, a conflict makes the writer run the closure again at once: only while
  // the retry bound allows another run.
  if (attempt < max_conflict_retries_ && writer_->handsOn() && mayHandOn(txn->tables) &&
      (scheduler_->hasFollowers(job) || writer_->busy())) {
    handOn(job, *txn, std::move(request));
    return;
  }
  submitHolding(std::move(request));
}

void ClosureRunner::handOn(Scheduler::Job* job, const PendingTransaction& txn,
                           std::unique_ptr<CommitRequest> request) {
  // Closures wait for these tables, or may come while this request waits for the writer:
  // give the tables up as soon as the request has its place in the mailbox, ahead of
  // theirs, instead of after the commit. A conflict with another process is then
  // settled by the writer, which runs the closure again inside the write transaction.
  auto record = std::make_shared<InFlight>();
  record->priority = txn.priority;
  record->intended = writesOf(request->changes);
  request->pipelining.in_flight = record;
  in_flight_.add(txn.tables, record);
  writer_->submit(std::move(request));
  // With a writer thread, the next closure on these tables runs on this thread now when
  // it may (its caller is not woken for it), and the writer thread commits this request
  // meanwhile. Otherwise the next closure runs on another thread while this one commits
  // what is queued.
  if (!scheduler_->release(job, /*take_next=*/writer_->commitsInBackground())) {
    writer_->commitQueued();
  }
}

void ClosureRunner::submitHolding(std::unique_ptr<CommitRequest> request) {
  // Commits here when no group is being committed; the job may be released (and a
  // re-run started) before this returns, so nothing after this touches the job or the
  // transaction.
  writer_->submitOrCommit(std::move(request));
}

void ClosureRunner::finish(PendingTransaction& txn, absl::StatusOr<TransactionResult> result,
                           int64_t lock_hold_us) {
  absl::Time now = absl::Now();
  absl::Time started = txn.started == absl::Time() ? now : txn.started;
  metrics_->recordTransaction(
      txn.name, {absl::ToInt64Microseconds(started - txn.submitted), txn.run_us, lock_hold_us,
                 absl::ToInt64Microseconds(now - txn.submitted), !result.ok(),
                 std::max(0, txn.attempts - 1)});
  std::vector<std::shared_ptr<HandleState>> handles;
  {
    absl::MutexLock lock(&txn.mu);
    handles.swap(txn.handles);
  }
  admission_.leave();
  for (auto& h : handles) h->complete(result);
}

}  // namespace flatstore::internal
