// The PostgreSQL layout of a flatstore database, and the catalog work on it: opening
// (refusing foreign and newer databases), registering entity tables, index back-fill,
// advisory-lock keys, and Value <-> statement parameter conversion.
//
// A flatstore database is one PostgreSQL schema (the connection's current_schema, so a
// URI chooses it with options=-csearch_path=NAME). Everything is named with the schema
// explicitly, never through search_path:
//
//   flatstore_meta(key text PRIMARY KEY, value bigint)   'format', 'log_pruned_through',
//                                                        'catalog' (the catalog generation)
//   flatstore_tables(id bigint identity PRIMARY KEY, name text UNIQUE,
//                    schema_hash bigint, schema bytea)   one row per entity table; `schema`
//                                                        is the newest any program stored
//   flatstore_indexes(table_id, id_path, is_unique, next_rowid)
//                                                        back-fill progress; NULL: done
//   flatstore_kv(key text PRIMARY KEY, kind int, type text, value bytea)
//   flatstore_changes(xid bigint, table_id bigint, origin bigint, changes bytea,
//                     PRIMARY KEY(table_id, xid))        the change log, see pg_engine.h
//   fs<id>(rowid bigint identity PRIMARY KEY, "k<field id>"..., p bytea NOT NULL,
//          vs bigint NOT NULL, "i<id path>"..., UNIQUE(k...))
//                                                        one table per entity: its key
//                                                        columns, object, versionstamp
//                                                        and one column per index, with
//                                                        a B-tree on (value, rowid), or a
//                                                        unique one on value
//
// Program versions (version_bridge.h) share a database as they share a SQLite file:
// flatstore_tables keeps the newest schema, flatstore_indexes every index any version
// declared, and a program whose schema is older, or that does not declare every index,
// writes through a bridge: the index columns it does not declare follow the ones it
// does in its statements (PgTableSql). The catalog generation in flatstore_meta tells
// running programs that the catalog changed (pg_engine.h, write sessions).
//
// Entity tables are named by catalog id because PostgreSQL truncates identifiers at 63
// bytes and entity names are fully qualified. Value types: integers are bigint, reals
// double precision, and text bytea, which compares bytewise exactly as SQLite's BINARY
// collation and holds what a FlatBuffers string may hold (NUL bytes, invalid UTF-8),
// which PostgreSQL's text type refuses. NaN never reaches a column: Value::real(NaN) is
// null, as on SQLite.
//
// Thread-safety: functions taking a PgConnection run on its owner's thread.
#ifndef FLATSTORE_RUNTIME_PG_SCHEMA_H_
#define FLATSTORE_RUNTIME_PG_SCHEMA_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flatstore/table_description.h"
#include "flatstore/value.h"
#include "runtime/catalog.h"
#include "runtime/postgres.h"

namespace flatstore::internal {

// The layout this version writes; a database of a higher one is refused at open.
inline constexpr int64_t kPgFormatVersion = 1;

// `name` as a quoted SQL identifier ("a""b").
std::string pgQuote(std::string_view name);

// A stable 64-bit hash (FNV-1a) of `what` in `schema`, the same in every client and
// build: names lock keys and the notification channel.
uint64_t pgNameHash(std::string_view schema, std::string_view what);

// Advisory locks are taken in their two-number form, pg_advisory_xact_lock(space, key):
// `space` is the database's (31 bits, so that pg_locks shows it as the classid as it
// is), `key` that of `what` ("table <name>", "catalog"). A reader finds the
// transactions of flatstore writers of this database in pg_locks by their space (see
// pg_engine.h). Two names sharing a key only serialize more than needed.
int32_t pgLockSpace(std::string_view schema);
int32_t pgLockKey(std::string_view schema, std::string_view what);

// The parameter for `v`. Text is sent as bytea and borrows `v`'s bytes: `v` must outlive
// the statement.
PgParam pgParam(const Value& v);

// The SQL type of a key or index column.
std::string_view pgColumnType(ColumnType type);

// In `conn`'s current schema: checks that it holds nothing, or a flatstore database of
// a format this version reads, and creates the catalog tables; all under the catalog's
// advisory lock, in one transaction, so that nothing is written when a check fails.
// Returns the schema's name. FailedPrecondition for a schema with other tables and no
// flatstore_meta, for a newer format, or when no schema is current.
absl::StatusOr<std::string> pgOpenDatabase(PgConnection& conn);

// The statements of one entity table, built once per table from its description and
// catalog id. Parameters are numbered as each comment says; `position` is the request's
// place in its session, from which the row's versionstamp is computed with the writing
// transaction's id (id << 16 | position, as Versionstamp::packed).
// The indexes written are the description's, then those of `bridge` (the indexes a
// newer program added that this one does not declare; version_bridge.h), in the order
// of EncodedChange::index_values.
struct PgTableSql {
  PgTableSql(std::string_view schema, const TableDescription& desc, int64_t id,
             const VersionBridge* bridge = nullptr);

  std::string table;                       // "schema".fs<id>
  std::string key_constraint;              // fs<id>$key
  std::vector<std::string> index_names;    // fs<id>$i<id path>, per index written
  std::vector<std::string> index_columns;  // "i<id path>", quoted, per index written
  std::vector<std::string> index_fields;   // field paths, for messages
  std::vector<bool> index_unique;
  std::string insert;                    // keys..., indexes..., p, position  RETURNING rowid
  std::string reinsert;                  // rowid, keys..., indexes..., p, position
  std::string update;                    // p, position, indexes..., rowid
  std::string remove;                    // rowid
  std::vector<std::string> clear_index;  // rowid: sets one unique index column to NULL
  std::string select_by_rowid;           // rowid -> rowid, p, vs
  std::string select_by_key;             // keys... -> rowid, p, vs
};

// Creates `table`'s entity table, index columns and indexes if missing, checks its
// layout hash and keeps the stored schema the newest: replaces it when the program's is
// newer, keeps it when it is older (FailedPrecondition naming the table and a field
// when the two diverged, see compareSchemas); sets table.id, index readiness and the
// bridge (null unless the database knows more than the program: newer fields or
// indexes it does not declare). Bumps the catalog generation when it stores a newer
// schema or adds an index to an existing table; an index is added under the table's
// lock. Runs its own transaction under the catalog lock. Returns the catalog generation
// `table`'s state is current with.
absl::StatusOr<int64_t> pgRegisterTable(PgConnection& conn, std::string_view schema,
                                        TableState& table);

// Makes `table`'s bridge match the catalog as it is now, for a registered table, inside
// the caller's transaction (a write session's, under the table's lock). Returns the
// catalog generation the state is current with.
absl::StatusOr<int64_t> pgRefreshTable(PgConnection& conn, std::string_view schema,
                                       TableState& table);

// One bounded back-fill step of the first incomplete index of `table` (own
// transaction, under the table's lock, so that no closure writes it meanwhile). True
// while more remains.
absl::StatusOr<bool> pgBackfillStep(PgConnection& conn, std::string_view schema,
                                    const PgTableSql& sql, TableState& table, int batch);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PG_SCHEMA_H_
