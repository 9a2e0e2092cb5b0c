#include "runtime/pg_workspace.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "flatstore/status.h"
#include "runtime/writer.h"

namespace flatstore::internal {

// ---------------------------------------------------------------------------------------
// PgWriter

PgWriter::PgWriter(PgEngine* engine, std::function<void(CommitEvent)> publish,
                   MetricsRegistry* metrics, int backfill_batch, PgSequence* sequence)
    : engine_(engine),
      publish_(std::move(publish)),
      metrics_(metrics),
      backfill_batch_(std::max(1, backfill_batch)),
      sequence_(sequence) {
  backfill_thread_ = std::thread([this] { backfillLoop(); });
}

PgWriter::~PgWriter() { stop().IgnoreError(); }

absl::StatusOr<TransactionResult> PgWriter::apply(CommitRequest& request, WriteSession& session) {
  // Another session made the bridges of these tables current (PgEngine::refreshStale)
  // since the closure ran: a change encoded with a replaced one could drop a newer
  // program's fields or miss its indexes, so the closure runs again with the new one.
  // (This session's own start may replace one too: applyUnlessChanged says so.)
  for (const EncodedChange& c : request.changes) {
    if (c.op != EncodedChange::Op::kDelete && c.op != EncodedChange::Op::kNone &&
        c.bridge != c.table->bridge()) {
      return conflictError(*c.table);
    }
  }
  if (request.run_under_lock) {
    // After conflicts: the closure reads the session's own transaction, under the locks
    // of its tables, where no other client can change them; there is nothing to check.
    FLATSTORE_RETURN_IF_ERROR(
        request.callbacks->runUnderLock(session.reads(), request, /*again=*/false));
  }
  // The conflict check (not under the lock), the request's changes and the session's
  // start (its locks, transaction id and catalog generation) in one round trip; then
  // the dictionary work, if any.
  std::vector<const TableState*> read(request.read_tables.begin(), request.read_tables.end());
  FLATSTORE_ASSIGN_OR_RETURN(
      int changed,
      session.applyUnlessChanged(0, request.changes, read,
                                 request.run_under_lock ? nullptr : &request.snapshot_mark));
  if (changed >= 0) return conflictError(*read[static_cast<size_t>(changed)]);
  if (request.entries) FLATSTORE_RETURN_IF_ERROR(request.entries(session));
  TransactionResult result;
  for (const EncodedChange& c : request.changes) {
    result.inserted += c.op == EncodedChange::Op::kInsert ? 1 : 0;
    result.updated += c.op == EncodedChange::Op::kUpdate ? 1 : 0;
    result.deleted += c.op == EncodedChange::Op::kDelete ? 1 : 0;
  }
  if (!request.changes.empty()) result.versionstamp = session.versionstamp(0);
  return result;
}

void PgWriter::commit(std::unique_ptr<CommitRequest> request) {
  // Closures under the locks and completion callbacks run here (see CommittingScope).
  CommittingScope committing;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) {
      request->callbacks->complete(*request,
                                   absl::FailedPreconditionError("the workspace is shut down"));
      return;
    }
    committing_ += 1;
  }
  // The session locks the declared tables (the closure's), and the tables it changes.
  std::vector<const TableState*> tables(request->tables.begin(), request->tables.end());
  for (const TableState* t : request->read_tables) {
    if (std::find(tables.begin(), tables.end(), t) == tables.end()) tables.push_back(t);
  }
  for (const EncodedChange& c : request->changes) {
    if (std::find(tables.begin(), tables.end(), c.table) == tables.end()) tables.push_back(c.table);
  }
  const absl::Time begin = absl::Now();
  absl::Time locked = begin;
  absl::StatusOr<TransactionResult> result = [&]() -> absl::StatusOr<TransactionResult> {
    FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<WriteSession> session, engine_->beginWrite(tables));
    locked = absl::Now();
    FLATSTORE_ASSIGN_OR_RETURN(TransactionResult r, apply(*request, *session));
    FLATSTORE_RETURN_IF_ERROR(session->commit());
    return r;
  }();
  const absl::Time end = absl::Now();
  request->lock_hold_us = absl::ToInt64Microseconds(end - locked);
  if (metrics_ != nullptr) {
    if (result.ok()) {
      metrics_->recordGroup(request->changes.empty() ? 0 : 1, request->lock_hold_us,
                            absl::ToInt64Microseconds(locked - begin));
    } else {
      metrics_->recordFailedCommit();
    }
  }
  if (result.ok() && request->changes.size() >= 16) {
    // The pace of large requests sizes chunks (performChunked), as on SQLite.
    int64_t per_change =
        absl::ToInt64Nanoseconds(end - locked) / static_cast<int64_t>(request->changes.size());
    int64_t old = nanos_per_change_.load(std::memory_order_relaxed);
    nanos_per_change_.store(std::max<int64_t>(1, (old * 7 + per_change) / 8),
                            std::memory_order_relaxed);
  }
  if (result.ok() && !request->changes.empty()) {
    // Counted when published, after the commit (see PgSequence).
    std::vector<std::unique_ptr<CommitRequest>> one;
    one.push_back(std::move(request));
    std::vector<absl::StatusOr<TransactionResult>> results{result};
    CommitEvent event = Writer::observedChanges(one, results, sequence_->next());
    if (publish_) publish_(std::move(event));
    request = std::move(one[0]);
  }
  request->callbacks->complete(*request, std::move(result));
  absl::MutexLock lock(&mu_);
  committing_ -= 1;
}

