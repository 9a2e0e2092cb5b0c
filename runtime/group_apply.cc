// The writer's group apply (writer.h): a group of requests applied in one write
// transaction and committed once, under the writer role, which the caller holds.
//
// A request is checked first: when a newer program relaid out a table it changes, a
// predecessor it read from was overwritten, or another process committed to a table it
// read, it runs again under the lock if it already handed its tables on, and otherwise
// fails with conflictError (its closure runs again on a fresh snapshot). Then its changes
// are written; the group's change-log row follows them. A group of several requests is
// applied without savepoints when none brings work to run under the lock; when one of
// them fails, the transaction is rolled back and the group applied again with a
// savepoint per request, so that the failing one rolls back alone. A request whose
// creations took their keys as free (CommitRequest::keys_unchecked) and that fails with
// AlreadyExists is rolled back and its closure run again here with every key looked up,
// in its place: in its savepoint, or after the rollback of a group without savepoints.
// The results complete the requests, and the group's changes reach the observers
// (observedChanges).
//
// The writer thread, the mailbox, batching and syncing are writer.cc's.
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/catalog.h"
#include "runtime/change_log.h"
#include "runtime/dictionary.h"
#include "runtime/pipeline.h"
#include "runtime/row_writes.h"
#include "runtime/sqlite.h"
#include "runtime/sqlite_read_view.h"
#include "runtime/writer.h"

namespace flatstore::internal {

namespace {

constexpr char kConflictPayload[] = "flatstore.dev/conflict";
constexpr char kKeyTakenPayload[] = "flatstore.dev/unchecked-key-taken";

// Whether applyRequest() failed with `status` because a key a creation took as free may
// have been taken: the request is then ready to run its closure again with checked keys.
bool uncheckedKeyTaken(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kKeyTakenPayload).has_value();
}

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

void Writer::failGroup(std::vector<std::unique_ptr<CommitRequest>>& group,
                       const absl::Status& error) {
  for (auto& r : group) {
    if (r->handedOn()) r->pipelining.in_flight->failed = true;
    r->lock_hold_us = 0;
    r->callbacks->complete(*r, error);
  }
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
  absl::Status written = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_) -> absl::Status {
    if (request.apply) FLATSTORE_RETURN_IF_ERROR(request.apply(*db_));
    if (request.entries) {
      SqliteEntryWriter entries(*db_);
      FLATSTORE_RETURN_IF_ERROR(request.entries(entries));
    }
    for (const EncodedChange& c : request.changes) {
      FLATSTORE_RETURN_IF_ERROR(applyRemovals(*db_, c));
    }
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
    return absl::OkStatus();
  }();
  if (request.keys_unchecked && absl::IsAlreadyExists(written)) {
    // A key a creation took as free may have been taken (or a unique value met
    // another): with that key looked up, its submit would have failed, and the closure
    // decided what to do then. The caller rolls the request back; its closure runs
    // again under the lock, where nothing read before matters, with every key checked.
    request.keys_unchecked = false;
    request.check_keys = true;
    request.run_under_lock = true;
    request.read_tables.clear();
    request.pipelining.predecessors.clear();
    request.changes.clear();
    request.entries = nullptr;
    written.SetPayload(kKeyTakenPayload, absl::Cord("1"));
    return written;
  }
  FLATSTORE_RETURN_IF_ERROR(written);
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
  // One pass over the group. False when an optimistic pass met a failing request, or a
  // pass without savepoints a request whose unchecked key was taken: the pass stopped
  // there, and the transaction holds what it applied before.
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
      if (uncheckedKeyTaken(s)) {
        // Its closure runs again with checked keys, in its place: in its savepoint at
        // once, or in the pass after the rollback of a group applied without them.
        if (!use_savepoints) return false;
        group_status = db_->exec("ROLLBACK TO request", "group commit");
        if (!group_status.ok()) break;
        result = TransactionResult();
        s = applyRequest(*group[i], Versionstamp(seq, static_cast<uint16_t>(i)), &result);
      }
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
    // Nothing of the first pass stays; the requests it applied before the failing one
    // are applied again (a handed-on request's record is rewritten then), a lone one
    // still without a savepoint.
    optimistic = false;
    use_savepoints = group.size() > 1;
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
