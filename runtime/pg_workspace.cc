#include "runtime/pg_workspace.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "flatstore/status.h"
#include "runtime/pg_read_view.h"
#include "runtime/pipeline.h"
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
  relief_thread_ = std::thread([this] { reliefLoop(); });
}

PgWriter::~PgWriter() { stop().IgnoreError(); }

namespace {

// A group takes at most this many requests: each is a savepoint of the session, and
// PostgreSQL keeps the ids of up to 64 subtransactions per backend where every snapshot
// finds them cheaply.
constexpr size_t kMaxGroup = 32;
// And further requests only while the group holds fewer changes than this.
constexpr size_t kMaxGroupChanges = 4096;

bool contains(const std::vector<const TableState*>& tables, const TableState* t) {
  return std::find(tables.begin(), tables.end(), t) != tables.end();
}

}  // namespace

bool PgWriter::enqueue(std::unique_ptr<CommitRequest> request) {
  // The session locks the declared tables (the closure's), and the tables it changes.
  Queued q;
  q.tables.assign(request->tables.begin(), request->tables.end());
  for (const TableState* t : request->read_tables) {
    if (!contains(q.tables, t)) q.tables.push_back(t);
  }
  for (const EncodedChange& c : request->changes) {
    if (!contains(q.tables, c.table)) q.tables.push_back(c.table);
  }
  q.request = std::move(request);
  {
    absl::MutexLock lock(&mu_);
    if (!stopped_) {
      queue_.push_back(std::move(q));
      return true;
    }
  }
  CommittingScope committing;
  if (q.request->handedOn()) q.request->pipelining.in_flight->failed = true;
  q.request->callbacks->complete(*q.request,
                                 absl::FailedPreconditionError("the workspace is shut down"));
  return false;
}

void PgWriter::submit(std::unique_ptr<CommitRequest> request) { enqueue(std::move(request)); }

void PgWriter::submitOrCommit(std::unique_ptr<CommitRequest> request) {
  if (enqueue(std::move(request))) commitQueued();
}

PgWriter::Group PgWriter::takeGroup() {
  Group group;
  // Tables of requests left in the queue: a later request on one of them waits, so that
  // each table's requests commit in the order they came.
  absl::flat_hash_set<const TableState*> passed;
  size_t changes = 0;
  for (auto it = queue_.begin(); it != queue_.end() && group.requests.size() < kMaxGroup;) {
    const std::vector<const TableState*>& tables = it->tables;
    bool free = true;
    for (const TableState* t : tables) free = free && !held_.contains(t) && !passed.contains(t);
    bool fits = group.requests.empty() ||
                (changes < kMaxGroupChanges &&
                 std::all_of(tables.begin(), tables.end(),
                             [&](const TableState* t) { return contains(group.tables, t); }));
    if (!free || !fits) {
      passed.insert(tables.begin(), tables.end());
      ++it;
      continue;
    }
    if (group.requests.empty()) group.tables = tables;
    changes += it->request->changes.size();
    group.requests.push_back(std::move(it->request));
    it = queue_.erase(it);
  }
  held_.insert(group.tables.begin(), group.tables.end());
  return group;
}

void PgWriter::commitGroups(int max_groups) {
  // Closures under the locks and completion callbacks run here (see CommittingScope).
  CommittingScope committing;
  for (int n = 0;; ++n) {
    Group group;
    {
      absl::MutexLock lock(&mu_);
      if (n == max_groups) {
        relief_wanted_ = relief_wanted_ || !queue_.empty();
        return;
      }
      group = takeGroup();
      if (group.requests.empty()) return;
      committing_ += 1;
    }
    commitGroup(group);
    absl::MutexLock lock(&mu_);
    for (const TableState* t : group.tables) held_.erase(t);
    committing_ -= 1;
  }
}

void PgWriter::reliefLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto wanted = [this]()
                        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return relief_wanted_ || stopped_; };
      mu_.Await(absl::Condition(&wanted));
      // stop() commits what is left itself.
      if (!relief_wanted_) return;
      relief_wanted_ = false;
    }
    commitGroups(std::numeric_limits<int>::max());
  }
}

bool PgWriter::mayRunAgainInSession(const CommitRequest& request) {
  // A closure that runs in the session (under the locks, or because it is stale) may
  // take its keys as free there too.
  return request.handedOn() || request.keys_unchecked || request.run_under_lock ||
         !request.pipelining.predecessors.empty();
}