absl::Status PgWriter::writeEntry(const std::function<absl::Status(EntryWriter&)>& fn) {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return absl::FailedPreconditionError("the workspace is shut down");
  }
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<WriteSession> session, engine_->beginWrite({}));
  FLATSTORE_RETURN_IF_ERROR(fn(*session));
  return session->commit();
}

absl::Status PgWriter::putEntry(std::string_view key, Dictionary::Kind kind, std::string_view type,
                                std::span<const uint8_t> value) {
  return writeEntry([&](EntryWriter& w) { return w.putEntry(key, kind, type, value); });
}

absl::Status PgWriter::eraseEntry(std::string_view key) {
  return writeEntry([&](EntryWriter& w) { return w.eraseEntry(key); });
}

void PgWriter::addBackfill(TableState* table) {
  absl::MutexLock lock(&mu_);
  if (!stopped_) backfills_.push_back(table);
}

void PgWriter::awaitBackfills() {
  absl::MutexLock lock(&mu_);
  auto done = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return backfills_.empty() || stopped_; };
  mu_.Await(absl::Condition(&done));
}

void PgWriter::backfillLoop() {
  while (true) {
    TableState* table = nullptr;
    {
      absl::MutexLock lock(&mu_);
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !backfills_.empty() || stopped_;
      };
      mu_.Await(absl::Condition(&work));
      if (stopped_) return;
      table = backfills_.front();
    }
    absl::StatusOr<bool> more = engine_->backfillStep(*table, backfill_batch_);
    // A failed back-fill (duplicates under a new unique index, a lost server) leaves the
    // index incomplete; queries keep reading past it.
    if (!more.ok() || !*more) {
      absl::MutexLock lock(&mu_);
      if (!backfills_.empty() && backfills_.front() == table) backfills_.pop_front();
    }
  }
}

absl::Status PgWriter::stop() {
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return committing_ == 0; };
    mu_.Await(absl::Condition(&idle));
  }
  if (backfill_thread_.joinable()) backfill_thread_.join();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// PgCommitWatcher

absl::Status PgCommitWatcher::start() {
  FLATSTORE_ASSIGN_OR_RETURN(feed_, engine_->openCommitFeed());
  thread_ = std::thread([this] { loop(); });
  return absl::OkStatus();
}

void PgCommitWatcher::stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (feed_ != nullptr) feed_->interrupt();
  if (thread_.joinable()) thread_.join();
}

void PgCommitWatcher::loop() {
  int failures = 0;
  absl::Time last_read = absl::InfinitePast();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    // Another client's hint wakes the wait early and is read at once. The feed is also
    // read once per interval without one (a hint may be lost), and after a failure,
    // but not on every wake-up by this client's own commits' hints: each read scans
    // the server's lock table.
    absl::StatusOr<bool> hinted = feed_->wait(interval_);
    absl::Status s = hinted.status();
    const absl::Time now = absl::Now();
    if (s.ok() &&
        (*hinted || failures > 0 || !unpublished_.empty() || now - last_read >= interval_)) {
      last_read = now;
      s = publishForeignCommits();
    }
    if (s.ok()) {
      if (failures > 0 && metrics_ != nullptr) metrics_->recordWatcher(absl::OkStatus());
      failures = 0;
      continue;
    }
    failures += 1;
    absl::Status reported(
        s.code(), absl::StrCat("following other clients' commits to ", engine_->location(),
                               " failed (", failures, " attempts in a row): ", s.message()));
    if (metrics_ != nullptr) metrics_->recordWatcher(reported);
    if (failures >= CommitWatcher::kFailuresToEndSubscriptions) hub_->failAll(reported);
    absl::MutexLock lock(&mu_);
    // Back-off, as the SQLite watcher's: doubling from the interval up to a second.
    absl::Duration delay = std::min(interval_ * (int64_t{1} << std::min(failures - 1, 16)),
                                    std::max(interval_, absl::Seconds(1)));
    mu_.AwaitWithTimeout(absl::Condition(&stop_), delay);
  }
}

absl::Status PgCommitWatcher::publishForeignCommits() {
  // Commits read before are kept until they are published: the feed does not give them
  // again, so a failure below (the server lost while the objects are read) must not
  // lose them.
  FLATSTORE_ASSIGN_OR_RETURN(std::vector<ForeignCommit> fresh, feed_->read());
  unpublished_.insert(unpublished_.end(), std::make_move_iterator(fresh.begin()),
                      std::make_move_iterator(fresh.end()));
  if (unpublished_.empty()) return absl::OkStatus();
  const std::vector<ForeignCommit>& commits = unpublished_;
  std::map<int64_t, TableState*> observed;
  for (TableState* t : tables_->observed()) observed[t->id] = t;
  // One event per commit, empty for those that changed no observed table.
  std::vector<CommitEvent> events(commits.size());
  if (!observed.empty()) {
    // The objects as they are now: a later commit may have replaced them, and then
    // says so itself.
    FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<ReadView> view, engine_->snapshot());
    for (size_t i = 0; i < commits.size(); ++i) {
      FLATSTORE_ASSIGN_OR_RETURN(
          events[i],
          foreignCommitEvent(
              commits[i].versionstamp.commitSequence(), commits[i].records, observed,
              [&view](const TableState& t, int64_t rowid) { return view->rowByRowid(t, rowid); }));
    }
  }
  // Every commit read is counted, in the feed's order, whether it had an event or not:
  // a table observed from now on re-queries past it (ObserverHub::add).
  for (CommitEvent& e : events) {
    e.sequence = sequence_->next();
    if (!e.tables.empty()) hub_->publish(std::move(e));
  }
  unpublished_.clear();
  return absl::OkStatus();
}

}  // namespace flatstore::internal
