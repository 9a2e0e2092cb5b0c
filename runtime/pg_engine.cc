#include "runtime/pg_engine.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/pg_change_feed.h"
#include "runtime/pg_pipeline.h"
#include "runtime/pg_query.h"

namespace flatstore::internal {
namespace {

// NOTIFY payloads stop at 8000 bytes; a longer table list is sent as "*".
constexpr size_t kMaxPayload = 7900;
// A client prunes the change log at its first commit in each span of this many
// transaction ids.
constexpr uint64_t kPruneEvery = 64;

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

// The statement that finds the first change of `tables` by another origin that
// `mark`'s snapshot does not see, and how far the log was pruned (conflictOf reads its
// result).
struct ConflictQuery {
  std::string sql;
  std::vector<PgParam> params;
  std::vector<int64_t> ids;  // of `tables`, in order
};

ConflictQuery conflictQuery(PgEngine& engine, std::span<const TableState* const> tables,
                            const ReadMark& mark) {
  ConflictQuery q;
  for (const TableState* t : tables) q.ids.push_back(t->id);
  q.sql = engine.sql().conflict;
  q.params = {PgParam::text(absl::StrCat("{", absl::StrJoin(q.ids, ","), "}")),
              PgParam::int64(static_cast<int64_t>(mark.sequence)), PgParam::int64(engine.origin()),
              PgParam::text(mark.snapshot)};
  return q;
}

// The index in the query's tables of the first one changed, or -1; 0 when the log no
// longer covers `mark`.
absl::StatusOr<int> conflictOf(const PgResult& r, const ConflictQuery& q, const ReadMark& mark) {
  if (!r.isNull(0, 0)) {
    FLATSTORE_ASSIGN_OR_RETURN(int64_t pruned, r.getInt64(0, 0));
    if (pruned > 0 && mark.sequence <= static_cast<uint64_t>(pruned)) return 0;
  }
  if (r.isNull(0, 1)) return -1;
  FLATSTORE_ASSIGN_OR_RETURN(int64_t id, r.getInt64(0, 1));
  return static_cast<int>(std::find(q.ids.begin(), q.ids.end(), id) - q.ids.begin());
}

// The index in `tables` of the first table that a commit by another origin changed and
// that `mark`'s snapshot does not see, or -1; 0 when the log no longer covers `mark`
// (ReadView::changedSince). One round trip.
absl::StatusOr<int> pgChangedSince(PgConnection& conn, PgEngine& engine,
                                   std::span<const TableState* const> tables,
                                   const ReadMark& mark) {
  if (tables.empty()) return -1;
  if (mark.snapshot.empty()) return 0;
  ConflictQuery q = conflictQuery(engine, tables, mark);
  FLATSTORE_ASSIGN_OR_RETURN(PgResult r, conn.query(q.sql, q.params, "conflict check"));
  return conflictOf(r, q, mark);
}

// ---------------------------------------------------------------------------------------
// Reads

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
      if (start.size() != 2) return absl::InternalError("the snapshot's mark was not read");
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
    if (start.size() != 2) return absl::InternalError("the snapshot's mark was not read");
    FLATSTORE_ASSIGN_OR_RETURN(mark_, markOf(start[1]));
    frontier_ = below;
    return below;
  }

  PgConnection* conn_;
  std::unique_ptr<PgConnection> owned_;  // a snapshot's own connection
  std::optional<ReadMark> mark_;         // read with the first statement (open())
  std::optional<uint64_t> frontier_;
};

// ---------------------------------------------------------------------------------------
// Writes

