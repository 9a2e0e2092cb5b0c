#include "runtime/catalog.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"

namespace flatstore::internal {

namespace {

// Format 1 kept the commit sequence and the last versionstamp in flatstore_meta and a
// version per table in flatstore_tables, three more pages written by every commit.
// Format 2 reads all of them from the change log's newest row.
absl::Status upgradeFormat(Connection& c) {
  FLATSTORE_RETURN_IF_ERROR(c.exec("BEGIN IMMEDIATE", c.path()));
  absl::Status s = [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement f, c.prepare("SELECT value FROM flatstore_meta WHERE key = 'format'", c.path()));
    FLATSTORE_ASSIGN_OR_RETURN(bool row, f.step(c.path()));
    if (row && f.columnInt(0) >= kFormatVersion) return absl::OkStatus();  // done meanwhile
    return c.exec(absl::StrFormat(
        "ALTER TABLE flatstore_changes ADD COLUMN last_vs INTEGER NOT NULL DEFAULT 0;"
        "INSERT OR IGNORE INTO flatstore_changes(seq, origin, changes) "
        "  SELECT coalesce((SELECT value FROM flatstore_meta WHERE key = 'seq'), 0), 0, x'';"
        "UPDATE flatstore_changes SET last_vs = "
        "  coalesce((SELECT value FROM flatstore_meta WHERE key = 'last_vs'), 0) "
        "  WHERE seq = (SELECT max(seq) FROM flatstore_changes);"
        "DELETE FROM flatstore_meta WHERE key IN ('seq', 'last_vs');"
        "UPDATE flatstore_meta SET value = %d WHERE key = 'format';",
        kFormatVersion));
  }();
  if (!s.ok()) {
    c.rollbackQuietly();
    return absl::Status(s.code(), absl::StrCat(c.path(), ": upgrading to format ", kFormatVersion,
                                               ": ", s.message()));
  }
  return c.exec("COMMIT", c.path());
}

}  // namespace

