#include "runtime/catalog.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/version_bridge.h"

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
    addIndexSql(d.indexes[i].table);
    ready_[i].store(false);
  }
}

TableState::~TableState() = default;

void TableState::addIndexSql(std::string_view table) {
  std::string t = quoteIdentifier(table);
  index_insert_sql.push_back(absl::StrCat("INSERT INTO ", t, "(rowid, value) VALUES(?, ?)"));
  index_upsert_sql.push_back(absl::StrCat(
      "INSERT INTO ", t,
      "(rowid, value) VALUES(?, ?) ON CONFLICT(rowid) DO UPDATE SET value = excluded.value"));
  index_delete_sql.push_back(absl::StrCat("DELETE FROM ", t, " WHERE rowid = ?"));
}

void TableState::setBridge(std::unique_ptr<const VersionBridge> b) {
  bridge_.store(b.get(), std::memory_order_release);
  if (b != nullptr) bridges_.push_back(std::move(b));
}

bool TableState::indexUnique(size_t i) const {
  size_t own = desc.indexes.size();
  return i < own ? desc.indexes[i].unique : bridge()->foreignIndexes()[i - own].unique;
}

std::string_view TableState::indexFieldPath(size_t i) const {
  size_t own = desc.indexes.size();
  return i < own ? desc.indexes[i].field_path : bridge()->foreignIndexes()[i - own].path.path;
}

void TableState::indexValuesOf(const uint8_t* buffer, const VersionBridge* bridge,
                               std::vector<Value>* out) const {
  desc.index_values_of(buffer, out);
  if (bridge != nullptr) bridge->appendIndexValues(buffer, out);
}

absl::StatusOr<int64_t> readCatalogGeneration(Connection& c) {
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement * s, c.cached("SELECT value FROM flatstore_meta WHERE key = 'catalog'", c.path()));
  absl::StatusOr<bool> row = s->step(c.path());
  int64_t generation = row.ok() && *row ? s->columnInt(0) : 0;
  s->reset();
  FLATSTORE_RETURN_IF_ERROR(row.status());
  return generation;
}

absl::StatusOr<std::vector<StoredIndex>> readStoredIndexes(Connection& c, std::string_view table) {
  std::string what = absl::StrCat("table ", av(table));
  FLATSTORE_ASSIGN_OR_RETURN(Statement s,
                             c.prepare("SELECT index_table, next_rowid FROM flatstore_indexes "
                                       "WHERE table_name = ? ORDER BY rowid",
                                       what));
  s.bindText(1, table);
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement u,
      c.prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", what));
  std::string prefix = absl::StrCat(av(table), "$");
  std::vector<StoredIndex> out;
  while (true) {
    FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(what));
    if (!row) break;
    StoredIndex index;
    index.table = std::string(s.columnText(0));
    if (!absl::StartsWith(index.table, prefix)) continue;
    index.id_path = index.table.substr(prefix.size());
    if (!s.columnIsNull(1)) index.backfill_next = s.columnInt(1);
    u.bindText(1, index.table);
    FLATSTORE_ASSIGN_OR_RETURN(bool urow, u.step(what));
    index.unique = urow && absl::StartsWithIgnoreCase(av(u.columnText(0)), "CREATE UNIQUE");
    u.reset();
    out.push_back(std::move(index));
  }
  return out;
}

namespace {

// Gives `state` the bridge it needs (none when the program's schema is the newest and
// declares every index the file holds), and the SQL of the foreign indexes it writes.
absl::Status attachBridge(Connection& c, TableState& state, std::vector<uint8_t> newest) {
  const TableDescription& d = state.desc;
  FLATSTORE_ASSIGN_OR_RETURN(std::vector<StoredIndex> stored, readStoredIndexes(c, d.table_name));
  std::vector<StoredIndex> foreign;
  for (StoredIndex& index : stored) {
    bool declared = false;
    for (const IndexDescription& own : d.indexes) declared = declared || own.table == index.table;
    if (!declared) foreign.push_back(std::move(index));
  }
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<VersionBridge> bridge,
                             VersionBridge::create(d, std::move(newest), foreign));
  FLATSTORE_ASSIGN_OR_RETURN(state.catalog_seen, readCatalogGeneration(c));
  size_t own = d.indexes.size();
  state.index_insert_sql.resize(own);
  state.index_upsert_sql.resize(own);
  state.index_delete_sql.resize(own);
  if (bridge != nullptr) {
    for (const ForeignIndex& x : bridge->foreignIndexes()) state.addIndexSql(x.table);
  }
  // A table that needed no bridge and still needs none keeps its (null) bridge, so
  // that changes encoded meanwhile stay valid.
  if (bridge != nullptr || state.bridge() != nullptr) state.setBridge(std::move(bridge));
  return absl::OkStatus();
}

