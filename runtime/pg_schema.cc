#include "runtime/pg_schema.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/version_bridge.h"

namespace flatstore::internal {

std::string pgQuote(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

uint64_t pgNameHash(std::string_view schema, std::string_view what) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
  };
  mix(schema);
  mix(std::string_view("\0", 1));
  mix(what);
  return h;
}

int32_t pgLockSpace(std::string_view schema) {
  return static_cast<int32_t>(pgNameHash(schema, "lock space") & 0x7fffffff);
}

int32_t pgLockKey(std::string_view schema, std::string_view what) {
  return static_cast<int32_t>(static_cast<uint32_t>(pgNameHash(schema, what)));
}

PgParam pgParam(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      return PgParam::null();
    case Value::Kind::kInteger:
      return PgParam::int64(v.asInteger());
    case Value::Kind::kReal:
      return PgParam::float64(v.asReal());
    case Value::Kind::kText:
      return PgParam::bytes(
          {reinterpret_cast<const uint8_t*>(v.asText().data()), v.asText().size()});
  }
  return PgParam::null();
}

std::string_view pgColumnType(ColumnType type) {
  switch (type) {
    case ColumnType::kInteger:
      return "bigint";
    case ColumnType::kReal:
      return "double precision";
    case ColumnType::kText:
      return "bytea";
  }
  return "bytea";
}

