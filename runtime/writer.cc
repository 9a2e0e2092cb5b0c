#include "runtime/writer.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/change_log.h"
#include "runtime/dictionary.h"
#include "runtime/query_exec.h"
#include "runtime/row_writes.h"
#include "runtime/sqlite_read_view.h"

namespace flatstore::internal {
namespace {

constexpr char kConflictPayload[] = "flatstore.dev/conflict";

}  // namespace

absl::Status conflictError(const TableState& table) {
  absl::Status s = absl::AbortedError(
      absl::StrCat("table ", av(table.desc.table_name),
                   " was changed by another process since the transaction read it"));
  s.SetPayload(kConflictPayload, absl::Cord("1"));
  return s;
}

bool isConflict(const absl::Status& status) {
  return status.GetPayload(kConflictPayload).has_value();
}

Writer::Writer(std::unique_ptr<Connection> connection, WriterOptions options,
               std::function<void(CommitEvent)> publish, MetricsRegistry* metrics)
    : options_(options),
      publish_(std::move(publish)),
      metrics_(metrics),
      path_(connection->path()),
      db_(std::move(connection)) {
  {
    absl::MutexLock role(&role_);
    checkpointer_ = std::make_unique<Checkpointer>(*db_, options.checkpoint, metrics);
  }
  thread_ = std::thread([this] { loop(); });
}

Writer::~Writer() { stop().IgnoreError(); }

void Writer::submit(std::unique_ptr<CommitRequest> request) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_[queueOf(request->priority)].push_back(std::move(request));
      return;
    }
  }
  request->callbacks->complete(*request,
                               absl::FailedPreconditionError("the workspace is shut down"));
}

namespace {
// The writer whose role this thread holds, or kCommitting (CommittingScope).
thread_local const void* current_writer = nullptr;
const char kCommitting = 0;
}  // namespace

bool onWriterThread() { return current_writer != nullptr; }

namespace {

// Marks the current thread as holding the writer role for a scope.
class WriterScope {
 public:
  explicit WriterScope(const Writer* w) : previous_(current_writer) { current_writer = w; }
  ~WriterScope() { current_writer = previous_; }
  WriterScope(const WriterScope&) = delete;
  WriterScope& operator=(const WriterScope&) = delete;

 private:
  const void* previous_;
};

}  // namespace

CommittingScope::CommittingScope() : previous_(current_writer) { current_writer = &kCommitting; }
CommittingScope::~CommittingScope() { current_writer = previous_; }

std::unique_ptr<CommitRequest> Writer::tryLead(std::unique_ptr<CommitRequest> request, Lead how) {
  // Under the role already (a completion callback), or a group is being committed.
  if (current_writer != nullptr || !role_.TryLock()) return request;
  std::vector<std::unique_ptr<CommitRequest>> group;
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      if (how == Lead::kAlone) {
        bool paused = background_paused_ && request->priority == Priority::kBackground;
        if (!queued() && !paused) group.push_back(std::move(request));
      } else {
        // Into the mailbox and out again with whatever waits there, without releasing
        // mu_: the writer thread never sees it queued. A background request may stay
        // queued while background work is paused.
        if (request != nullptr) queue_[queueOf(request->priority)].push_back(std::move(request));
        takeGroup(&group);
      }
      if (!group.empty()) leaders_ += 1;
    }
  }
  if (group.empty()) {
    role_.Unlock();
    return request;
  }
  {
    WriterScope scope(this);
    commitAndNote(group);
    // The WAL policy holds for this commit too: a caller that leads group after group
    // (performChangesAndWait in a loop) would otherwise keep the role from the writer
    // thread, and the WAL would grow past its limit meanwhile.
    restartIfDue();
  }
  role_.Unlock();
  absl::MutexLock lock(&mu_);
  leaders_ -= 1;
  return nullptr;
}

void Writer::restartIfDue() {
  // Without mu_: after most commits nothing is due. A stop is set under the role too.
  if (!role_checkpoint_due_ || has_stopped_.load(std::memory_order_acquire)) return;
  // Passive rounds run without the role, on the writer thread: leave them to it.
  bool passive = checkpointer_->runDue(*db_) && checkpointKeptFile();
  absl::MutexLock lock(&mu_);
  checkpoint_due_ = passive;
  role_checkpoint_due_ = passive;
}

