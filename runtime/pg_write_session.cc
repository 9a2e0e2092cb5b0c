#include "runtime/pg_write_session.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/pg_engine.h"
#include "runtime/pg_pipeline.h"
#include "runtime/pg_read_view.h"
#include "runtime/pg_schema.h"

namespace flatstore::internal {
namespace {

// NOTIFY payloads stop at 8000 bytes; a longer table list is sent as "*".
constexpr size_t kMaxPayload = 7900;
// A client prunes the change log at its first commit in each span of this many
// transaction ids.
constexpr uint64_t kPruneEvery = 64;

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
    if (reads_ == nullptr) reads_ = pgReadsInTransaction(engine_, conn_.get());
    return *reads_;
  }

  absl::Status apply(uint16_t position, std::span<EncodedChange> changes) override {
    return applyChecked(position, changes, {}, nullptr, /*only=*/false).status();
  }
  absl::StatusOr<int> applyUnlessChanged(uint16_t position, std::span<EncodedChange> changes,
                                         std::span<const TableState* const> read,
                                         const ReadMark* mark) override {
    return applyChecked(position, changes, read, mark, /*only=*/!in_request_);
  }

  // The savepoint and its end go with the next round trip; after a failed statement the
  // transaction stays aborted until the ROLLBACK TO that endRequest(false) queues.
  void beginRequest() override {
    conn_->queue("SAVEPOINT request", {}, "write session");
    in_request_ = true;
  }
  void endRequest(bool keep) override {
    if (!keep) conn_->queue("ROLLBACK TO SAVEPOINT request", {}, "write session");
    conn_->queue("RELEASE SAVEPOINT request", {}, "write session");
    in_request_ = false;
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
    // The start's three statements, and a request's savepoint queued after them.
    std::vector<PgResult> start = conn_->takeQueuedResults();
    if (start.size() < 3) {
      return absl::UnavailableError(absl::StrCat("the write session did not start on server ",
                                                 conn_->server(),
                                                 ": the statement it went out with failed"));
    }
    FLATSTORE_ASSIGN_OR_RETURN(int64_t id, start[2].getInt64(0, 0));
    FLATSTORE_ASSIGN_OR_RETURN(int64_t generation, start[2].getInt64(0, 1));
    xid_ = static_cast<uint64_t>(id);
    return engine_->refreshStale(*conn_, tables_, generation);
  }
  // apply() and applyUnlessChanged(): with `mark`, the check runs first, in the same
  // round trip. The `only` request of a session needs no savepoint: should it fail,
  // the session is rolled back as a whole. Inside beginRequest() the caller's
  // savepoint holds the request, and endRequest(false) undoes it.
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
  std::unique_ptr<ReadView> reads_;  // made on first use
  uint64_t xid_ = 0;
  std::vector<const TableState*> tables_;  // declared
  // A conflicting request's changes stay in the transaction (applyUnlessChanged).
  bool doomed_ = false;
  bool in_request_ = false;  // between beginRequest() and endRequest()
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
  std::optional<PgConflictQuery> check;
  if (mark != nullptr && !read.empty()) {
    if (mark->snapshot.empty()) return 0;
    check = pgConflictQuery(*engine_, read, *mark);
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
  // apply() outside a request brings its own savepoint.
  const bool own_savepoint = !only && !in_request_;
  if (own_savepoint) {
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
        if (sql.index_unique[x] && indexChanged(c, x)) {
          add(i, sql.clear_index[x], {PgParam::int64(c.rowid)});
        }
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
  if (own_savepoint) {
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
      doomed_ = doomed_ || !in_request_;
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
    if (in_request_) return absl::OkStatus();  // endRequest(false)
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
    FLATSTORE_ASSIGN_OR_RETURN(int changed, pgConflictOf(out.results[0], *check, *mark));
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

absl::StatusOr<std::unique_ptr<WriteSession>> pgBeginWrite(
    PgEngine* engine, std::span<const TableState* const> tables) {
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgWriteSession> s,
                             PgWriteSession::begin(engine, tables));
  return std::unique_ptr<WriteSession>(std::move(s));
}

}  // namespace flatstore::internal