// Records that this program changed the catalog (see readCatalogGeneration).
absl::Status bumpCatalogGeneration(Connection& c, std::string_view what) {
  return c.exec(
      "INSERT INTO flatstore_meta(key, value) VALUES('catalog', 1) "
      "ON CONFLICT(key) DO UPDATE SET value = value + 1",
      what);
}

// The newest schema of table `d`: the stored one when it is newer than the program's.
// `*program_newer`: the program's is newer, and should replace the stored one.
absl::StatusOr<std::vector<uint8_t>> newestSchema(Connection& c, const TableDescription& d,
                                                  bool* program_newer, std::string_view what) {
  *program_newer = false;
  std::vector<uint8_t> newest(d.binary_schema.begin(), d.binary_schema.end());
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement stored,
      c.prepare("SELECT schema FROM flatstore_tables WHERE name = ? AND schema IS NOT ?", what));
  stored.bindText(1, d.table_name);
  stored.bindBlob(2, d.binary_schema);
  FLATSTORE_ASSIGN_OR_RETURN(bool differs, stored.step(what));
  if (!differs) return newest;
  std::span<const uint8_t> bytes = stored.columnBlob(0);
  FLATSTORE_ASSIGN_OR_RETURN(SchemaOrder order, compareSchemas(d, bytes));
  if (order == SchemaOrder::kStoredNewer) newest.assign(bytes.begin(), bytes.end());
  *program_newer = order == SchemaOrder::kProgramNewer;
  return newest;
}

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
  // The newest schema of the table: the program's unless the file's is newer.
  std::vector<uint8_t> newest(d.binary_schema.begin(), d.binary_schema.end());
  bool added_index = false;
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
      // Keep the stored schema the newest, so that tools and older programs decode with
      // every field; an older program keeps it and writes through a bridge.
      bool program_newer = false;
      FLATSTORE_ASSIGN_OR_RETURN(newest, newestSchema(c, d, &program_newer, what));
      if (program_newer) {
        if (!write()) return absl::OkStatus();
        FLATSTORE_ASSIGN_OR_RETURN(
            Statement up, c.prepare("UPDATE flatstore_tables SET schema = ? WHERE name = ?", what));
        up.bindBlob(1, d.binary_schema);
        up.bindText(2, d.table_name);
        FLATSTORE_RETURN_IF_ERROR(up.run(what));
        FLATSTORE_RETURN_IF_ERROR(bumpCatalogGeneration(c, what));
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
      sqlite3_bind_null(ins.get(), 3);
    } else {
      ins.bindInt(3, 0);
    }
    FLATSTORE_RETURN_IF_ERROR(ins.run(what));
    state.setIndexReady(static_cast<int>(i), empty);
    added_index = true;
  }
  // Older programs that use the table now maintain the new index too.
  if (added_index && !created) FLATSTORE_RETURN_IF_ERROR(bumpCatalogGeneration(c, what));
  return attachBridge(c, state, std::move(newest));
}

}  // namespace

absl::Status ensureTable(Connection& c, TableState& state) {
  bool needs_write = false;
  return loadOrCreateTable(c, state, /*may_write=*/true, &needs_write);
}

absl::Status refreshTable(Connection& c, TableState& state) {
  std::string what = absl::StrCat("table ", av(state.desc.table_name));
  bool program_newer = false;
  FLATSTORE_ASSIGN_OR_RETURN(std::vector<uint8_t> newest,
                             newestSchema(c, state.desc, &program_newer, what));
  return attachBridge(c, state, std::move(newest));
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
      sqlite3_bind_null(update.get(), 1);
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
