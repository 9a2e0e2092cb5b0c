#include "runtime/reads.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/change_log.h"
#include "runtime/query_exec.h"

namespace flatstore::internal {

absl::StatusOr<std::vector<RawRow>> Reads::runQuery(const TableDescription& d,
                                                    const QuerySpec& spec) {
  FLATSTORE_ASSIGN_OR_RETURN(TableState * t, tables_->get(d));
  // Without pending changes a query is one SQL statement, which reads one snapshot in
  // SQLite's implicit read transaction (from its first step to its reset): no BEGIN
  // and COMMIT around it.
  ReaderPool::Lease c = readers_->checkout();
  return executeQuery(*c, *t, spec, nullptr);
}

absl::StatusOr<int64_t> Reads::runCount(const TableDescription& d, const QuerySpec& spec) {
  FLATSTORE_ASSIGN_OR_RETURN(TableState * t, tables_->get(d));
  // One statement as well (see runQuery).
  ReaderPool::Lease c = readers_->checkout();
  return executeCount(*c, *t, spec, nullptr);
}

absl::Status Reads::snapshot(const std::function<absl::Status(Workspace::Snapshot&)>& fn) {
  // A source that runs every query on one held read transaction.
  class HeldSource : public QuerySource {
   public:
    HeldSource(TableRegistry* tables, Connection* c) : tables_(tables), c_(c) {}
    absl::StatusOr<std::vector<RawRow>> runQuery(const TableDescription& d,
                                                 const QuerySpec& spec) override {
      FLATSTORE_ASSIGN_OR_RETURN(TableState * t, tables_->get(d));
      return executeQuery(*c_, *t, spec, nullptr);
    }
    absl::StatusOr<int64_t> runCount(const TableDescription& d, const QuerySpec& spec) override {
      FLATSTORE_ASSIGN_OR_RETURN(TableState * t, tables_->get(d));
      return executeCount(*c_, *t, spec, nullptr);
    }

   private:
    TableRegistry* tables_;
    Connection* c_;
  };
  return readers_->read([&](Connection& c) -> absl::Status {
    // Pin the snapshot now: SQLite starts it at the first read.
    FLATSTORE_RETURN_IF_ERROR(c.exec("SELECT 1 FROM flatstore_meta LIMIT 1", "snapshot"));
    HeldSource source(tables_, &c);
    Workspace::Snapshot snap(&source);
    return fn(snap);
  });
}

absl::StatusOr<Versionstamp> Reads::latestVersionstamp() {
  Versionstamp vs;
  FLATSTORE_RETURN_IF_ERROR(readers_->read([&](Connection& c) -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(c, "latest versionstamp"));
    vs = head.last_change;
    return absl::OkStatus();
  }));
  return vs;
}

absl::Status Reads::changesSince(const TableDescription& d, Versionstamp since,
                                 std::vector<RawRow>* changed,
                                 std::vector<std::vector<Value>>* deleted, Versionstamp* through) {
  FLATSTORE_ASSIGN_OR_RETURN(TableState * t, tables_->get(d));
  return readers_->read([&](Connection& c) -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(uint64_t pruned, logPrunedThrough(c));
    if (pruned > 0 && since.commitSequence() <= pruned) {
      return absl::OutOfRangeError(absl::StrCat(
          "changes of table ", av(d.table_name), " since versionstamp ", since.toString(),
          " are no longer in the change log (it keeps commits after ", pruned,
          "); fetch the table instead"));
    }
    uint64_t from = since.commitSequence() > 0 ? since.commitSequence() - 1 : 0;
    FLATSTORE_ASSIGN_OR_RETURN(std::vector<LogEntry> entries, readLogAfter(c, from));
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
      FLATSTORE_ASSIGN_OR_RETURN(auto row, readRowByRowid(c, *t, rowid));
      if (row.has_value()) changed->push_back(std::move(*row));
    }
    FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(c, "changes since"));
    *through = head.last_change;
    return absl::OkStatus();
  });
}

absl::StatusOr<ObserverHub::RequeryResult> Reads::requery(TableState* t, const QuerySpec& spec,
                                                          const ObserverHub::TailQuery* tail) {
  ObserverHub::RequeryResult out;
  FLATSTORE_RETURN_IF_ERROR(readers_->read([&](Connection& c) -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(c, "observer re-query"));
    out.sequence = head.sequence;
    if (tail != nullptr && head.sequence == tail->at) {
      FLATSTORE_ASSIGN_OR_RETURN(int changed,
                                 firstChangedSince(c, tail->since, origin_, {&t->id, 1}));
      out.tail = changed < 0;
    }
    FLATSTORE_ASSIGN_OR_RETURN(out.rows,
                               executeQuery(c, *t, out.tail ? tail->spec : spec, nullptr));
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace flatstore::internal