absl::Status Writer::stoppedError() const {
  if (!has_stopped_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  return stopped_;
}

absl::Status Writer::stopCommitting(const absl::Status& cause, std::string_view why) {
  absl::MutexLock lock(&mu_);
  if (stopped_.ok()) {
    stopped_ = absl::FailedPreconditionError(
        absl::StrCat(path_, ": ", cause.message(), "; ", av(why),
                     ", so this workspace commits nothing more: reopen it (reads go on "
                     "meanwhile)"));
    has_stopped_.store(true, std::memory_order_release);
    // Back-fills write too: they end here, their indexes incomplete (queries read past
    // them), and awaitBackfills() returns.
    backfills_.clear();
    if (metrics_ != nullptr) metrics_->recordStopped(stopped_);
  }
  return stopped_;
}

void Writer::rollbackOrStop() {
  absl::Status rolled_back = db_->rollback("writer");
  // A write transaction left open would make every later BEGIN IMMEDIATE fail, and
  // what it holds is unknown: no later commit can be trusted.
  if (!rolled_back.ok()) {
    stopCommitting(rolled_back, "a write transaction stayed open").IgnoreError();  // see above
  }
}

bool Writer::checkpointKeptFile() {
  absl::Status in_doubt = checkpointer_->writesInDoubtError();
  if (in_doubt.ok()) return true;
  stopCommitting(in_doubt).IgnoreError();  // commits and shutdown() report it
  return false;
}

void Writer::failGroup(std::vector<std::unique_ptr<CommitRequest>>& group,
                       const absl::Status& error) {
  for (auto& r : group) {
    if (r->handedOn()) r->pipelining.in_flight->failed = true;
    r->lock_hold_us = 0;
    r->callbacks->complete(*r, error);
  }
}

void Writer::submitOrCommit(std::unique_ptr<CommitRequest> request) {
  // Not led (the role is busy, or the writer is stopping): the mailbox, which refuses it
  // after stop().
  request = tryLead(std::move(request), Lead::kWithQueue);
  if (request != nullptr) submit(std::move(request));
}

void Writer::commitQueued() { tryLead(nullptr, Lead::kWithQueue); }

std::unique_ptr<CommitRequest> Writer::commitIfIdle(std::unique_ptr<CommitRequest> request) {
  return tryLead(std::move(request), Lead::kAlone);
}

void Writer::takeGroup(std::vector<std::unique_ptr<CommitRequest>>* group) {
  int64_t bytes = 0;
  for (int priority = 0; priority < kPriorityLevels; ++priority) {
    // User-initiated transactions commit without background work (a bulk chunk would
    // make their commit as slow as its own); the background goes in the next group.
    if (priority == queueOf(Priority::kBackground) && !group->empty() &&
        group->front()->priority == Priority::kUserInitiated) {
      break;
    }
    if (priority == queueOf(Priority::kBackground) && background_paused_ && !stopping_) break;
    auto& queue = queue_[priority];
    while (!queue.empty() && static_cast<int>(group->size()) < options_.max_group_transactions &&
           (group->empty() || bytes + queue.front()->bytes <= options_.max_group_bytes)) {
      bytes += queue.front()->bytes;
      group->push_back(std::move(queue.front()));
      queue.pop_front();
    }
  }
}

absl::Status Writer::runSync(std::function<absl::Status(Connection&)> fn, bool may_join) {
  if (current_writer == this) {
    role_.AssertHeld();
    if (!db_->autocommit() && may_join) {
      FLATSTORE_RETURN_IF_ERROR(db_->exec("SAVEPOINT joined", "closure"));
      absl::Status s = fn(*db_);
      if (!s.ok()) FLATSTORE_RETURN_IF_ERROR(db_->exec("ROLLBACK TO joined", "closure"));
      FLATSTORE_RETURN_IF_ERROR(db_->exec("RELEASE joined", "closure"));
      return s;
    }
    if (!db_->autocommit()) {
      return absl::FailedPreconditionError(
          "a closure running under the write lock cannot create tables or indexes; use "
          "the tables before, or from outside the closure");
    }
    FLATSTORE_RETURN_IF_ERROR(stoppedError());
    FLATSTORE_RETURN_IF_ERROR(db_->exec("BEGIN IMMEDIATE", "catalog"));
    absl::Status s = fn(*db_);
    if (s.ok()) {
      s = db_->exec("COMMIT", "catalog");
      if (!s.ok() && writesInDoubt(db_->db())) s = stopCommitting(s);
    }
    if (!s.ok()) rollbackOrStop();
    return s;
  }
  // Completes into a status the caller waits for.
  class Sync : public CommitCallbacks {
   public:
    absl::Status runUnderLock(ReadView&, CommitRequest&, bool) override {
      return absl::InternalError("a writer job has no closure to run");
    }
    void complete(CommitRequest&, absl::StatusOr<TransactionResult> r) override {
      absl::MutexLock lock(&mu_);
      status_ = r.status();
      done_ = true;
    }
    absl::Status wait() {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&done_));
      return status_;
    }

   private:
    absl::Mutex mu_;
    bool done_ ABSL_GUARDED_BY(mu_) = false;
    absl::Status status_ ABSL_GUARDED_BY(mu_);
  };
  auto sync = std::make_shared<Sync>();
  auto request = std::make_unique<CommitRequest>();
  request->apply = std::move(fn);
  request->callbacks = sync;
  submit(std::move(request));
  return sync->wait();
}