absl::StatusOr<TransactionResult> PgWriter::apply(CommitRequest& request, WriteSession& session,
                                                  uint16_t position) {
  const bool handed_on = request.handedOn();
  // Another session made the bridges of these tables current (PgEngine::refreshStale)
  // since the closure ran: a change encoded with a replaced one could drop a newer
  // program's fields or miss its indexes, so the closure runs again with the new one.
  // (This session's own start may replace one too: applyUnlessChanged says so.)
  bool stale = false;
  for (const EncodedChange& c : request.changes) {
    if (c.op != EncodedChange::Op::kDelete && c.op != EncodedChange::Op::kNone &&
        c.bridge != c.table->bridge()) {
      if (!handed_on) return conflictError(*c.table);
      stale = true;
    }
  }
  if (request.run_under_lock) {
    // After conflicts: the closure reads the session's own transaction, under the locks
    // of its tables, where no other client can change them; there is nothing to check.
    FLATSTORE_RETURN_IF_ERROR(
        request.callbacks->runUnderLock(session.reads(), request, /*again=*/false));
  }
  // A request before it in this client that its snapshot lacks (committed after it was
  // taken, or earlier in this session) wrote what the closure read.
  const CommitRequest::Pipelining& pipelining = request.pipelining;
  if (!stale && !request.run_under_lock && !pipelining.predecessors.empty()) {
    const uint64_t own = session.versionstamp(0).commitSequence();
    FLATSTORE_ASSIGN_OR_RETURN(
        stale,
        overwrittenSince(
            pipelining.predecessors,
            [&](uint64_t xid) { return xid != own && pgSnapshotSees(request.snapshot_mark, xid); },
            pipelining.reads));
  }
  // Runs the closure again in the session, where it reads every commit before it.
  auto run_again = [&]() -> absl::Status {
    request.changes.clear();
    request.entries = nullptr;
    return request.callbacks->runUnderLock(session.reads(), request, /*again=*/true);
  };
  if (stale) FLATSTORE_RETURN_IF_ERROR(run_again());
  std::vector<const TableState*> read(request.read_tables.begin(), request.read_tables.end());
  // A closure that read nothing opened no snapshot: there is nothing to check. Its
  // tables still go to the session, which names the one whose bridge its start replaced
  // (so that the closure runs again with the new one, as after a conflict).
  const bool snapshot = !read.empty();
  for (const EncodedChange& c : request.changes) {
    if (!contains(read, c.table)) read.push_back(c.table);
  }
  // Applies the request's changes, after the conflict check given `mark`. A creation
  // that took its key as free (request.keys_unchecked) meets a taken key, or a unique
  // value another object has, as the server's unique violation, which fails only this
  // request's statements: its savepoint (see commitGroup) is rolled back, after the
  // round trip's sync, and its closure runs again here, under the locks, with every
  // key looked up, so that it sees the AlreadyExists it would have seen at submit and
  // decides what to do. Not a conflict: the run counts against no retry bound.
  auto apply_changes = [&](const ReadMark* mark) -> absl::StatusOr<int> {
    absl::StatusOr<int> changed = session.applyUnlessChanged(position, request.changes, read, mark);
    if (!request.keys_unchecked || !absl::IsAlreadyExists(changed.status())) return changed;
    session.endRequest(false);
    session.beginRequest();
    request.check_keys = true;
    request.changes.clear();
    request.entries = nullptr;
    FLATSTORE_RETURN_IF_ERROR(
        request.callbacks->runUnderLock(session.reads(), request, /*again=*/false));
    return session.applyUnlessChanged(position, request.changes, read, nullptr);
  };
  // The conflict check (not under the lock), the request's changes and, for the first,
  // the session's start (its locks, transaction id and catalog generation) in one round
  // trip; then the dictionary work, if any.
  const bool check = !request.run_under_lock && !stale && snapshot;
  FLATSTORE_ASSIGN_OR_RETURN(int changed, apply_changes(check ? &request.snapshot_mark : nullptr));
  if (changed >= 0) {
    // A request that still holds its tables runs again on a fresh snapshot; one that
    // gave them to the next closures already runs again here (inside its savepoint:
    // see commitGroup), so that it stays ahead of them.
    if (!handed_on) return conflictError(*read[static_cast<size_t>(changed)]);
    session.endRequest(false);
    session.beginRequest();
    FLATSTORE_RETURN_IF_ERROR(run_again());
    FLATSTORE_ASSIGN_OR_RETURN(changed, apply_changes(nullptr));
    if (changed >= 0) return conflictError(*read[static_cast<size_t>(changed)]);
  }
  if (request.entries) FLATSTORE_RETURN_IF_ERROR(request.entries(session));
  TransactionResult result;
  for (const EncodedChange& c : request.changes) {
    result.inserted += c.op == EncodedChange::Op::kInsert ? 1 : 0;
    result.updated += c.op == EncodedChange::Op::kUpdate ? 1 : 0;
    result.deleted += c.op == EncodedChange::Op::kDelete ? 1 : 0;
  }
  if (!request.changes.empty()) result.versionstamp = session.versionstamp(position);
  return result;
}

