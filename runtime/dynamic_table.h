// DynamicTable: an entity table described at run time from what a database file stores
// about it, for programs without generated code (the `flatstore` tool).
//
// The description is assembled from the file itself: the binary schema and layout hash
// in flatstore_tables, the key columns of the entity table (k<field id>), and the index
// tables listed in flatstore_indexes (see readStoredIndexes). Field values are read with
// FlatBuffers reflection (see field_path.h). Objects are verified with the reflection verifier and
// converted to and from JSON with flatc's conventions (the idl parser's text generator).
//
// A TableDescription and a FieldInfo hold plain function pointers, so every
// DynamicTable takes one of kMaxTables table slots and each field it hands out one of
// kMaxFields field slots, whose trampolines forward to it; the slots are given back
// when the DynamicTable is destroyed. ResourceExhausted when they run out.
//
// Thread-safety: after load() a DynamicTable is immutable except for field(), which
// adds fields under a mutex; its description and FieldInfos may be used from any
// thread. toJson()/fromJson() use one idl parser and must not run concurrently.
#ifndef FLATSTORE_RUNTIME_DYNAMIC_TABLE_H_
#define FLATSTORE_RUNTIME_DYNAMIC_TABLE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "flatbuffers/idl.h"
#include "flatbuffers/reflection.h"
#include "flatstore/query.h"
#include "flatstore/table_description.h"
#include "runtime/field_path.h"
#include "runtime/sqlite.h"

namespace flatstore::internal {

class DynamicTable {
 public:
  static constexpr int kMaxTables = 64;
  static constexpr int kMaxFields = 1024;

  // Describes table `name` (its full name) of the database on `c`, inside the caller's
  // read transaction. NotFound when the file has no such table; DataLoss when its
  // stored schema is not a valid binary schema or does not define the entity.
  static absl::StatusOr<std::unique_ptr<DynamicTable>> load(Connection& c, std::string_view name);
  ~DynamicTable();
  DynamicTable(const DynamicTable&) = delete;
  DynamicTable& operator=(const DynamicTable&) = delete;

  const TableDescription& description() const { return desc_; }
  const std::string& name() const { return name_; }
  const reflection::Schema& schema() const { return *schema_; }
  const reflection::Object& object() const { return *object_; }
  std::span<const uint8_t> binarySchema() const { return bfbs_; }
  // For each index (description order): the first rowid its back-fill has not reached,
  // or nullopt when it is complete.
  const std::vector<std::optional<int64_t>>& backfillNext() const { return backfill_next_; }
  const std::vector<FieldPath>& keyPaths() const { return key_paths_; }
  const std::vector<FieldPath>& indexPaths() const { return index_paths_; }

  // The queryable field at `path` (schema names, union members by type name:
  // "equipped.Weapon.damage"), stored as a key column, an index or in the object only.
  // InvalidArgument naming the path when it does not lead to a scalar, enum, bool or
  // string field.
  absl::StatusOr<const FieldInfo*> field(std::string_view path) ABSL_LOCKS_EXCLUDED(mu_);

  // The resolved path of a field from field(); null for a FieldInfo of another table.
  const FieldPath* pathOf(const FieldInfo& field) ABSL_LOCKS_EXCLUDED(mu_);
  // The SQL type of a field from field().
  ColumnType typeOf(const FieldInfo& field) ABSL_LOCKS_EXCLUDED(mu_);
  // The value an identifier stands for as an operand of `field` (from field()): an enum
  // value's name, or true/false for a bool. InvalidArgument otherwise.
  absl::StatusOr<Value> literal(const FieldInfo& field, std::string_view name)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Verifies `bytes` as an object of this table.
  bool verify(std::span<const uint8_t> bytes) const;
  // The object as one line of JSON in flatc's conventions (enums by name, unions with
  // their _type field, strict quoting). `bytes` must be verified. InvalidArgument when
  // flatc cannot render it (e.g. a string that is not UTF-8).
  absl::StatusOr<std::string> toJson(const uint8_t* bytes);
  // Parses one object from JSON with the stored schema and encodes it. InvalidArgument
  // with the parser's message (line and column) on bad input.
  absl::StatusOr<ObjectBuffer> fromJson(std::string_view json);

  // The primary key of a verified object, in key-column order; the rowid-less empty
  // list for automatic ids.
  void keyOf(const uint8_t* buffer, std::vector<Value>* out) const;
  void indexValuesOf(const uint8_t* buffer, std::vector<Value>* out) const;

 private:
  DynamicTable() = default;
  absl::Status resolveIdPath(std::string_view id_path, FieldPath* out) const {
    return internal::resolveIdPath(*schema_, *object_, name_, id_path, out);
  }
  absl::Status resolveNamePath(std::string_view path, FieldPath* out) const;

  std::string name_;
  std::vector<uint8_t> bfbs_;
  const reflection::Schema* schema_ = nullptr;
  const reflection::Object* object_ = nullptr;
  int table_slot_ = -1;

  // Storage the description's string_views and spans point into.
  std::deque<std::string> strings_;
  std::vector<KeyColumn> key_columns_;
  std::vector<IndexDescription> indexes_;
  std::vector<FieldPath> key_paths_;
  std::vector<FieldPath> index_paths_;
  std::vector<std::optional<int64_t>> backfill_next_;
  TableDescription desc_{};

  struct QueryField {
    FieldPath path;
    FieldInfo info;
    int slot;
  };
  absl::Mutex mu_;
  std::deque<QueryField> fields_ ABSL_GUARDED_BY(mu_);

  std::unique_ptr<flatbuffers::Parser> parser_;
};

// Entity tables of the database on `c` (names from flatstore_tables), sorted.
absl::StatusOr<std::vector<std::string>> listTables(Connection& c);

// Resolves TABLE as the tool's users name it: a full name, or a suffix of one that
// starts after a '.' ("Monster", "game.Monster") and matches exactly one table.
// NotFound or InvalidArgument (ambiguous, naming the candidates).
absl::StatusOr<std::string> resolveTableName(const std::vector<std::string>& tables,
                                             std::string_view name);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_DYNAMIC_TABLE_H_