absl::Status initializeDatabase(Connection& c, bool synchronous_full) {
  // Reading the schema is the first access: a file that is not SQLite fails here with
  // SQLITE_NOTADB before anything is written.
  bool has_meta = false;
  int64_t format = 0;
  int64_t other_tables = 0;
  {
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement s, c.prepare("SELECT name FROM sqlite_master WHERE type = 'table'", c.path()));
    while (true) {
      FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(c.path()));
      if (!row) break;
      std::string_view name = s.columnText(0);
      if (name == "flatstore_meta") {
        has_meta = true;
      } else if (name.rfind("sqlite_", 0) != 0) {
        other_tables += 1;
      }
    }
  }
  if (!has_meta && other_tables > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(c.path(), " is a SQLite database that flatstore did not create (it has ",
                     other_tables, " tables and no flatstore_meta); refusing to use it"));
  }
  if (has_meta) {
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement s, c.prepare("SELECT value FROM flatstore_meta WHERE key = 'format'", c.path()));
    FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(c.path()));
    format = row ? s.columnInt(0) : 0;
    if (format > kFormatVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat(c.path(), " was written by a newer flatstore (format ", format,
                       "); this version reads format ", kFormatVersion, " and older"));
    }
    if (format < 1) {
      return absl::FailedPreconditionError(
          absl::StrCat(c.path(), ": flatstore_meta has no valid format version"));
    }
  }
  FLATSTORE_RETURN_IF_ERROR(c.exec("PRAGMA journal_mode = WAL", c.path()));
  FLATSTORE_RETURN_IF_ERROR(
      c.exec(synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL"));
  if (has_meta) return format < kFormatVersion ? upgradeFormat(c) : absl::OkStatus();
  FLATSTORE_RETURN_IF_ERROR(c.exec("BEGIN IMMEDIATE", c.path()));
  absl::Status s = c.exec(absl::StrFormat(
      "CREATE TABLE IF NOT EXISTS flatstore_meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
      "INSERT OR IGNORE INTO flatstore_meta VALUES('format', %d);"
      "CREATE TABLE IF NOT EXISTS flatstore_tables(name TEXT PRIMARY KEY, version INTEGER "
      "NOT NULL, schema_hash INTEGER NOT NULL, schema BLOB);"
      "CREATE TABLE IF NOT EXISTS flatstore_indexes(index_table TEXT PRIMARY KEY, table_name "
      "TEXT NOT NULL, next_rowid INTEGER);"
      "CREATE TABLE IF NOT EXISTS flatstore_kv(key TEXT PRIMARY KEY, kind INTEGER NOT NULL, "
      "type TEXT, value BLOB);"
      "CREATE TABLE IF NOT EXISTS flatstore_changes(seq INTEGER PRIMARY KEY, origin INTEGER NOT "
      "NULL, changes BLOB NOT NULL, last_vs INTEGER NOT NULL DEFAULT 0);"
      "INSERT OR IGNORE INTO flatstore_changes VALUES(0, 0, x'', 0);"
      "INSERT OR IGNORE INTO flatstore_meta VALUES('log_pruned_through', 0);",
      kFormatVersion));
  if (!s.ok()) {
    c.rollbackQuietly();
    return s;
  }
  return c.exec("COMMIT", c.path());
}

TableState::TableState(const TableDescription& d)
    : desc(d),
      quoted(quoteIdentifier(d.table_name)),
      ready_(new std::atomic<bool>[d.indexes.size()]) {
  std::string cols;
  std::string marks;
  for (const KeyColumn& k : d.key_columns) {
    cols += quoteIdentifier(k.column) + ", ";
    marks += "?, ";
  }
  insert_sql = absl::StrCat("INSERT INTO ", quoted, "(", cols, "p, vs) VALUES(", marks, "?, ?)");
  update_bytes_sql = absl::StrCat("UPDATE ", quoted, " SET p = ?, vs = ? WHERE rowid = ?");
  reinsert_sql =
      absl::StrCat("INSERT INTO ", quoted, "(rowid, ", cols, "p, vs) VALUES(?, ", marks, "?, ?)");
  select_by_rowid_sql = absl::StrCat("SELECT rowid, p, vs FROM ", quoted, " WHERE rowid = ?");
  select_by_key_sql = absl::StrCat("SELECT rowid, p, vs FROM ", quoted, " WHERE ");
  for (size_t i = 0; i < d.key_columns.size(); ++i) {
    absl::StrAppend(&select_by_key_sql, i == 0 ? "" : " AND ",
                    quoteIdentifier(d.key_columns[i].column), " = ?");
  }
  delete_sql = absl::StrCat("DELETE FROM ", quoted, " WHERE rowid = ?");
  for (size_t i = 0; i < d.indexes.size(); ++i) {
    std::string t = quoteIdentifier(d.indexes[i].table);
    index_insert_sql.push_back(absl::StrCat("INSERT INTO ", t, "(rowid, value) VALUES(?, ?)"));
    index_upsert_sql.push_back(absl::StrCat("INSERT INTO ", t,
                                            "(rowid, value) VALUES(?, ?) ON CONFLICT(rowid) DO "
                                            "UPDATE SET value = excluded.value"));
    index_delete_sql.push_back(absl::StrCat("DELETE FROM ", t, " WHERE rowid = ?"));
    ready_[i].store(false);
  }
}

namespace {

// ensureTable, or with `may_write` false the same checks on a read transaction: then
// `*needs_write` tells that something is missing or stale, and `state` is not ready.
absl::Status loadOrCreateTable(Connection& c, TableState& state, bool may_write,
                               bool* needs_write) {
  *needs_write = false;
  auto write = [&]() {
    *needs_write = !may_write;
    return may_write;
  };
  const TableDescription& d = state.desc;
  std::string what = absl::StrCat("table ", av(d.table_name));
  bool created = false;
  {
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement * s, c.cached("SELECT schema_hash FROM flatstore_tables WHERE name = ?", what));
    s->bindText(1, d.table_name);
    absl::StatusOr<bool> row = s->step(what);
    int64_t stored = row.ok() && *row ? s->columnInt(0) : 0;
    bool exists = row.ok() && *row;
    s->reset();
    if (!row.ok()) return row.status();
    if (exists && static_cast<uint64_t>(stored) != d.schema_hash) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "table %s is stored with layout hash %016x but this schema has %016x: its primary key "
          "changed, which an existing database cannot follow",
          av(d.table_name), static_cast<uint64_t>(stored), d.schema_hash));
    }
    if (!exists) {
      if (!write()) return absl::OkStatus();
      FLATSTORE_RETURN_IF_ERROR(c.exec(d.create_table_sql, what));
      FLATSTORE_ASSIGN_OR_RETURN(
          Statement ins,
          c.prepare("INSERT INTO flatstore_tables(name, version, schema_hash, schema) "
                    "VALUES(?, 0, ?, ?)",
                    what));
      ins.bindText(1, d.table_name);
      ins.bindInt(2, static_cast<int64_t>(d.schema_hash));
      ins.bindBlob(3, d.binary_schema);
      FLATSTORE_RETURN_IF_ERROR(ins.run(what));
      created = true;
    } else {
      // Keep the stored schema current so that tools decode with the newest fields.
      FLATSTORE_ASSIGN_OR_RETURN(
          Statement stale,
          c.prepare("SELECT 1 FROM flatstore_tables WHERE name = ? AND schema IS NOT ?", what));
      stale.bindText(1, d.table_name);
      stale.bindBlob(2, d.binary_schema);
      FLATSTORE_ASSIGN_OR_RETURN(bool differs, stale.step(what));
      if (differs) {
        if (!write()) return absl::OkStatus();
        FLATSTORE_ASSIGN_OR_RETURN(
            Statement up, c.prepare("UPDATE flatstore_tables SET schema = ? WHERE name = ?", what));
        up.bindBlob(1, d.binary_schema);
        up.bindText(2, d.table_name);
        FLATSTORE_RETURN_IF_ERROR(up.run(what));
      }
    }
  }
  {
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement s, c.prepare("SELECT rowid FROM flatstore_tables WHERE name = ?", what));
    s.bindText(1, d.table_name);
    FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(what));
    if (row) state.id = s.columnInt(0);
  }
  bool empty = created;
  if (!created) {
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement s, c.prepare(absl::StrCat("SELECT 1 FROM ", state.quoted, " LIMIT 1"), what));
    FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(what));
    empty = !row;
  }
  for (size_t i = 0; i < d.indexes.size(); ++i) {
    const IndexDescription& index = d.indexes[i];
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement s,
        c.prepare("SELECT next_rowid FROM flatstore_indexes WHERE index_table = ?", what));
    s.bindText(1, index.table);
    FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(what));
    if (row) {
      state.setIndexReady(static_cast<int>(i), s.columnIsNull(0));
      continue;
    }
    if (!write()) return absl::OkStatus();
    FLATSTORE_RETURN_IF_ERROR(c.exec(index.create_table_sql, what));
    FLATSTORE_RETURN_IF_ERROR(c.exec(index.create_index_sql, what));
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement ins,
        c.prepare("INSERT INTO flatstore_indexes(index_table, table_name, next_rowid) "
                  "VALUES(?, ?, ?)",
                  what));
    ins.bindText(1, index.table);
    ins.bindText(2, d.table_name);
    if (empty) {
      ins.bindNull(3);
    } else {
      ins.bindInt(3, 0);
    }
    FLATSTORE_RETURN_IF_ERROR(ins.run(what));
    state.setIndexReady(static_cast<int>(i), empty);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ensureTable(Connection& c, TableState& state) {
  bool needs_write = false;
  return loadOrCreateTable(c, state, /*may_write=*/true, &needs_write);
}