class PgWriteSession : public WriteSession {
 public:
  static absl::StatusOr<std::unique_ptr<PgWriteSession>> begin(
      PgEngine* engine, std::span<const TableState* const> tables) {
    std::vector<int32_t> keys;
    for (const TableState* t : tables) {
      keys.push_back(pgLockKey(engine->schema(), absl::StrCat("table ", av(t->desc.table_name))));
    }
    // One fixed order for every session: no two can wait for each other in a cycle.
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, engine->acquire());
    std::unique_ptr<PgWriteSession> s(new PgWriteSession(engine, std::move(conn)));
    for (const TableState* t : tables) s->declared_.insert(t);
    // With the session's first statement (the conflict check, or its first request), in
    // its round trip. The server runs the statements in order, so the transaction id is
    // taken only once every lock is held (see pg_engine.h). unnest keeps the array's
    // order, so the locks are taken in it.
    s->conn_->queue("BEGIN", {}, "write session");
    s->conn_->queue("SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::integer[]) AS k",
                    {PgParam::int32(pgLockSpace(engine->schema())),
                     PgParam::text(absl::StrCat("{", absl::StrJoin(keys, ","), "}"))},
                    "table locks");
    // With the id, the catalog generation, read under the locks: a program that
    // changed what these tables' writes must carry (a newer schema, an index) bumped it
    // in a transaction that either ended before, or waits for these locks to add an
    // index (pg_schema.h), so a stale bridge is never committed with (takeStart).
    s->conn_->queue(
        absl::StrCat("SELECT pg_current_xact_id()::text::bigint, coalesce((SELECT "
                     "value FROM ",
                     pgQuote(engine->schema()), ".flatstore_meta WHERE key = 'catalog'), 0)"),
        {}, "write session");
    s->tables_.assign(tables.begin(), tables.end());
    return s;
  }

  ~PgWriteSession() override { giveBack(engine_, std::move(conn_), EndTransaction::kAndWait); }

  // Valid once a statement ran (see started()).
  Versionstamp versionstamp(uint16_t position) const override {
    return Versionstamp(xid_, position);
  }

  ReadView& reads() override {
    if (reads_ == nullptr) reads_ = PgReadView::inTransaction(engine_, conn_.get());
    return *reads_;
  }

  absl::Status apply(uint16_t position, std::span<EncodedChange> changes) override {
    return applyChecked(position, changes, {}, nullptr, /*only=*/false).status();
  }
  absl::StatusOr<int> applyUnlessChanged(uint16_t position, std::span<EncodedChange> changes,
                                         std::span<const TableState* const> read,
                                         const ReadMark* mark) override {
    return applyChecked(position, changes, read, mark, /*only=*/true);
  }

  absl::Status putEntry(std::string_view key, Dictionary::Kind kind, std::string_view type,
                        std::span<const uint8_t> value) override {
    return conn_
        ->query(absl::StrCat("INSERT INTO ", pgQuote(engine_->schema()),
                             ".flatstore_kv(key, kind, type, value) VALUES($1, $2, $3, $4) "
                             "ON CONFLICT(key) DO UPDATE SET kind = excluded.kind, "
                             "type = excluded.type, value = excluded.value"),
                {PgParam::text(key), PgParam::int32(static_cast<int32_t>(kind)),
                 PgParam::text(type), PgParam::bytes(value)},
                absl::StrCat("dictionary key '", av(key), "'"))
        .status();
  }

  absl::Status eraseEntry(std::string_view key) override {
    return conn_
        ->query(absl::StrCat("DELETE FROM ", pgQuote(engine_->schema()),
                             ".flatstore_kv WHERE key = $1"),
                {PgParam::text(key)}, absl::StrCat("dictionary key '", av(key), "'"))
        .status();
  }

  absl::Status commit() override;

 private:
  PgWriteSession(PgEngine* engine, std::unique_ptr<PgConnection> conn)
      : engine_(engine), conn_(std::move(conn)) {}

  // Runs the session's start (begin()) if no statement took it along yet, and takes it.
  absl::Status started() {
    if (xid_ != 0) return absl::OkStatus();
    FLATSTORE_RETURN_IF_ERROR(conn_->flushQueued());
    return takeStart();
  }
  // Reads the transaction id the start took, and makes the bridges of the session's
  // tables current when the catalog generation says another program changed them
  // (PgEngine::refreshStale); a change encoded with a replaced bridge is then not
  // committed (PgWriter runs its closure again).
  absl::Status takeStart() {
    std::vector<PgResult> start = conn_->takeQueuedResults();
    if (start.size() != 3) return absl::InternalError("the write session did not start");
    FLATSTORE_ASSIGN_OR_RETURN(int64_t id, start[2].getInt64(0, 0));
    FLATSTORE_ASSIGN_OR_RETURN(int64_t generation, start[2].getInt64(0, 1));
    xid_ = static_cast<uint64_t>(id);
    return engine_->refreshStale(*conn_, tables_, generation);
  }
  // apply() and applyUnlessChanged(): with `mark`, the check runs first, in the same
  // round trip. The `only` request of a session needs no savepoint: should it fail,
  // the session is rolled back as a whole.
  absl::StatusOr<int> applyChecked(uint16_t position, std::span<EncodedChange> changes,
                                   std::span<const TableState* const> read, const ReadMark* mark,
                                   bool only);

  // The status for a failed statement of change `c`: AlreadyExists naming the key or
  // the unique field when `constraint` is one of the table's.
  static absl::Status describeFailure(const absl::Status& st, const std::string& constraint,
                                      const PgTableSql& sql, const EncodedChange& c);
  // After a lost connection at COMMIT: whether the transaction committed, asked on a
  // new connection.
  absl::Status resolveCommit(const absl::Status& lost);

  PgEngine* const engine_;
  std::unique_ptr<PgConnection> conn_;
  std::unique_ptr<PgReadView> reads_;  // made on first use
  uint64_t xid_ = 0;
  std::vector<const TableState*> tables_;  // declared
  // A conflicting request's changes stay in the transaction (applyUnlessChanged).
  bool doomed_ = false;
  std::set<const TableState*> declared_;
  // The change-log records of the applied requests, per table id.
  std::map<int64_t, std::string> log_;
};

