#include "runtime/pg_read_view.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/pg_change_feed.h"
#include "runtime/pg_engine.h"
#include "runtime/pg_pipeline.h"
#include "runtime/pg_query.h"

namespace flatstore::internal {

PgConflictQuery pgConflictQuery(PgEngine& engine, std::span<const TableState* const> tables,
                                const ReadMark& mark) {
  PgConflictQuery q;
  for (const TableState* t : tables) q.ids.push_back(t->id);
  q.sql = engine.sql().conflict;
  q.params = {PgParam::text(absl::StrCat("{", absl::StrJoin(q.ids, ","), "}")),
              PgParam::int64(static_cast<int64_t>(mark.sequence)), PgParam::int64(engine.origin()),
              PgParam::text(mark.snapshot)};
  return q;
}

absl::StatusOr<int> pgConflictOf(const PgResult& r, const PgConflictQuery& q,
                                 const ReadMark& mark) {
  if (!r.isNull(0, 0)) {
    FLATSTORE_ASSIGN_OR_RETURN(int64_t pruned, r.getInt64(0, 0));
    if (pruned > 0 && mark.sequence <= static_cast<uint64_t>(pruned)) return 0;
  }
  if (r.isNull(0, 1)) return -1;
  FLATSTORE_ASSIGN_OR_RETURN(int64_t id, r.getInt64(0, 1));
  return static_cast<int>(std::find(q.ids.begin(), q.ids.end(), id) - q.ids.begin());
}

namespace {

// The snapshot of the caller's transaction, as text, and its xmin.
constexpr char kMarkSql[] =
    "SELECT pg_current_snapshot()::text, pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

absl::StatusOr<ReadMark> markOf(const PgResult& r) {
  ReadMark mark;
  FLATSTORE_ASSIGN_OR_RETURN(std::string_view text, r.getText(0, 0));
  mark.snapshot = std::string(text);
  FLATSTORE_ASSIGN_OR_RETURN(int64_t xmin, r.getInt64(0, 1));
  mark.sequence = static_cast<uint64_t>(xmin);
  return mark;
}

// The index in `tables` of the first table that a commit by another origin changed and
// that `mark`'s snapshot does not see, or -1; 0 when the log no longer covers `mark`
// (ReadView::changedSince). One round trip.
absl::StatusOr<int> pgChangedSince(PgConnection& conn, PgEngine& engine,
                                   std::span<const TableState* const> tables,
                                   const ReadMark& mark) {
  if (tables.empty()) return -1;
  if (mark.snapshot.empty()) return 0;
  PgConflictQuery q = pgConflictQuery(engine, tables, mark);
  FLATSTORE_ASSIGN_OR_RETURN(PgResult r, conn.query(q.sql, q.params, "conflict check"));
  return pgConflictOf(r, q, mark);
}

class PgReadView : public ReadView {
 public:
  static absl::StatusOr<std::unique_ptr<PgReadView>> open(PgEngine* engine) {
    FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, engine->acquire());
    std::unique_ptr<PgReadView> view(new PgReadView(engine, conn.get()));
    view->owned_ = std::move(conn);
    // The transaction and its mark travel with the first read, in its round trip: the
    // snapshot is the one the first statement takes.
    queueStart(*view->conn_);
    return view;
  }
  // Reads in the transaction open on `conn` (a write session's), which outlives the
  // view. It has no mark: nothing asks what it saw.
  static std::unique_ptr<PgReadView> inTransaction(PgEngine* engine, PgConnection* conn) {
    return std::unique_ptr<PgReadView>(new PgReadView(engine, conn));
  }
  ~PgReadView() override { giveBack(engine_, std::move(owned_), EndTransaction::kWithoutWaiting); }

  absl::StatusOr<ReadMark> mark() override {
    if (!mark_.has_value()) {
      if (owned_ == nullptr) return ReadMark{};  // in a write session: nothing asks
      FLATSTORE_RETURN_IF_ERROR(conn_->flushQueued());
      std::vector<PgResult> start = conn_->takeQueuedResults();
      if (start.size() != 2) return notStarted();
      FLATSTORE_ASSIGN_OR_RETURN(mark_, markOf(start[1]));
    }
    return *mark_;
  }
  absl::StatusOr<int> changedSince(std::span<const TableState* const> tables,
                                   const ReadMark& since) override {
    return pgChangedSince(*conn_, *engine_, tables, since);
  }