absl::Status Writer::putEntry(std::string_view key, Dictionary::Kind kind, std::string_view type,
                              std::span<const uint8_t> value) {
  std::string k(key);
  std::string t(type);
  std::vector<uint8_t> v(value.begin(), value.end());
  return runSync([k, kind, t, v](Connection& c) { return writeEntry(c, k, kind, t, v); },
                 /*may_join=*/true);
}

absl::Status Writer::eraseEntry(std::string_view key) {
  std::string k(key);
  return runSync([k](Connection& c) { return internal::eraseEntry(c, k); }, /*may_join=*/true);
}

void Writer::addBackfill(TableState* table) {
  absl::MutexLock lock(&mu_);
  if (!stopped_.ok()) return;  // nothing is written any more (see stopCommitting)
  backfills_.push_back(table);
}

void Writer::awaitBackfills() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return backfills_.empty() || stopping_; };
  mu_.Await(absl::Condition(&idle));
}

uint64_t Writer::lastCommitSequence() const {
  return last_sequence_.load(std::memory_order_acquire);
}

absl::Status Writer::stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // A thread that took the role before stopping_ was set finishes its group.
  absl::MutexLock lock(&mu_);
  auto no_leaders = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return leaders_ == 0; };
  mu_.Await(absl::Condition(&no_leaders));
  // A stopped writer ran no last checkpoint; its error is what shutdown() reports.
  return stopped_.ok() ? final_checkpoint_ : stopped_;
}

void Writer::pauseBackground(bool paused) {
  absl::MutexLock lock(&mu_);
  background_paused_ = paused;
}

bool Writer::busy() const {
  if (committing_.load(std::memory_order_relaxed)) return true;
  absl::MutexLock lock(&mu_);
  return queued();
}

void Writer::commitAndNote(std::vector<std::unique_ptr<CommitRequest>>& group) {
  committing_.store(true, std::memory_order_relaxed);
  commitGroup(group);
  committing_.store(false, std::memory_order_relaxed);
  if (checkpointer_->noteCommit()) {
    absl::MutexLock lock(&mu_);
    checkpoint_due_ = true;
    role_checkpoint_due_ = true;
  }
}