namespace {

std::string indexColumn(std::string_view id_path) {
  return pgQuote(absl::StrCat("i", av(id_path)));
}

// Takes the advisory lock of `name` in `schema` for the rest of the transaction.
absl::Status lockName(PgConnection& conn, std::string_view schema, std::string_view name,
                      std::string_view what) {
  return conn
      .query("SELECT pg_advisory_xact_lock($1, $2)",
             {PgParam::int32(pgLockSpace(schema)), PgParam::int32(pgLockKey(schema, name))}, what)
      .status();
}

// Runs `body` in a transaction of its own on `conn`, holding the advisory lock of
// `name` in `schema`; rolls back when it fails.
template <class Body>
absl::Status lockedTransaction(PgConnection& conn, std::string_view schema, std::string_view name,
                               std::string_view what, Body body) {
  FLATSTORE_ASSIGN_OR_RETURN(PgTransaction txn, conn.begin());
  FLATSTORE_RETURN_IF_ERROR(lockName(conn, schema, name, what));
  FLATSTORE_RETURN_IF_ERROR(body());
  return txn.commit();
}

// The catalog generation of the database in `s` (quoted): a counter in flatstore_meta
// that a program bumps when it stores a newer schema or adds an index to an existing
// table, so that programs already using the table notice (0 before any bump).
absl::StatusOr<int64_t> catalogGeneration(PgConnection& conn, std::string_view s,
                                          std::string_view what) {
  FLATSTORE_ASSIGN_OR_RETURN(
      PgResult r,
      conn.query(absl::StrCat("SELECT value FROM ", av(s), ".flatstore_meta WHERE key = 'catalog'"),
                 {}, what));
  if (r.rows() == 0) return 0;
  return r.getInt64(0, 0);
}

absl::Status bumpCatalogGeneration(PgConnection& conn, std::string_view s, std::string_view what) {
  return conn.execute(
      absl::StrCat("INSERT INTO ", av(s),
                   ".flatstore_meta(key, value) VALUES('catalog', 1) "
                   "ON CONFLICT(key) DO UPDATE SET value = flatstore_meta.value + 1"),
      what);
}

// The newest schema of `d`, given the stored one in column `col` of `r`'s first row (NULL
// when it equals the program's): the stored one when it is newer. `*program_newer`: the
// program's is newer and should replace it. FailedPrecondition for diverged schemas (see
// compareSchemas).
absl::StatusOr<std::vector<uint8_t>> newestSchema(const TableDescription& d, const PgResult& r,
                                                  int col, bool* program_newer) {
  *program_newer = false;
  std::vector<uint8_t> newest(d.binary_schema.begin(), d.binary_schema.end());
  if (r.isNull(0, col)) return newest;
  FLATSTORE_ASSIGN_OR_RETURN(std::span<const uint8_t> stored, r.getBytes(0, col));
  FLATSTORE_ASSIGN_OR_RETURN(SchemaOrder order, compareSchemas(d, stored));
  if (order == SchemaOrder::kStoredNewer) newest.assign(stored.begin(), stored.end());
  *program_newer = order == SchemaOrder::kProgramNewer;
  return newest;
}

// Gives `table` the bridge it needs given the newest schema (none when the program's
// is the newest and it declares every index of the table in flatstore_indexes).
absl::Status attachBridge(PgConnection& conn, std::string_view s, TableState& table,
                          std::vector<uint8_t> newest, std::string_view what) {
  const TableDescription& d = table.desc;
  FLATSTORE_ASSIGN_OR_RETURN(
      PgResult r,
      conn.query(absl::StrCat("SELECT id_path, is_unique FROM ", av(s),
                              ".flatstore_indexes WHERE table_id = $1 ORDER BY id_path"),
                 {PgParam::int64(table.id)}, what));
  std::vector<StoredIndex> foreign;
  for (int i = 0; i < r.rows(); ++i) {
    FLATSTORE_ASSIGN_OR_RETURN(std::string_view id_path, r.getText(i, 0));
    bool declared = false;
    for (const IndexDescription& own : d.indexes) declared = declared || own.id_path == id_path;
    if (declared) continue;
    StoredIndex& index = foreign.emplace_back();
    index.table = absl::StrCat(av(d.table_name), "$", av(id_path));
    index.id_path = std::string(id_path);
    FLATSTORE_ASSIGN_OR_RETURN(index.unique, r.getBool(i, 1));
  }
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<VersionBridge> bridge,
                             VersionBridge::create(d, std::move(newest), foreign));
  // A table that needed no bridge and still needs none keeps its (null) bridge, so that
  // changes encoded meanwhile stay valid.
  if (bridge != nullptr || table.bridge() != nullptr) table.setBridge(std::move(bridge));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> pgOpenDatabase(PgConnection& conn) {
  FLATSTORE_ASSIGN_OR_RETURN(PgResult current,
                             conn.query("SELECT current_schema()::text", {}, "opening"));
  if (current.isNull(0, 0)) {
    return absl::FailedPreconditionError(
        absl::StrCat("PostgreSQL (", conn.server(),
                     "): no current schema; the search_path names no schema that exists"));
  }
  FLATSTORE_ASSIGN_OR_RETURN(std::string_view name, current.getText(0, 0));
  std::string schema(name);
  const std::string where = absl::StrCat("PostgreSQL (", conn.server(), ") schema ", schema);
  const std::string s = pgQuote(schema);
  absl::Status st = lockedTransaction(conn, schema, "catalog", "opening", [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(
        PgResult tables,
        conn.query("SELECT count(*) FILTER (WHERE c.relname <> 'flatstore_meta'), "
                   "coalesce(bool_or(c.relname = 'flatstore_meta'), false) "
                   "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
                   {PgParam::text(schema)}, "opening"));
    FLATSTORE_ASSIGN_OR_RETURN(int64_t others, tables.getInt64(0, 0));
    FLATSTORE_ASSIGN_OR_RETURN(bool has_meta, tables.getBool(0, 1));
    if (!has_meta && others > 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, " is not a flatstore database (it has ", others,
                       " tables and no flatstore_meta); refusing to use it"));
    }
    if (has_meta) {
      FLATSTORE_ASSIGN_OR_RETURN(
          PgResult format,
          conn.query(absl::StrCat("SELECT value FROM ", s, ".flatstore_meta WHERE key = 'format'"),
                     {}, "opening"));
      if (format.rows() == 0 || format.isNull(0, 0)) {
        return absl::FailedPreconditionError(
            absl::StrCat(where, ": flatstore_meta has no format version"));
      }
      FLATSTORE_ASSIGN_OR_RETURN(int64_t version, format.getInt64(0, 0));
      if (version > kPgFormatVersion) {
        return absl::FailedPreconditionError(
            absl::StrCat(where, " was written by a newer flatstore (format ", version,
                         "); this version reads format ", kPgFormatVersion, " and older"));
      }
      if (version < 1) {
        return absl::FailedPreconditionError(
            absl::StrCat(where, ": flatstore_meta has no valid format version"));
      }
      return absl::OkStatus();
    }
    return conn.execute(
        absl::StrFormat(
            "CREATE TABLE %1$s.flatstore_meta(key text PRIMARY KEY, value bigint NOT NULL);"
            "INSERT INTO %1$s.flatstore_meta VALUES('format', %2$d), "
            "('log_pruned_through', 0);"
            "CREATE TABLE %1$s.flatstore_tables(id bigint GENERATED ALWAYS AS IDENTITY "
            "PRIMARY KEY, name text NOT NULL UNIQUE, schema_hash bigint NOT NULL, "
            "schema bytea);"
            "CREATE TABLE %1$s.flatstore_indexes(table_id bigint NOT NULL, id_path text "
            "NOT NULL, is_unique boolean NOT NULL, next_rowid bigint, "
            "PRIMARY KEY(table_id, id_path));"
            "CREATE TABLE %1$s.flatstore_kv(key text PRIMARY KEY, kind integer NOT NULL, "
            "type text, value bytea);"
            "CREATE TABLE %1$s.flatstore_changes(xid bigint NOT NULL, table_id bigint NOT "
            "NULL, origin bigint NOT NULL, changes bytea NOT NULL, "
            "PRIMARY KEY(table_id, xid));"
            "CREATE INDEX flatstore_changes_xid ON %1$s.flatstore_changes(xid)",
            s, kPgFormatVersion),
        where);
  });
  if (!st.ok()) return st;
  return schema;
}

