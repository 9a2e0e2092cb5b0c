#include "runtime/sqlite_read_view.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/change_log.h"
#include "runtime/dictionary.h"
#include "runtime/query_exec.h"

namespace flatstore::internal {

absl::Status SqliteReadView::begin() {
  FLATSTORE_RETURN_IF_ERROR(c_->exec("BEGIN", "read transaction"));
  in_transaction_ = true;
  // Pin the snapshot now: SQLite starts it at the first read.
  return c_->exec("SELECT 1 FROM flatstore_meta LIMIT 1", "snapshot");
}

void SqliteReadView::end() {
  if (!in_transaction_) return;
  in_transaction_ = false;
  // A read transaction's COMMIT writes nothing; should it fail, the rollback still
  // ends the transaction before the connection is used again.
  if (!c_->exec("COMMIT", "read transaction").ok()) c_->rollbackQuietly();
}

absl::StatusOr<ReadMark> SqliteReadView::mark() {
  if (!mark_.has_value()) {
    FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(*c_, "snapshot"));
    mark_ = ReadMark{head.sequence, {}};
  }
  return *mark_;
}

absl::StatusOr<int> SqliteReadView::changedSince(std::span<const TableState* const> tables,
                                                 const ReadMark& since) {
  std::vector<int64_t> ids;
  ids.reserve(tables.size());
  for (const TableState* t : tables) ids.push_back(t->id);
  return firstChangedSince(*c_, since.sequence, origin_, ids);
}

absl::StatusOr<std::optional<RawRow>> SqliteReadView::rowByRowid(const TableState& table,
                                                                 int64_t rowid) {
  return readRowByRowid(*c_, table, rowid);
}

absl::StatusOr<std::optional<RawRow>> SqliteReadView::rowByKey(const TableState& table,
                                                               const std::vector<Value>& key) {
  return readRowByKey(*c_, table, key);
}

absl::StatusOr<std::vector<RawRow>> SqliteReadView::query(const TableState& table,
                                                          const QuerySpec& spec,
                                                          const PendingTable* pending) {
  return executeQuery(*c_, table, spec, pending);
}

absl::StatusOr<int64_t> SqliteReadView::count(const TableState& table, const QuerySpec& spec,
                                              const PendingTable* pending) {
  return executeCount(*c_, table, spec, pending);
}

absl::StatusOr<LogChanges> SqliteReadView::changesSince(const TableState& table,
                                                        Versionstamp since) {
  FLATSTORE_ASSIGN_OR_RETURN(uint64_t pruned, logPrunedThrough(*c_));
  if (pruned > 0 && since.commitSequence() <= pruned) {
    return absl::OutOfRangeError(
        absl::StrCat("changes of table ", av(table.desc.table_name), " since versionstamp ",
                     since.toString(), " are no longer in the change log (it keeps commits after ",
                     pruned, "); fetch the table instead"));
  }
  uint64_t from = since.commitSequence() > 0 ? since.commitSequence() - 1 : 0;
  FLATSTORE_ASSIGN_OR_RETURN(std::vector<LogEntry> entries, readLogAfter(*c_, from));
  // The last change of each object since `since`.
  std::map<int64_t, const LogRecord*> last;
  for (const LogEntry& e : entries) {
    for (const LogRecord& r : e.records) {
      if (r.table_id != table.id || Versionstamp(e.sequence, r.position) <= since) continue;
      last[r.rowid] = &r;
    }
  }
  LogChanges out;
  for (const auto& [rowid, r] : last) {
    if (r->deleted) {
      out.deleted.push_back(r->key.empty() ? std::vector<Value>{Value::integer(rowid)} : r->key);
      continue;
    }
    FLATSTORE_ASSIGN_OR_RETURN(auto row, readRowByRowid(*c_, table, rowid));
    if (row.has_value()) out.changed.push_back(std::move(*row));
  }
  FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(*c_, "changes since"));
  out.through = head.last_change;
  return out;
}

absl::StatusOr<Versionstamp> SqliteReadView::latestVersionstamp() {
  FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(*c_, "latest versionstamp"));
  return head.last_change;
}

absl::StatusOr<std::optional<Dictionary::Record>> SqliteReadView::entry(std::string_view key) {
  return readEntry(*c_, key);
}

}  // namespace flatstore::internal