absl::Status PgWriteSession::describeFailure(const absl::Status& st, const std::string& constraint,
                                             const PgTableSql& sql, const EncodedChange& c) {
  const TableDescription& d = c.table->desc;
  if (!absl::IsAlreadyExists(st)) return st;
  if (constraint == sql.key_constraint) {
    return absl::AlreadyExistsError(absl::StrCat("table ", av(d.table_name),
                                                 ": an object with primary key ", keyText(c.key),
                                                 " already exists"));
  }
  for (size_t x = 0; x < sql.index_names.size(); ++x) {
    if (constraint != sql.index_names[x]) continue;
    return absl::AlreadyExistsError(absl::StrCat(
        "table ", av(d.table_name), ": unique field '", sql.index_fields[x], "' already has value ",
        x < c.index_values.size() ? c.index_values[x].toString() : "?"));
  }
  return st;
}

absl::StatusOr<int> PgWriteSession::applyChecked(uint16_t position,
                                                 std::span<EncodedChange> changes,
                                                 std::span<const TableState* const> read,
                                                 const ReadMark* mark, bool only) {
  std::optional<ConflictQuery> check;
  if (mark != nullptr && !read.empty()) {
    if (mark->snapshot.empty()) return 0;
    check = conflictQuery(*engine_, read, *mark);
  }
  const PgParam at = PgParam::int64(position);  // the rows compute their versionstamps
  std::vector<const PgTableSql*> sqls;
  for (const EncodedChange& c : changes) {
    if (c.op != EncodedChange::Op::kNone && !declared_.contains(c.table)) {
      return absl::FailedPreconditionError(
          absl::StrCat("table ", av(c.table->desc.table_name),
                       " is not among the tables the transaction declared"));
    }
    FLATSTORE_ASSIGN_OR_RETURN(const PgTableSql* sql, engine_->sqlOf(*c.table));
    if ((c.op == EncodedChange::Op::kInsert || c.op == EncodedChange::Op::kUpdate) &&
        c.index_values.size() != sql->index_columns.size()) {
      // The caller runs a change encoded with another bridge again (PgWriter::apply).
      return absl::InternalError(absl::StrCat(
          "table ", av(c.table->desc.table_name), ": a change has ", c.index_values.size(),
          " index values for ", sql->index_columns.size(), " indexes"));
    }
    sqls.push_back(sql);
  }
  PgPipeline pipe(*conn_);
  std::vector<int> change_of;  // per statement: its change, or -1
  if (check.has_value()) {
    pipe.add(check->sql, check->params, "conflict check");
    change_of.push_back(-1);
  }
  if (!only) {
    pipe.add("SAVEPOINT request", {}, "write session");
    change_of.push_back(-1);
  }
  auto add = [&](size_t i, const std::string& sql, std::vector<PgParam> params) {
    pipe.add(sql, std::move(params), std::string(changes[i].table->desc.table_name));
    change_of.push_back(static_cast<int>(i));
  };
  // First pass: what deletions, key changes and changed unique values free, so that the
  // second pass may take it over in any order (a closure may swap two keys).
  for (size_t i = 0; i < changes.size(); ++i) {
    const EncodedChange& c = changes[i];
    const PgTableSql& sql = *sqls[i];
    if (c.op == EncodedChange::Op::kDelete ||
        (c.op == EncodedChange::Op::kUpdate && c.key_changed)) {
      add(i, sql.remove, {PgParam::int64(c.rowid)});
    } else if (c.op == EncodedChange::Op::kUpdate) {
      for (size_t x = 0; x < sql.index_columns.size(); ++x) {
        bool changed =
            x >= c.old_index_values.size() || !(c.old_index_values[x] == c.index_values[x]);
        if (sql.index_unique[x] && changed) add(i, sql.clear_index[x], {PgParam::int64(c.rowid)});
      }
    }
  }
  std::vector<std::pair<size_t, size_t>> inserts;  // (statement, change)
  for (size_t i = 0; i < changes.size(); ++i) {
    const EncodedChange& c = changes[i];
    const PgTableSql& sql = *sqls[i];
    const bool insert = c.op == EncodedChange::Op::kInsert;
    if (!insert && c.op != EncodedChange::Op::kUpdate) continue;
    std::vector<PgParam> params;
    if (insert || c.key_changed) {
      if (!insert) params.push_back(PgParam::int64(c.rowid));
      for (const Value& k : c.key) params.push_back(pgParam(k));
      for (const Value& v : c.index_values) params.push_back(pgParam(v));
      params.push_back(PgParam::bytes(c.bytes.span()));
      params.push_back(at);
    } else {
      params.push_back(PgParam::bytes(c.bytes.span()));
      params.push_back(at);
      for (const Value& v : c.index_values) params.push_back(pgParam(v));
      params.push_back(PgParam::int64(c.rowid));
    }
    if (insert) inserts.emplace_back(pipe.size(), i);
    add(i, insert ? sql.insert : c.key_changed ? sql.reinsert : sql.update, std::move(params));
  }
  if (!only) {
    pipe.add("RELEASE SAVEPOINT request", {}, "write session");
    change_of.push_back(-1);
  }
  PgPipeline::Outcome out = pipe.run();
  // The session's start went along with the first request (begin()).
  if (xid_ == 0) {
    absl::Status taken = takeStart();
    if (!taken.ok()) return out.status.ok() ? taken : out.status;
  }
  // A change encoded with a bridge the start replaced (or another session did since the
  // closure ran) may miss a newer program's fields or indexes: never committed.
  for (const EncodedChange& c : changes) {
    if (c.op == EncodedChange::Op::kInsert || c.op == EncodedChange::Op::kUpdate) {
      if (c.bridge == c.table->bridge()) continue;
      doomed_ = true;
      auto it = std::find(read.begin(), read.end(), c.table);
      if (it != read.end()) return static_cast<int>(it - read.begin());
      return absl::AbortedError(absl::StrCat("table ", av(c.table->desc.table_name),
                                             ": another program changed its schema or "
                                             "indexes; encode the changes again"));
    }
  }
  // Undoes the request: back to its savepoint when a statement after it failed (the
  // RELEASE did not run); once all ran, or without a savepoint, the session can only be
  // rolled back as a whole.
  const size_t savepoint = check.has_value() ? 1 : 0;
  auto undo = [&]() -> absl::Status {
    if (out.status.ok() || only) {
      doomed_ = true;
      return absl::OkStatus();
    }
    if (out.results.size() <= savepoint || conn_->broken()) return absl::OkStatus();
    return conn_->execute("ROLLBACK TO SAVEPOINT request; RELEASE SAVEPOINT request",
                          "write session");
  };
  if (check.has_value() && !out.results.empty()) {
    // A conflict outweighs any failure of the request's statements: the closure runs
    // again on a snapshot that has what it missed.
    FLATSTORE_ASSIGN_OR_RETURN(int changed, conflictOf(out.results[0], *check, *mark));
    if (changed >= 0) {
      FLATSTORE_RETURN_IF_ERROR(undo());
      return changed;
    }
  }
  if (!out.status.ok()) {
    FLATSTORE_RETURN_IF_ERROR(undo());
    int i = change_of[static_cast<size_t>(out.failed)];
    if (i < 0) return out.status;
    return describeFailure(out.status, out.constraint, *sqls[static_cast<size_t>(i)],
                           changes[static_cast<size_t>(i)]);
  }
  for (const auto& [statement, i] : inserts) {
    FLATSTORE_ASSIGN_OR_RETURN(changes[i].rowid, out.results[statement].getInt64(0, 0));
  }
  for (const EncodedChange& c : changes) {
    if (c.op == EncodedChange::Op::kNone) continue;
    LogRecord r;
    r.table_id = c.table->id;
    r.rowid = c.rowid;
    r.position = position;
    r.deleted = c.op == EncodedChange::Op::kDelete;
    if (r.deleted) r.key = c.key;
    appendLogRecord(r, &log_[c.table->id]);
  }
  return -1;
}