PgTableSql::PgTableSql(std::string_view schema, const TableDescription& d, int64_t id,
                       const VersionBridge* bridge) {
  const std::string base = absl::StrCat("fs", id);
  table = absl::StrCat(pgQuote(schema), ".", base);
  key_constraint = absl::StrCat(base, "$key");
  auto addIndex = [&](std::string_view id_path, std::string_view field_path, bool unique) {
    index_names.push_back(absl::StrCat(base, "$i", av(id_path)));
    index_columns.push_back(indexColumn(id_path));
    index_fields.emplace_back(field_path);
    index_unique.push_back(unique);
  };
  for (const IndexDescription& index : d.indexes) {
    addIndex(index.id_path, index.field_path, index.unique);
  }
  if (bridge != nullptr) {
    for (const ForeignIndex& x : bridge->foreignIndexes()) {
      addIndex(x.path.id_path, x.path.path, x.unique);
    }
  }
  std::vector<std::string> keys;
  for (const KeyColumn& k : d.key_columns) keys.push_back(pgQuote(k.column));
  // Column lists in the order parameters are numbered.
  auto list = [](const std::vector<std::string>& names, int first, std::string* cols,
                 std::string* marks) {
    for (size_t i = 0; i < names.size(); ++i) {
      absl::StrAppend(cols, names[i], ", ");
      absl::StrAppend(marks, "$", first + static_cast<int>(i), ", ");
    }
  };
  const int nk = static_cast<int>(keys.size());
  const int ni = static_cast<int>(index_columns.size());
  // A row's versionstamp from its request's position (parameter `n`) and the writing
  // transaction's id, which the session takes as its sequence (pg_engine.h): the rows
  // need not wait for the id to come back to the client.
  auto stamp = [](int n) {
    return absl::StrCat("(pg_current_xact_id()::text::bigint << 16 | $", n, "::bigint)");
  };
  {
    std::string cols, marks;
    list(keys, 1, &cols, &marks);
    list(index_columns, 1 + nk, &cols, &marks);
    insert = absl::StrCat("INSERT INTO ", table, "(", cols, "p, vs) VALUES(", marks, "$",
                          1 + nk + ni, ", ", stamp(2 + nk + ni), ") RETURNING rowid");
  }
  {
    std::string cols, marks;
    list(keys, 2, &cols, &marks);
    list(index_columns, 2 + nk, &cols, &marks);
    reinsert = absl::StrCat("INSERT INTO ", table, "(rowid, ", cols, "p, vs) VALUES($1, ", marks,
                            "$", 2 + nk + ni, ", ", stamp(3 + nk + ni), ")");
  }
  update = absl::StrCat("UPDATE ", table, " SET p = $1, vs = ", stamp(2));
  for (int i = 0; i < ni; ++i) {
    absl::StrAppend(&update, ", ", index_columns[static_cast<size_t>(i)], " = $", 3 + i);
  }
  absl::StrAppend(&update, " WHERE rowid = $", 3 + ni);
  remove = absl::StrCat("DELETE FROM ", table, " WHERE rowid = $1");
  for (const std::string& col : index_columns) {
    clear_index.push_back(absl::StrCat("UPDATE ", table, " SET ", col, " = NULL WHERE rowid = $1"));
  }
  select_by_rowid = absl::StrCat("SELECT rowid, p, vs FROM ", table, " WHERE rowid = $1");
  select_by_key = absl::StrCat("SELECT rowid, p, vs FROM ", table, " WHERE ");
  for (int i = 0; i < nk; ++i) {
    absl::StrAppend(&select_by_key, i == 0 ? "" : " AND ", keys[static_cast<size_t>(i)], " = $",
                    i + 1);
  }
  if (nk == 0) absl::StrAppend(&select_by_key, "false");
}