void PgWriter::commitGroup(Group& group) {
  std::vector<std::unique_ptr<CommitRequest>>& requests = group.requests;
  std::vector<absl::StatusOr<TransactionResult>> results(requests.size(), TransactionResult{});
  // Several requests, or one whose closure may run again inside the session (after a
  // conflict or a taken key: see apply): each in a savepoint, so that one that fails or
  // conflicts is undone alone. The savepoints go out with the requests' statements, in
  // their round trips.
  const bool savepoints = requests.size() > 1 || mayRunAgainInSession(*requests[0]);
  const absl::Time begin = absl::Now();
  absl::Time locked = begin;
  absl::Status status = [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<WriteSession> session,
                               engine_->beginWrite(group.tables));
    locked = absl::Now();
    bool any = false;
    for (size_t i = 0; i < requests.size(); ++i) {
      CommitRequest& r = *requests[i];
      if (savepoints) session->beginRequest();
      results[i] = apply(r, *session, static_cast<uint16_t>(i));
      if (savepoints) session->endRequest(results[i].ok());
      if (!results[i].ok()) {
        if (r.handedOn()) r.pipelining.in_flight->failed = true;
        // A lost connection fails the whole session; so does any failure of a request
        // without a savepoint.
        if (!savepoints || absl::IsUnavailable(results[i].status())) return results[i].status();
        continue;
      }
      any = true;
      if (r.handedOn()) {
        r.pipelining.in_flight->sequence = session->versionstamp(0).commitSequence();
        r.pipelining.in_flight->applied = writesOf(r.changes);
      }
    }
    // Nothing of the group was applied: nothing to commit.
    if (!any) return absl::OkStatus();
    return session->commit();
  }();
  const absl::Time end = absl::Now();
  const int64_t hold_us = absl::ToInt64Microseconds(end - locked);
  if (!status.ok()) {
    // Nothing of the session is visible: every request fails with its error, or with
    // the session's.
    for (size_t i = 0; i < requests.size(); ++i) {
      if (results[i].ok() || absl::IsUnavailable(status)) results[i] = status;
      if (requests[i]->handedOn()) requests[i]->pipelining.in_flight->failed = true;
    }
  }
  int64_t transactions = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    transactions += results[i].ok() && !requests[i]->changes.empty() ? 1 : 0;
  }
  if (metrics_ != nullptr) {
    if (status.ok()) {
      metrics_->recordGroup(transactions, hold_us, absl::ToInt64Microseconds(locked - begin));
    } else {
      metrics_->recordFailedCommit();
    }
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    if (!results[i].ok() || requests[i]->changes.size() < 16) continue;
    // The pace of large requests sizes chunks (performChunked), as on SQLite.
    int64_t per_change =
        absl::ToInt64Nanoseconds(end - locked) / static_cast<int64_t>(requests[i]->changes.size());
    int64_t old = nanos_per_change_.load(std::memory_order_relaxed);
    nanos_per_change_.store(std::max<int64_t>(1, (old * 7 + per_change) / 8),
                            std::memory_order_relaxed);
  }
  if (transactions > 0 && publish_) {
    // Counted when published, after the commit (see PgSequence).
    publish_(Writer::observedChanges(requests, results, sequence_->next()));
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i]->lock_hold_us = hold_us;
    requests[i]->callbacks->complete(*requests[i], std::move(results[i]));
  }
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
  }
  // What was queued before commits; requests later fail at once.
  commitGroups(std::numeric_limits<int>::max());
  {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return committing_ == 0 && queue_.empty();
    };
    mu_.Await(absl::Condition(&idle));
  }
  if (backfill_thread_.joinable()) backfill_thread_.join();
  if (relief_thread_.joinable()) relief_thread_.join();
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
