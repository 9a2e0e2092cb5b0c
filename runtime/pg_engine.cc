#include "runtime/pg_engine.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/pg_change_feed.h"
#include "runtime/pg_pipeline.h"
#include "runtime/pg_query.h"
#include "runtime/pg_read_view.h"
#include "runtime/pg_write_session.h"

// The engine itself: opening the database, connections and their pool, registered
// tables and their statements. Its read views are pg_read_view.cc's, its write sessions
// pg_write_session.cc's, its change feed pg_change_feed.cc's.

namespace flatstore::internal {

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
  return pgBeginWrite(this, tables);
}

absl::StatusOr<std::unique_ptr<ReadView>> PgEngine::snapshot() { return pgOpenSnapshot(this); }

}  // namespace flatstore::internal