absl::StatusOr<int64_t> pgRegisterTable(PgConnection& conn, std::string_view schema,
                                        TableState& table) {
  const TableDescription& d = table.desc;
  const std::string what = absl::StrCat("table ", av(d.table_name));
  const std::string s = pgQuote(schema);
  int64_t generation = 0;
  absl::Status st = lockedTransaction(conn, schema, "catalog", what, [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(
        PgResult row,
        conn.query(absl::StrCat("SELECT id, schema_hash, CASE WHEN schema IS DISTINCT FROM $2 "
                                "THEN schema END FROM ",
                                s, ".flatstore_tables WHERE name = $1"),
                   {PgParam::text(d.entity_name), PgParam::bytes(d.binary_schema)}, what));
    bool created = row.rows() == 0;
    int64_t id = 0;
    // The newest schema of the table: the program's unless the stored one is newer.
    std::vector<uint8_t> newest(d.binary_schema.begin(), d.binary_schema.end());
    if (created) {
      FLATSTORE_ASSIGN_OR_RETURN(
          PgResult ins, conn.query(absl::StrCat("INSERT INTO ", s,
                                                ".flatstore_tables(name, schema_hash, schema) "
                                                "VALUES($1, $2, $3) RETURNING id"),
                                   {PgParam::text(d.entity_name),
                                    PgParam::int64(static_cast<int64_t>(d.schema_hash)),
                                    PgParam::bytes(d.binary_schema)},
                                   what));
      FLATSTORE_ASSIGN_OR_RETURN(id, ins.getInt64(0, 0));
    } else {
      FLATSTORE_ASSIGN_OR_RETURN(id, row.getInt64(0, 0));
      FLATSTORE_ASSIGN_OR_RETURN(int64_t stored, row.getInt64(0, 1));
      if (static_cast<uint64_t>(stored) != d.schema_hash) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "table %s is stored with layout hash %016x but this schema has %016x: its primary "
            "key changed, which an existing database cannot follow",
            av(d.table_name), static_cast<uint64_t>(stored), d.schema_hash));
      }
      // Keep the stored schema the newest, so that tools and older programs decode with
      // every field; an older program keeps it and writes through a bridge.
      bool program_newer = false;
      FLATSTORE_ASSIGN_OR_RETURN(newest, newestSchema(d, row, 2, &program_newer));
      if (program_newer) {
        FLATSTORE_RETURN_IF_ERROR(
            conn.query(
                    absl::StrCat("UPDATE ", s, ".flatstore_tables SET schema = $1 WHERE id = $2"),
                    {PgParam::bytes(d.binary_schema), PgParam::int64(id)}, what)
                .status());
        FLATSTORE_RETURN_IF_ERROR(bumpCatalogGeneration(conn, s, what));
      }
    }
    table.id = id;
    PgTableSql sql(schema, d, id);
    // Whether the table has no objects; known for an existing table once an index is
    // added, under the table's lock.
    std::optional<bool> empty;
    if (created) {
      empty = true;
      std::string ddl = absl::StrCat("CREATE TABLE ", sql.table,
                                     "(rowid bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY");
      std::string keys;
      for (const KeyColumn& k : d.key_columns) {
        absl::StrAppend(&ddl, ", ", pgQuote(k.column), " ", av(pgColumnType(k.type)), " NOT NULL");
        absl::StrAppend(&keys, keys.empty() ? "" : ", ", pgQuote(k.column));
      }
      absl::StrAppend(&ddl, ", p bytea NOT NULL, vs bigint NOT NULL");
      if (!keys.empty()) {
        absl::StrAppend(&ddl, ", CONSTRAINT ", pgQuote(sql.key_constraint), " UNIQUE(", keys, ")");
      }
      absl::StrAppend(&ddl, ")");
      FLATSTORE_RETURN_IF_ERROR(conn.execute(ddl, what));
    }
    for (size_t i = 0; i < d.indexes.size(); ++i) {
      const IndexDescription& index = d.indexes[i];
      FLATSTORE_ASSIGN_OR_RETURN(
          PgResult progress,
          conn.query(absl::StrCat("SELECT next_rowid FROM ", s,
                                  ".flatstore_indexes WHERE table_id = $1 AND id_path = $2"),
                     {PgParam::int64(id), PgParam::text(index.id_path)}, what));
      if (progress.rows() > 0) {
        table.setIndexReady(static_cast<int>(i), progress.isNull(0, 0));
        continue;
      }
      if (!empty.has_value()) {
        // A new index of a table in use: under the table's lock, no other program's
        // write is under way (each checked the catalog generation under it, see
        // pg_engine.h), and the objects counted here are all there are until the
        // generation bumped below commits with the index.
        FLATSTORE_RETURN_IF_ERROR(lockName(conn, schema, what, what));
        FLATSTORE_ASSIGN_OR_RETURN(
            PgResult any,
            conn.query(absl::StrCat("SELECT 1 FROM ", sql.table, " LIMIT 1"), {}, what));
        empty = any.rows() == 0;
        FLATSTORE_RETURN_IF_ERROR(bumpCatalogGeneration(conn, s, what));
      }
      const std::string& col = sql.index_columns[i];
      FLATSTORE_RETURN_IF_ERROR(
          conn.execute(absl::StrCat("ALTER TABLE ", sql.table, " ADD COLUMN IF NOT EXISTS ", col,
                                    " ", av(pgColumnType(index.type)), ";",
                                    index.unique ? "CREATE UNIQUE INDEX " : "CREATE INDEX ",
                                    pgQuote(sql.index_names[i]), " ON ", sql.table, "(", col,
                                    index.unique ? ")" : ", rowid)"),
                       what));
      FLATSTORE_RETURN_IF_ERROR(
          conn.query(absl::StrCat("INSERT INTO ", s,
                                  ".flatstore_indexes(table_id, id_path, is_unique, next_rowid) "
                                  "VALUES($1, $2, $3, $4)"),
                     {PgParam::int64(id), PgParam::text(index.id_path),
                      PgParam::boolean(index.unique), *empty ? PgParam::null() : PgParam::int64(0)},
                     what)
              .status());
      table.setIndexReady(static_cast<int>(i), *empty);
    }
    FLATSTORE_ASSIGN_OR_RETURN(generation, catalogGeneration(conn, s, what));
    return attachBridge(conn, s, table, std::move(newest), what);
  });
  FLATSTORE_RETURN_IF_ERROR(st);
  return generation;
}