void Writer::loop() {
  current_writer = this;
  while (true) {
    std::vector<std::unique_ptr<CommitRequest>> group;
    bool exiting = false;
    bool checkpoint_due = false;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return queued() || stopping_ || !backfills_.empty() || checkpoint_due_;
      };
      mu_.Await(absl::Condition(&ready));
    }
    bool passive = false;
    {
      // Another thread may hold the role; what it leaves queued is the next group.
      absl::MutexLock role(&role_);
      {
        absl::MutexLock lock(&mu_);
        exiting = !queued() && stopping_;
        checkpoint_due = std::exchange(checkpoint_due_, false);
        role_checkpoint_due_ = false;
        takeGroup(&group);
      }
      // After a failed sync nothing more is written: no back-fill, no checkpoint (which
      // would copy pages in doubt into the database). Commits fail with the error.
      const bool stopped = has_stopped_.load(std::memory_order_acquire);
      if (exiting) {
        // A clean shutdown leaves an empty WAL behind; shutdown() reports why not.
        absl::Status truncated = stopped ? absl::OkStatus() : checkpointer_->truncate(*db_);
        checkpointKeptFile();
        absl::MutexLock lock(&mu_);
        final_checkpoint_ = std::move(truncated);
        return;
      }
      if (!group.empty()) {
        commitAndNote(group);
      } else if (!checkpoint_due && !stopped) {
        // Idle: one bounded back-fill step, then look at the mailbox again.
        backfillOnce();
      }
      if (checkpoint_due && !stopped) passive = checkpointer_->runDue(*db_) && checkpointKeptFile();
    }
    if (passive) {
      // Background commits wait until the tail is copied. A bulk import appends frames
      // as fast as the rounds copy them back: the tail stayed long (commits waited
      // milliseconds for it), or the WAL outgrew its limit and the restarting checkpoint
      // stopped every commit for tens of milliseconds. User-initiated and default
      // commits go on, and their few frames make a short tail.
      pauseBackground(true);
      absl::Cleanup resume = [this] { pauseBackground(false); };
      std::optional<Checkpointer::Rounds> rounds = checkpointer_->passiveRounds();
      if (rounds.has_value() && checkpointKeptFile()) {
        absl::MutexLock role(&role_);
        checkpointer_->copyTail(*db_, *rounds);
        checkpointKeptFile();
      }
    }
  }
}

bool Writer::backfillOnce() {
  TableState* table = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (backfills_.empty()) return false;
    table = backfills_.front();
  }
  bool more = false;
  absl::Status s = db_->exec("BEGIN IMMEDIATE", "index back-fill");
  if (s.ok()) {
    absl::StatusOr<bool> step = backfillStep(*db_, *table, options_.backfill_batch);
    if (step.ok()) {
      more = *step;
      s = db_->exec("COMMIT", "index back-fill");
      if (!s.ok() && writesInDoubt(db_->db())) s = stopCommitting(s);
    } else {
      s = step.status();
    }
  }
  if (!s.ok()) rollbackOrStop();
  // A failed back-fill (for example duplicates under a new unique index) leaves the
  // index incomplete; queries keep reading past it.
  if (!s.ok() || !more) {
    absl::MutexLock lock(&mu_);
    // Empty when the failure stopped the writer (stopCommitting ended every back-fill).
    if (!backfills_.empty()) backfills_.erase(backfills_.begin());
  }
  return more;
}