absl::Status PgWriteSession::commit() {
  if (doomed_) {
    return absl::FailedPreconditionError(
        "a request of this write session failed or conflicted; it can only be rolled back");
  }
  FLATSTORE_RETURN_IF_ERROR(started());
  const PgEngineSql& sql = engine_->sql();
  PgPipeline pipe(*conn_);
  std::string tables;
  for (const auto& [id, records] : log_) {
    pipe.add(sql.log_insert,
             {PgParam::int64(static_cast<int64_t>(xid_)), PgParam::int64(id),
              PgParam::int64(engine_->origin()),
              PgParam::bytes({reinterpret_cast<const uint8_t*>(records.data()), records.size()})},
             "change log");
    absl::StrAppend(&tables, tables.empty() ? "" : ",", id);
  }
  if (!log_.empty() && engine_->pruneDue(xid_ / kPruneEvery)) {
    // Keeps the newest log_retention rows; readers asking for older changes are told
    // (OutOfRange) by the mark.
    pipe.add(sql.prune_mark, {PgParam::int64(engine_->options().log_retention)}, "change log");
    pipe.add(sql.prune_log, {}, "change log");
  }
  const size_t commit_at = pipe.size();
  pipe.add("COMMIT", {}, "commit");
  if (!log_.empty()) {
    // The hint goes out after the commit, in a transaction of its own that does not wait
    // for its flush, in the same round trip. Inside the writing transaction, NOTIFY would
    // hold PostgreSQL's database-wide notification lock through the commit's flush and
    // make every committing writer wait for the others. A hint lost between the two (the
    // client dies) only delays listeners until the next hint or read.
    std::string payload = absl::StrCat(xid_, " ", engine_->origin(), " ", tables);
    if (payload.size() > kMaxPayload) payload = absl::StrCat(xid_, " ", engine_->origin(), " *");
    // One statement, in a transaction of its own that ends with the round trip (the
    // pipeline's implicit transaction after the COMMIT); set_config's third argument
    // makes the setting last only as long as that transaction.
    pipe.add(engine_->sql().notify, {PgParam::text(engine_->channel()), PgParam::text(payload)},
             "notify");
  }
  PgPipeline::Outcome out = pipe.run();
  if (!out.status.ok() && static_cast<size_t>(out.failed) <= commit_at) {
    // Lost on the way: the server may have committed before the reply was lost.
    if (conn_->broken()) return resolveCommit(out.status);
    return out.status;
  }
  // A transaction in which a statement failed ends in a rollback; the tag says so.
  if (std::string_view(PQcmdStatus(const_cast<PGresult*>(out.results[commit_at].get()))) !=
      "COMMIT") {
    return absl::AbortedError(
        absl::StrCat("COMMIT rolled the transaction back (server ", conn_->server(), ")"));
  }
  // The commit stands even if its hint failed.
  if (!out.status.ok() && !conn_->broken()) conn_->execute("ROLLBACK").IgnoreError();
  return absl::OkStatus();
}