absl::StatusOr<int64_t> pgRefreshTable(PgConnection& conn, std::string_view schema,
                                       TableState& table) {
  const TableDescription& d = table.desc;
  const std::string what = absl::StrCat("table ", av(d.table_name));
  const std::string s = pgQuote(schema);
  // The generation first: what is read after it is at least as new, so the table is
  // read again at the next bump at the latest.
  FLATSTORE_ASSIGN_OR_RETURN(int64_t generation, catalogGeneration(conn, s, what));
  FLATSTORE_ASSIGN_OR_RETURN(
      PgResult row,
      conn.query(absl::StrCat("SELECT CASE WHEN schema IS DISTINCT FROM $2 THEN schema END FROM ",
                              s, ".flatstore_tables WHERE id = $1"),
                 {PgParam::int64(table.id), PgParam::bytes(d.binary_schema)}, what));
  if (row.rows() == 0) {
    return absl::DataLossError(absl::StrCat(what, " is no longer in ", s, ".flatstore_tables"));
  }
  bool program_newer = false;
  FLATSTORE_ASSIGN_OR_RETURN(std::vector<uint8_t> newest, newestSchema(d, row, 0, &program_newer));
  FLATSTORE_RETURN_IF_ERROR(attachBridge(conn, s, table, std::move(newest), what));
  return generation;
}