absl::Status Writer::applyRequest(CommitRequest& request, Versionstamp vs,
                                  TransactionResult* result) {
  if (request.run_under_lock) {
    SqliteReadView view(db_.get(), options_.origin);
    FLATSTORE_RETURN_IF_ERROR(request.callbacks->runUnderLock(view, request, /*again=*/false));
  }
  // Whether the closure's run is stale and runs again here, inside the transaction.
  bool stale = false;
  // A newer program changed the catalog: changes encoded with a table's older bridge
  // could drop fields or miss indexes, so the closure runs again with the new one.
  const TableState* relayout = nullptr;
  for (const EncodedChange& c : request.changes) {
    if (c.table->catalog_seen < catalog_generation_) {
      FLATSTORE_RETURN_IF_ERROR(refreshTable(*db_, *c.table));
    }
    if (c.op != EncodedChange::Op::kDelete && c.bridge != c.table->bridge()) relayout = c.table;
  }
  if (relayout != nullptr) {
    if (!request.handedOn()) return conflictError(*relayout);
    stale = true;
  }
  const CommitRequest::Pipelining& pipelining = request.pipelining;
  if (!pipelining.predecessors.empty()) {
    FLATSTORE_ASSIGN_OR_RETURN(
        stale,
        overwrittenSince(pipelining.predecessors, request.snapshot_sequence, pipelining.reads));
  }
  // Every commit after foreign_through_ is this writer's own: a snapshot that saw it
  // cannot miss another process's commit.
  if (!stale && !request.read_tables.empty() && request.snapshot_sequence < foreign_through_) {
    std::vector<int64_t> ids;
    ids.reserve(request.read_tables.size());
    for (const TableState* t : request.read_tables) ids.push_back(t->id);
    FLATSTORE_ASSIGN_OR_RETURN(
        int changed, firstChangedSince(*db_, request.snapshot_sequence, options_.origin, ids));
    if (changed >= 0) {
      // Another process changed a table. A request that still holds its tables runs
      // again on a fresh snapshot; one that gave them to the next closures already runs
      // again here, so that it stays ahead of them.
      if (!request.handedOn()) {
        return conflictError(*request.read_tables[static_cast<size_t>(changed)]);
      }
      stale = true;
    }
  }
  if (stale) {
    request.changes.clear();
    request.apply = nullptr;
    request.entries = nullptr;
    SqliteReadView view(db_.get(), options_.origin);
    FLATSTORE_RETURN_IF_ERROR(request.callbacks->runUnderLock(view, request, /*again=*/true));
  }
  if (request.apply) FLATSTORE_RETURN_IF_ERROR(request.apply(*db_));
  if (request.entries) {
    SqliteEntryWriter entries(*db_);
    FLATSTORE_RETURN_IF_ERROR(request.entries(entries));
  }
  for (const EncodedChange& c : request.changes) FLATSTORE_RETURN_IF_ERROR(applyRemovals(*db_, c));
  for (EncodedChange& c : request.changes) {
    FLATSTORE_RETURN_IF_ERROR(applyWrites(*db_, c, vs.packed()));
    switch (c.op) {
      case EncodedChange::Op::kInsert:
        result->inserted += 1;
        break;
      case EncodedChange::Op::kUpdate:
        result->updated += 1;
        break;
      case EncodedChange::Op::kDelete:
        result->deleted += 1;
        break;
      case EncodedChange::Op::kNone:
        break;
    }
  }
  if (!request.changes.empty()) result->versionstamp = vs;
  return absl::OkStatus();
}

void Writer::noteApplied(CommitRequest& request, uint64_t seq) {
  request.pipelining.in_flight->sequence = seq;
  request.pipelining.in_flight->applied = writesOf(request.changes);
}

absl::Status Writer::writeLog(const std::vector<std::unique_ptr<CommitRequest>>& group,
                              const std::vector<absl::StatusOr<TransactionResult>>& results,
                              uint64_t seq, Versionstamp* last_change) {
  std::string blob;
  Versionstamp& last = *last_change;
  for (size_t i = 0; i < group.size(); ++i) {
    if (!results[i].ok() || group[i]->changes.empty()) continue;
    bool changed = false;
    for (const EncodedChange& c : group[i]->changes) {
      if (c.op == EncodedChange::Op::kNone) continue;
      changed = true;
      LogRecord r;
      r.table_id = c.table->id;
      r.rowid = c.rowid;
      r.position = static_cast<uint16_t>(i);
      r.deleted = c.op == EncodedChange::Op::kDelete;
      if (r.deleted) r.key = c.key;
      appendLogRecord(r, &blob);
    }
    if (changed) last = results[i]->versionstamp;
  }
  // Every commit writes its row, even with nothing changed: the newest row carries the
  // commit sequence.
  return writeLogRow(*db_, seq, options_.origin, blob, last, options_.log_retention);
}

absl::StatusOr<LogHead> Writer::logHead() {
  // Inside the write transaction: the data version moved unless the last thing to
  // change the file was this writer's own group commit, which left head_ behind.
  std::optional<uint32_t> version = db_->dataVersion();
  if (head_.has_value() && version.has_value() && version == head_data_version_) return *head_;
  FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(*db_, "group commit"));
  FLATSTORE_ASSIGN_OR_RETURN(catalog_generation_, readCatalogGeneration(*db_));
  head_ = head;
  head_data_version_ = version;
  // Another connection may have committed anything up to this head.
  foreign_through_ = head.sequence;
  return head;
}