  absl::StatusOr<std::optional<RawRow>> rowByRowid(const TableState& table,
                                                   int64_t rowid) override {
    FLATSTORE_ASSIGN_OR_RETURN(const PgTableSql* sql, engine_->sqlOf(table));
    return pgReadRowByRowid(*conn_, table, *sql, rowid);
  }
  absl::StatusOr<std::optional<RawRow>> rowByKey(const TableState& table,
                                                 const std::vector<Value>& key) override {
    FLATSTORE_ASSIGN_OR_RETURN(const PgTableSql* sql, engine_->sqlOf(table));
    return pgReadRowByKey(*conn_, table, *sql, key);
  }
  // A snapshot's lookups, yes; a write session's run under its locks, where a closure
  // runs only after conflicts, keep to one at a time.
  bool batchesKeyLookups() const override { return owned_ != nullptr; }
  absl::StatusOr<bool> anyKeyExists(const TableState& table,
                                    std::span<const std::vector<Value>> keys) override {
    FLATSTORE_ASSIGN_OR_RETURN(const PgTableSql* sql, engine_->sqlOf(table));
    // One pipeline: its segments are the only round trips (pg_pipeline.h).
    PgPipeline pipe(*conn_);
    for (const std::vector<Value>& key : keys) {
      if (key.size() != table.desc.key_columns.size()) continue;
      std::vector<PgParam> params;
      params.reserve(key.size());
      for (const Value& v : key) params.push_back(pgParam(v));
      pipe.add(sql->select_by_key, std::move(params), std::string(table.desc.table_name));
    }
    PgPipeline::Outcome out = pipe.run();
    FLATSTORE_RETURN_IF_ERROR(out.status);
    for (const PgResult& r : out.results) {
      if (r.rows() > 0) return true;
    }
    return false;
  }
  absl::StatusOr<std::vector<RawRow>> query(const TableState& table, const QuerySpec& spec,
                                            const PendingTable* pending) override {
    FLATSTORE_ASSIGN_OR_RETURN(const PgTableSql* sql, engine_->sqlOf(table));
    return pgExecuteQuery(*conn_, table, *sql, spec, pending);
  }
  absl::StatusOr<int64_t> count(const TableState& table, const QuerySpec& spec,
                                const PendingTable* pending) override {
    FLATSTORE_ASSIGN_OR_RETURN(const PgTableSql* sql, engine_->sqlOf(table));
    return pgExecuteCount(*conn_, table, *sql, spec, pending);
  }

  absl::StatusOr<LogChanges> changesSince(const TableState& table, Versionstamp since) override {
    FLATSTORE_ASSIGN_OR_RETURN(const PgTableSql* sql, engine_->sqlOf(table));
    // The frontier first: with the view's first read, it reads the locks before the
    // snapshot too (see frontier()).
    FLATSTORE_ASSIGN_OR_RETURN(uint64_t below, frontier());
    FLATSTORE_ASSIGN_OR_RETURN(uint64_t pruned, prunedThrough(*conn_, engine_->schema()));
    if (pruned > 0 && since.commitSequence() <= pruned) {
      return absl::OutOfRangeError(absl::StrCat(
          "changes of table ", av(table.desc.table_name), " since versionstamp ", since.toString(),
          " are no longer in the change log (it keeps transactions after ", pruned,
          "); fetch the table instead"));
    }
    // Only below the frontier: every writer there has ended (see pg_change_feed.h).
    FLATSTORE_ASSIGN_OR_RETURN(
        PgResult r,
        conn_->query(
            absl::StrCat("SELECT xid, changes FROM ", pgQuote(engine_->schema()),
                         ".flatstore_changes WHERE table_id = $1 AND xid >= $2 AND "
                         "xid < $3 ORDER BY xid"),
            {PgParam::int64(table.id), PgParam::int64(static_cast<int64_t>(since.commitSequence())),
             PgParam::int64(static_cast<int64_t>(below))},
            "changes since"));
    std::map<int64_t, LogRecord> last;
    for (int i = 0; i < r.rows(); ++i) {
      FLATSTORE_ASSIGN_OR_RETURN(int64_t xid, r.getInt64(i, 0));
      FLATSTORE_ASSIGN_OR_RETURN(std::span<const uint8_t> blob, r.getBytes(i, 1));
      FLATSTORE_ASSIGN_OR_RETURN(std::vector<LogRecord> records, decodeLogRecords(blob));
      for (LogRecord& rec : records) {
        if (Versionstamp(static_cast<uint64_t>(xid), rec.position) <= since) continue;
        last[rec.rowid] = std::move(rec);
      }
    }
    LogChanges out;
    for (auto& [rowid, rec] : last) {
      if (rec.deleted) {
        out.deleted.push_back(rec.key.empty() ? std::vector<Value>{Value::integer(rowid)}
                                              : std::move(rec.key));
        continue;
      }
      FLATSTORE_ASSIGN_OR_RETURN(std::optional<RawRow> row,
                                 pgReadRowByRowid(*conn_, table, *sql, rowid));
      if (row.has_value()) out.changed.push_back(std::move(*row));
    }
    out.through = std::max(since, belowFrontier(below));
    return out;
  }