absl::Status PgWriteSession::resolveCommit(const absl::Status& lost) {
  absl::StatusOr<std::unique_ptr<PgConnection>> c = engine_->connect();
  if (!c.ok()) {
    return absl::UnavailableError(absl::StrCat(
        lost.message(), "; whether transaction ", xid_,
        " committed is unknown: the server cannot be reached (", c.status().message(), ")"));
  }
  absl::StatusOr<PgResult> r = (*c)->query("SELECT pg_xact_status($1::text::xid8)",
                                           {PgParam::text(absl::StrCat(xid_))}, "commit outcome");
  std::string state;
  if (r.ok() && r->rows() == 1 && !r->isNull(0, 0)) state = std::string(*r->getText(0, 0));
  engine_->release(std::move(*c));
  if (state == "committed") return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(lost.message(), "; transaction ", xid_, " is ",
                                             state.empty() ? "of unknown outcome" : state,
                                             ", nothing of it was written"));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// PgEngine

PgEngine::PgEngine(PgEngineOptions options, std::string schema, int64_t origin,
                   std::string location)
    : options_(std::move(options)),
      schema_(std::move(schema)),
      origin_(origin),
      location_(std::move(location)),
      channel_(absl::StrFormat("flatstore_%016x", pgNameHash(schema_, "channel"))),
      sql_(schema_) {}