CommitEvent Writer::observedChanges(std::vector<std::unique_ptr<CommitRequest>>& group,
                                    const std::vector<absl::StatusOr<TransactionResult>>& results,
                                    uint64_t seq) {
  CommitEvent event;
  event.sequence = seq;
  std::map<TableState*, size_t> slot;
  for (size_t i = 0; i < group.size(); ++i) {
    if (!results[i].ok()) continue;
    Versionstamp vs = results[i]->versionstamp;
    for (EncodedChange& c : group[i]->changes) {
      if (c.op == EncodedChange::Op::kNone ||
          c.table->subscriptions.load(std::memory_order_acquire) == 0) {
        continue;
      }
      auto [it, inserted] = slot.emplace(c.table, event.tables.size());
      if (inserted) event.tables.emplace_back(c.table, std::vector<ChangedObject>());
      ChangedObject changed;
      changed.rowid = c.rowid;
      changed.deleted = c.op == EncodedChange::Op::kDelete;
      changed.bytes = std::move(c.bytes);  // the request is done with them
      changed.versionstamp = vs;
      if (c.op == EncodedChange::Op::kUpdate) {
        changed.base_version = c.base_version;
        changed.changed_fields = c.changed_fields;
      }
      event.tables[it->second].second.push_back(std::move(changed));
    }
  }
  return event;
}

void Writer::notePace(const CommitRequest& request, absl::Duration hold) {
  // Only requests with many changes: in small ones fixed costs dominate.
  if (request.changes.size() < kPaceMinChanges) return;
  int64_t sample = absl::ToInt64Nanoseconds(hold) / static_cast<int64_t>(request.changes.size());
  int64_t old = nanos_per_change_.load(std::memory_order_relaxed);
  // A moving average over the last few such requests; one sample moves it by at most
  // half or double, so a request that waited out a stalled write does not shrink every
  // chunk after it.
  sample = std::clamp(sample, old / 2, old * 2);
  nanos_per_change_.store(std::max<int64_t>(1, old + (sample - old) / 4),
                          std::memory_order_relaxed);
}