absl::StatusOr<bool> pgBackfillStep(PgConnection& conn, std::string_view schema,
                                    const PgTableSql& sql, TableState& table, int batch) {
  const TableDescription& d = table.desc;
  for (size_t i = 0; i < d.indexes.size(); ++i) {
    if (table.indexReady(static_cast<int>(i))) continue;
    const IndexDescription& index = d.indexes[i];
    const std::string what =
        absl::StrCat("back-filling index ", av(index.field_path), " of table ", av(d.table_name));
    const std::string progress_sql = absl::StrCat(
        "FROM ", pgQuote(schema), ".flatstore_indexes WHERE table_id = $1 AND id_path = $2");
    bool done = false;
    absl::Status st = lockedTransaction(
        conn, schema, absl::StrCat("table ", av(d.table_name)), what, [&]() -> absl::Status {
          FLATSTORE_ASSIGN_OR_RETURN(
              PgResult progress,
              conn.query(absl::StrCat("SELECT next_rowid ", progress_sql),
                         {PgParam::int64(table.id), PgParam::text(index.id_path)}, what));
          if (progress.rows() == 0 || progress.isNull(0, 0)) {
            done = true;
            return absl::OkStatus();
          }
          FLATSTORE_ASSIGN_OR_RETURN(int64_t next, progress.getInt64(0, 0));
          FLATSTORE_ASSIGN_OR_RETURN(
              PgResult rows, conn.query(absl::StrCat("SELECT rowid, p FROM ", sql.table,
                                                     " WHERE rowid >= $1 ORDER BY rowid LIMIT $2"),
                                        {PgParam::int64(next), PgParam::int64(batch)}, what));
          const std::string set = absl::StrCat("UPDATE ", sql.table, " SET ", sql.index_columns[i],
                                               " = $1 WHERE rowid = $2");
          int64_t last = next - 1;
          std::vector<Value> values;
          for (int r = 0; r < rows.rows(); ++r) {
            FLATSTORE_ASSIGN_OR_RETURN(last, rows.getInt64(r, 0));
            FLATSTORE_ASSIGN_OR_RETURN(std::span<const uint8_t> p, rows.getBytes(r, 1));
            FLATSTORE_ASSIGN_OR_RETURN(ObjectBuffer bytes, verifiedCopy(d, p, last));
            values.clear();
            d.index_values_of(bytes.data(), &values);
            absl::StatusOr<PgResult> up =
                conn.query(set, {pgParam(values[i]), PgParam::int64(last)}, what);
            if (absl::IsAlreadyExists(up.status())) {
              return absl::AlreadyExistsError(absl::StrCat(
                  "table ", av(d.table_name), ": unique field '", av(index.field_path),
                  "' already has value ", values[i].toString(), " (back-filling the new index)"));
            }
            FLATSTORE_RETURN_IF_ERROR(up.status());
          }
          done = rows.rows() < batch;
          return conn
              .query(absl::StrCat("UPDATE ", pgQuote(schema),
                                  ".flatstore_indexes SET next_rowid = $3 WHERE table_id = $1 AND "
                                  "id_path = $2"),
                     {PgParam::int64(table.id), PgParam::text(index.id_path),
                      done ? PgParam::null() : PgParam::int64(last + 1)},
                     what)
              .status();
        });
    FLATSTORE_RETURN_IF_ERROR(st);
    if (done) table.setIndexReady(static_cast<int>(i), true);
    return true;
  }
  return false;
}

}  // namespace flatstore::internal