PgEngineSql::PgEngineSql(const std::string& schema) {
  const std::string s = pgQuote(schema);
  conflict = absl::StrCat(
      "SELECT (SELECT value FROM ", s, ".flatstore_meta WHERE key = 'log_pruned_through'), ",
      "(SELECT table_id FROM ", s,
      ".flatstore_changes WHERE table_id = ANY($1::bigint[]) AND xid >= $2 AND origin <> $3 "
      "AND NOT pg_visible_in_snapshot(xid::text::xid8, $4::pg_snapshot) LIMIT 1)");
  log_insert = absl::StrCat("INSERT INTO ", s,
                            ".flatstore_changes(xid, table_id, origin, changes) "
                            "VALUES($1, $2, $3, $4)");
  prune_mark = absl::StrCat(
      "UPDATE ", s, ".flatstore_meta SET value = greatest(value, coalesce((SELECT xid FROM ", s,
      ".flatstore_changes ORDER BY xid DESC OFFSET $1 LIMIT 1), 0)) "
      "WHERE key = 'log_pruned_through'");
  prune_log = absl::StrCat("DELETE FROM ", s, ".flatstore_changes WHERE xid <= (SELECT value FROM ",
                           s, ".flatstore_meta WHERE key = 'log_pruned_through')");
  notify = "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)";
}

PgEngine::~PgEngine() = default;

absl::StatusOr<std::unique_ptr<PgEngine>> PgEngine::open(PgEngineOptions options) {
  int64_t origin = options.origin;
  if (origin == 0) {
    std::random_device rd;
    std::mt19937_64 gen((uint64_t{rd()} << 32) ^ rd());
    do {
      origin = static_cast<int64_t>(gen() >> 1);
    } while (origin == 0);
  }
  // The first connection, before the engine exists: the same back-off as later ones.
  PgEngine probe(options, "", origin, "");
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, probe.connect());
  FLATSTORE_ASSIGN_OR_RETURN(std::string schema, pgOpenDatabase(*conn));
  std::string location = absl::StrCat("PostgreSQL (", conn->server(), ") schema ", schema);
  std::unique_ptr<PgEngine> engine(
      new PgEngine(std::move(options), std::move(schema), origin, std::move(location)));
  FLATSTORE_RETURN_IF_ERROR(engine->markClient(*conn));
  engine->release(std::move(conn));
  return engine;
}

absl::Status PgEngine::markClient(PgConnection& c) {
  // A shared session lock: clients never wait for each other on it, and it stays until
  // the connection closes.
  return c
      .query("SELECT pg_advisory_lock_shared($1)",
             {PgParam::int64(int64_t{pgLockSpace(schema_)} << 32)}, "client mark")
      .status();
}

absl::StatusOr<std::unique_ptr<PgConnection>> PgEngine::connect() {
  const absl::Time deadline = absl::Now() + options_.reconnect_limit;
  absl::Duration delay = absl::Milliseconds(20);
  while (true) {
    absl::StatusOr<std::unique_ptr<PgConnection>> c = PgConnection::connect(options_.uri);
    if (c.ok() && !schema_.empty()) {
      absl::Status marked = markClient(**c);
      if (marked.ok()) return c;
      c = marked;
    }
    if (c.ok() || !absl::IsUnavailable(c.status())) return c;
    if (absl::Now() + delay > deadline) return c.status();
    // Back-off between attempts to reach a server that is down or restarting.
    absl::SleepFor(delay);
    delay = std::min(delay * 2, absl::Seconds(1));
  }
}

