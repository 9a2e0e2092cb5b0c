// TableDescription: everything the runtime needs to store one entity type.
//
// Emitted by flatstore-codegen for every entity as a constant (`MonsterEntity::
// description()`). Index tables and primary-key columns are named by FlatBuffers field
// ids, never by field names, so renaming a field does not break a database.
//
// Layout in SQLite (see docs/design.md):
//   entity table "<ns.Name>":  rowid INTEGER PRIMARY KEY AUTOINCREMENT, k<id>... (the
//                              primary-key columns), p BLOB NOT NULL, vs INTEGER NOT NULL,
//                              UNIQUE(k<id>...)
//   index table "<ns.Name>$<id path>": rowid INTEGER PRIMARY KEY, value
//                              plus an SQL index on value (UNIQUE for `unique`).
//
// Thread-safety: descriptions are immutable constants.
#ifndef FLATSTORE_TABLE_DESCRIPTION_H_
#define FLATSTORE_TABLE_DESCRIPTION_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "flatstore/detail/status_fwd.h"
#include "flatstore/entity.h"
#include "flatstore/value.h"

namespace flatstore {

// The SQL type a key column or an index value has.
enum class ColumnType { kInteger, kReal, kText };

struct KeyColumn {
  std::string_view column;      // SQL column name: "k<field id>"
  std::string_view field_path;  // schema name of the field
  ColumnType type;
};

struct IndexDescription {
  std::string_view table;       // SQL table holding (rowid, value)
  std::string_view field_path;  // schema names: "stats.level"
  std::string_view id_path;     // field ids: "12.0"
  ColumnType type;
  bool unique;
  std::string_view create_table_sql;
  std::string_view create_index_sql;
};

struct TableDescription {
  std::string_view entity_name;  // fully qualified schema name: "game.Monster"
  std::string_view table_name;   // SQL table name
  // Primary-key columns in declaration order; empty when the table is keyed by an
  // automatic 64-bit id (the rowid).
  std::span<const KeyColumn> key_columns;
  std::span<const IndexDescription> indexes;
  std::string_view create_table_sql;
  // Hash of what the stored layout depends on: the table, its key columns and their
  // types. A database whose stored hash differs cannot be opened with this schema.
  uint64_t schema_hash;
  // The reflection schema (reflection.fbs) of the entity's schema file, so tools can
  // decode stored objects without generated code.
  std::span<const uint8_t> binary_schema;

  // Runs the FlatBuffers verifier over `bytes` for this entity's root table.
  bool (*verify)(std::span<const uint8_t> bytes);
  // Appends the primary-key values of the verified object in `buffer`, in key_columns
  // order. A missing string key is appended as null; the runtime rejects it.
  void (*key_of)(const uint8_t* buffer, std::vector<Value>* out);
  // Appends one value per index, in `indexes` order; null where the key path is absent.
  void (*index_values_of)(const uint8_t* buffer, std::vector<Value>* out);

  bool hasAutomaticId() const { return key_columns.empty(); }
};

namespace internal {

// Verifies `bytes` as an object of `table` and copies them into an aligned buffer.
// DataLoss naming the table and rowid when verification fails.
absl::StatusOr<ObjectBuffer> verifiedCopy(const TableDescription& table,
                                          std::span<const uint8_t> bytes, int64_t rowid);

}  // namespace internal
}  // namespace flatstore

#endif  // FLATSTORE_TABLE_DESCRIPTION_H_