absl::StatusOr<bool> loadStoredTable(Connection& c, TableState& state) {
  bool needs_write = false;
  FLATSTORE_RETURN_IF_ERROR(loadOrCreateTable(c, state, /*may_write=*/false, &needs_write));
  return !needs_write;
}

absl::StatusOr<bool> backfillStep(Connection& c, TableState& state, int batch) {
  const TableDescription& d = state.desc;
  for (size_t i = 0; i < d.indexes.size(); ++i) {
    if (state.indexReady(static_cast<int>(i))) continue;
    const IndexDescription& index = d.indexes[i];
    std::string what = absl::StrCat("back-filling index ", av(index.table));
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement progress,
        c.prepare("SELECT next_rowid FROM flatstore_indexes WHERE index_table = ?", what));
    progress.bindText(1, index.table);
    FLATSTORE_ASSIGN_OR_RETURN(bool row, progress.step(what));
    if (!row || progress.columnIsNull(0)) {
      state.setIndexReady(static_cast<int>(i), true);
      continue;
    }
    int64_t next = progress.columnInt(0);
    FLATSTORE_ASSIGN_OR_RETURN(Statement scan,
                               c.prepare(absl::StrCat("SELECT rowid, p FROM ", state.quoted,
                                                      " WHERE rowid >= ? ORDER BY rowid LIMIT ?"),
                                         what));
    scan.bindInt(1, next);
    scan.bindInt(2, batch);
    // Rows the writer wrote since the index was created already have their entry.
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement insert,
        c.prepare(absl::StrCat("INSERT OR IGNORE INTO ", quoteIdentifier(index.table),
                               "(rowid, value) VALUES(?, ?)"),
                  what));
    int count = 0;
    int64_t last = next - 1;
    std::vector<Value> values;
    while (true) {
      FLATSTORE_ASSIGN_OR_RETURN(bool more, scan.step(what));
      if (!more) break;
      last = scan.columnInt(0);
      FLATSTORE_ASSIGN_OR_RETURN(ObjectBuffer bytes, verifiedCopy(d, scan.columnBlob(1), last));
      values.clear();
      d.index_values_of(bytes.data(), &values);
      insert.bindInt(1, last);
      insert.bind(2, values[i]);
      FLATSTORE_RETURN_IF_ERROR(insert.run(what));
      count += 1;
    }
    bool done = count < batch;
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement update,
        c.prepare("UPDATE flatstore_indexes SET next_rowid = ? WHERE index_table = ?", what));
    if (done) {
      update.bindNull(1);
    } else {
      update.bindInt(1, last + 1);
    }
    update.bindText(2, index.table);
    FLATSTORE_RETURN_IF_ERROR(update.run(what));
    // Readiness is published by the caller after the commit.
    return true;
  }
  return false;
}

}  // namespace flatstore::internal