  absl::StatusOr<Versionstamp> latestVersionstamp() override {
    // The newest commit below the frontier: every transaction with a smaller id has
    // ended, so changesSince from it skips nothing either.
    FLATSTORE_ASSIGN_OR_RETURN(uint64_t below, frontier());
    FLATSTORE_ASSIGN_OR_RETURN(
        PgResult r,
        conn_->query(absl::StrCat("SELECT xid, changes FROM ", pgQuote(engine_->schema()),
                                  ".flatstore_changes WHERE xid = (SELECT max(xid) FROM ",
                                  pgQuote(engine_->schema()), ".flatstore_changes WHERE xid < $1)"),
                     {PgParam::int64(static_cast<int64_t>(below))}, "latest versionstamp"));
    Versionstamp latest;
    for (int i = 0; i < r.rows(); ++i) {
      FLATSTORE_ASSIGN_OR_RETURN(int64_t xid, r.getInt64(i, 0));
      FLATSTORE_ASSIGN_OR_RETURN(std::span<const uint8_t> blob, r.getBytes(i, 1));
      FLATSTORE_ASSIGN_OR_RETURN(std::vector<LogRecord> records, decodeLogRecords(blob));
      for (const LogRecord& rec : records) {
        latest = std::max(latest, Versionstamp(static_cast<uint64_t>(xid), rec.position));
      }
    }
    return latest;
  }

  absl::StatusOr<std::optional<Dictionary::Record>> entry(std::string_view key) override {
    FLATSTORE_ASSIGN_OR_RETURN(
        PgResult r,
        conn_->query(absl::StrCat("SELECT kind, type, value FROM ", pgQuote(engine_->schema()),
                                  ".flatstore_kv WHERE key = $1"),
                     {PgParam::text(key)}, "dictionary"));
    if (r.rows() == 0) return std::nullopt;
    Dictionary::Record rec;
    FLATSTORE_ASSIGN_OR_RETURN(int64_t kind, r.getInt64(0, 0));
    rec.kind = static_cast<Dictionary::Kind>(kind);
    if (!r.isNull(0, 1)) {
      FLATSTORE_ASSIGN_OR_RETURN(std::string_view type, r.getText(0, 1));
      rec.type = std::string(type);
    }
    if (!r.isNull(0, 2)) {
      FLATSTORE_ASSIGN_OR_RETURN(std::span<const uint8_t> value, r.getBytes(0, 2));
      rec.value.assign(value.begin(), value.end());
    }
    return rec;
  }

 private:
  PgReadView(PgEngine* engine, PgConnection* conn) : engine_(engine), conn_(conn) {}

  // The view's transaction and its mark (open()).
  static void queueStart(PgConnection& conn) {
    conn.queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", {}, "snapshot");
    conn.queue(kMarkSql, {}, "snapshot");
  }

  PgEngine* const engine_;
  // The frontier, computed on first use: queries do not need it. When it is the view's
  // first read, pg_locks is read before the snapshot as well, in the same round trip
  // (ahead of the queued start, see frontierOf), and the mark comes back with it;
  // otherwise only after the snapshot, which is also correct but passes over fewer
  // foreign transactions.
  absl::StatusOr<uint64_t> frontier() {
    if (frontier_.has_value()) return *frontier_;
    const int32_t space = pgLockSpace(engine_->schema());
    if (owned_ == nullptr || !conn_->hasQueued()) {
      FLATSTORE_ASSIGN_OR_RETURN(frontier_, frontierOf(*conn_, space));
      return *frontier_;
    }
    conn_->dropQueued();
    queueLocksBefore(*conn_, space);
    queueStart(*conn_);
    std::vector<PgResult> start;
    FLATSTORE_ASSIGN_OR_RETURN(uint64_t below, frontierOf(*conn_, space, &start));
    if (start.size() != 2) return notStarted();
    FLATSTORE_ASSIGN_OR_RETURN(mark_, markOf(start[1]));
    frontier_ = below;
    return below;
  }

  // The snapshot's BEGIN or mark failed with the statement they went out with, which
  // reported the error; asked again, the view says so.
  absl::Status notStarted() const {
    return absl::UnavailableError(absl::StrCat("the snapshot did not start on server ",
                                               conn_->server(), ": its first read failed"));
  }

  PgConnection* conn_;
  std::unique_ptr<PgConnection> owned_;  // a snapshot's own connection
  std::optional<ReadMark> mark_;         // read with the first statement (open())
  std::optional<uint64_t> frontier_;
};

}  // namespace

bool pgSnapshotSees(const ReadMark& mark, uint64_t xid) {
  std::vector<absl::string_view> parts = absl::StrSplit(mark.snapshot, ':');
  uint64_t xmin = 0;
  uint64_t xmax = 0;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &xmin) ||
      !absl::SimpleAtoi(parts[1], &xmax)) {
    return false;
  }
  if (xid < xmin) return true;
  if (xid >= xmax) return false;
  for (absl::string_view running : absl::StrSplit(parts[2], ',', absl::SkipEmpty())) {
    uint64_t x = 0;
    if (!absl::SimpleAtoi(running, &x) || x == xid) return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<ReadView>> pgOpenSnapshot(PgEngine* engine) {
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgReadView> v, PgReadView::open(engine));
  return std::unique_ptr<ReadView>(std::move(v));
}

std::unique_ptr<ReadView> pgReadsInTransaction(PgEngine* engine, PgConnection* conn) {
  return PgReadView::inTransaction(engine, conn);
}

}  // namespace flatstore::internal