bool PgEngine::pruneDue(uint64_t span) {
  uint64_t last = pruned_span_.load(std::memory_order_relaxed);
  while (span > last) {
    if (pruned_span_.compare_exchange_weak(last, span, std::memory_order_relaxed)) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<PgConnection>> PgEngine::acquire() {
  while (true) {
    std::unique_ptr<PgConnection> c;
    {
      absl::MutexLock lock(&mu_);
      if (idle_.empty()) break;
      // The newest connection whose rollback's reply is in, or else the oldest one,
      // whose reply has had the longest to arrive (see giveBack).
      auto it = std::find_if(idle_.rbegin(), idle_.rend(),
                             [](const std::unique_ptr<PgConnection>& c) { return !c->replyDue(); });
      auto pick = it != idle_.rend() ? std::prev(it.base()) : idle_.begin();
      c = std::move(*pick);
      idle_.erase(pick);
    }
    if (!c->broken() && c->settle().ok() && !c->inTransaction()) return c;
  }
  return connect();
}

void PgEngine::release(std::unique_ptr<PgConnection> conn) {
  if (conn == nullptr || conn->broken() || (!conn->replyDue() && conn->inTransaction())) return;
  absl::MutexLock lock(&mu_);
  if (static_cast<int>(idle_.size()) < options_.max_idle_connections) {
    idle_.push_back(std::move(conn));
  }
}

void giveBack(PgEngine* engine, std::unique_ptr<PgConnection> conn, EndTransaction end) {
  if (conn == nullptr) return;
  // Statements that never went out opened nothing.
  conn->dropQueued();
  if (!conn->broken() && conn->inTransaction()) {
    if (end == EndTransaction::kWithoutWaiting) {
      conn->rollbackWithoutWaiting();
    } else {
      conn->execute("ROLLBACK").IgnoreError();
    }
  }
  engine->release(std::move(conn));
}

absl::StatusOr<const PgTableSql*> PgEngine::sqlOf(const TableState& table) {
  absl::MutexLock lock(&mu_);
  auto it = tables_.find(&table);
  if (it == tables_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("table ", av(table.desc.table_name), " is not registered with ", location_));
  }
  return it->second.sql.back().get();
}

absl::Status PgEngine::registerTable(TableState& table) {
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> c, acquire());
  absl::StatusOr<int64_t> generation = pgRegisterTable(*c, schema_, table);
  giveBack(this, std::move(c));
  FLATSTORE_RETURN_IF_ERROR(generation.status());
  auto sql = std::make_unique<PgTableSql>(schema_, table.desc, table.id, table.bridge());
  absl::MutexLock lock(&mu_);
  Registered& r = tables_[&table];
  r.state = &table;
  r.sql.push_back(std::move(sql));
  r.catalog_seen = *generation;
  return absl::OkStatus();
}

absl::Status PgEngine::refreshStale(PgConnection& c, std::span<const TableState* const> tables,
                                    int64_t generation) {
  // The state of each stale table; none in the usual case, where no program changed the
  // catalog since the tables were registered.
  std::vector<TableState*> stale;
  {
    absl::MutexLock lock(&mu_);
    for (const TableState* t : tables) {
      auto it = tables_.find(t);
      if (it != tables_.end() && it->second.catalog_seen < generation) {
        stale.push_back(it->second.state);
      }
    }
  }
  if (stale.empty()) return absl::OkStatus();
  absl::MutexLock refreshing(&refresh_mu_);
  for (TableState* t : stale) {
    FLATSTORE_ASSIGN_OR_RETURN(int64_t seen, pgRefreshTable(c, schema_, *t));
    auto sql = std::make_unique<PgTableSql>(schema_, t->desc, t->id, t->bridge());
    absl::MutexLock lock(&mu_);
    Registered& r = tables_[t];
    r.sql.push_back(std::move(sql));
    r.catalog_seen = seen;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> PgEngine::backfillStep(TableState& table, int batch) {
  FLATSTORE_ASSIGN_OR_RETURN(const PgTableSql* sql, sqlOf(table));
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> c, acquire());
  absl::StatusOr<bool> more = pgBackfillStep(*c, schema_, *sql, table, batch);
  giveBack(this, std::move(c));
  return more;
}

absl::StatusOr<std::unique_ptr<WriteSession>> PgEngine::beginWrite(
    std::span<const TableState* const> tables) {
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgWriteSession> s,
                             PgWriteSession::begin(this, tables));
  return std::unique_ptr<WriteSession>(std::move(s));
}

absl::StatusOr<std::unique_ptr<ReadView>> PgEngine::snapshot() {
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgReadView> v, PgReadView::open(this));
  return std::unique_ptr<ReadView>(std::move(v));
}

}  // namespace flatstore::internal