void Writer::commitGroup(std::vector<std::unique_ptr<CommitRequest>>& group) {
  if (absl::Status stopped = stoppedError(); !stopped.ok()) {
    failGroup(group, stopped);
    return;
  }
  std::vector<absl::StatusOr<TransactionResult>> results(group.size(), TransactionResult{});
  absl::Time begin = absl::Now();
  absl::Status group_status = db_->exec("BEGIN IMMEDIATE", "group commit");
  absl::Time locked = absl::Now();
  uint64_t seq = 0;
  Versionstamp last_change;
  // Inside the write transaction: the group's sequence follows the log's newest row.
  auto read_head = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) {
    absl::StatusOr<LogHead> head = logHead();
    if (head.ok()) {
      seq = head->sequence + 1;
      last_change = head->last_change;
    }
    return head.status();
  };
  if (group_status.ok()) group_status = read_head();
  // Several requests share the group: each is applied in a savepoint of its own, so
  // that one that fails rolls back alone. But SQLite copies each page a savepoint
  // changes into its sub-journal, again for every savepoint, and most groups have no
  // failing request. So a group whose requests bring no work of their own to run under
  // the lock (a closure or a hook) is applied first without savepoints; when one of its
  // requests fails, the transaction is rolled back and the group applied again, each
  // request in its savepoint.
  bool optimistic = group.size() > 1 && std::none_of(group.begin(), group.end(), [](const auto& r) {
                      return r->run_under_lock || r->apply != nullptr;
                    });
  bool use_savepoints = group.size() > 1 && !optimistic;
  bool lone_failure = false;
  // Large requests are timed for the chunk pace (see notePace): how long each took to
  // apply, and how many changes the group applied in all.
  std::vector<std::pair<size_t, absl::Duration>> timed_applies;
  size_t group_changes = 0;
  // One pass over the group. False when an optimistic pass met a failing request: the
  // pass stopped there, and the transaction holds what it applied before.
  auto apply_group = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) {
    for (size_t i = 0; i < group.size(); ++i) {
      // Each request in its own savepoint when several share the group; a lone
      // request that fails rolls back the whole transaction instead.
      if (use_savepoints) group_status = db_->exec("SAVEPOINT request", "group commit");
      if (!group_status.ok()) break;
      TransactionResult result;
      const bool timed = group[i]->changes.size() >= kPaceMinChanges;
      absl::Time applying = timed ? absl::Now() : absl::Time();
      absl::Status s =
          applyRequest(*group[i], Versionstamp(seq, static_cast<uint16_t>(i)), &result);
      if (s.ok()) {
        if (timed) timed_applies.emplace_back(i, absl::Now() - applying);
        group_changes += group[i]->changes.size();
        results[i] = result;
        if (use_savepoints) group_status = db_->exec("RELEASE request", "group commit");
        if (group[i]->handedOn()) noteApplied(*group[i], seq);
      } else if (optimistic) {
        return false;
      } else {
        if (group[i]->handedOn()) group[i]->pipelining.in_flight->failed = true;
        results[i] = s;
        if (use_savepoints) {
          group_status = db_->exec("ROLLBACK TO request", "group commit");
          if (group_status.ok()) group_status = db_->exec("RELEASE request", "group commit");
        } else {
          lone_failure = true;
        }
      }
      if (!group_status.ok()) break;
    }
    return true;
  };
  if (group_status.ok() && !apply_group()) {
    // Nothing of the optimistic pass stays; the requests it applied before the failing
    // one are applied again (a handed-on request's record is rewritten then).
    optimistic = false;
    use_savepoints = true;
    results.assign(group.size(), TransactionResult{});
    timed_applies.clear();
    group_changes = 0;
    rollbackOrStop();
    group_status = stoppedError();
    // The write lock was released: another process may have committed meanwhile.
    if (group_status.ok()) group_status = db_->exec("BEGIN IMMEDIATE", "group commit");
    if (group_status.ok()) group_status = read_head();
    if (group_status.ok()) apply_group();
  }
  // A lone request that produced nothing to write (a closure run inside the write
  // transaction that changed nothing) commits nothing either.
  bool lone_nothing = group_status.ok() && group.size() == 1 && results[0].ok() &&
                      group[0]->changes.empty() && !group[0]->apply && !group[0]->entries;
  if (lone_failure || lone_nothing) {
    // Nothing of the group remains to commit: the only request failed or wrote nothing.
    rollbackOrStop();
    int64_t hold_us = absl::ToInt64Microseconds(absl::Now() - locked);
    group[0]->lock_hold_us = hold_us;
    group[0]->callbacks->complete(*group[0], std::move(results[0]));
    return;
  }
  absl::Time committing = absl::Now();
  if (group_status.ok()) group_status = writeLog(group, results, seq, &last_change);
  if (group_status.ok()) {
    group_status = db_->exec("COMMIT", "group commit");
    // A sync that failed may have lost this group's pages and earlier ones: no commit is
    // acknowledged from now on (the group fails as any failed commit does).
    if (!group_status.ok() && writesInDoubt(db_->db())) group_status = stopCommitting(group_status);
  }
  if (group_status.ok() && !timed_applies.empty()) {
    // A chunk holds the write lock for its apply and its share of the commit (the log
    // row and the WAL frames), in proportion to its changes.
    absl::Duration commit = absl::Now() - committing;
    for (const auto& [i, apply] : timed_applies) {
      double share = static_cast<double>(group[i]->changes.size()) /
                     static_cast<double>(std::max<size_t>(1, group_changes));
      notePace(*group[i], apply + commit * share);
    }
  }
  if (!group_status.ok()) {
    // Nothing of the group is visible: every request fails with the group's error.
    rollbackOrStop();
    if (metrics_ != nullptr) metrics_->recordFailedCommit();
    for (auto& r : results) r = group_status;
    for (auto& r : group) {
      if (r->handedOn()) r->pipelining.in_flight->failed = true;
    }
  } else {
    head_ = LogHead{seq, last_change};
    head_data_version_ = db_->dataVersion();
    last_sequence_.store(seq, std::memory_order_release);
    if (publish_) publish_(observedChanges(group, results, seq));
  }
  int64_t hold_us = absl::ToInt64Microseconds(absl::Now() - locked);
  if (metrics_ != nullptr) {
    int64_t transactions = 0;
    for (const auto& r : group) transactions += r->changes.empty() ? 0 : 1;
    metrics_->recordGroup(transactions, hold_us, absl::ToInt64Microseconds(locked - begin));
  }
  for (size_t i = 0; i < group.size(); ++i) {
    group[i]->lock_hold_us = hold_us;
    group[i]->callbacks->complete(*group[i], std::move(results[i]));
  }
}

}  // namespace flatstore::internal
