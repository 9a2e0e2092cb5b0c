// VersionBridge: how a program writes a table whose file knows more than the program.
//
// Programs built from different versions of a schema share a file (design: "Program
// versions sharing a file"). The file keeps the newest binary schema of each table and
// every index any version declared. A program's object API drops what its schema does
// not know or has deprecated when it re-packs an object, and its generated code computes
// only the index values it declares. A bridge closes both gaps for one table:
//   - a change over an existing object is re-composed by reflection over the newest
//     schema: the top-level fields the request changed come from the program's
//     encoding, every other field (known or not, with all nested content) is copied
//     from the current bytes;
//   - the indexes the program does not declare get their values by reflection (the
//     same key-path rules as the generated readers), so the program inserts, updates
//     and deletes their rows, and their unique constraints hold, like its own.
// A table needs a bridge only when the newest schema has fields the program would drop
// or the file has indexes the program does not declare; without one no reflection runs,
// so a program built from the newest schema writes exactly as fast as before.
//
// A table's bridge is made when the program first uses the table, and made again by the
// writer when another program changed the catalog since (catalog.h: the catalog
// generation; on PostgreSQL by the write session, pg_engine.h); a change encoded with a
// replaced bridge runs again.
//
// Schemas are compared by what decides how bytes are read: field ids and types, from
// the root table through nested tables, vectors and union members (names may differ,
// since a rename does not change a database).
//
// Thread-safety: immutable once created; use from any thread.
#ifndef FLATSTORE_RUNTIME_VERSION_BRIDGE_H_
#define FLATSTORE_RUNTIME_VERSION_BRIDGE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flatbuffers/reflection.h"
#include "flatstore/entity.h"
#include "flatstore/table_description.h"
#include "flatstore/value.h"
#include "runtime/catalog.h"
#include "runtime/field_path.h"

namespace flatstore::internal {

// How a program's schema of a table relates to the schema the file stores.
enum class SchemaOrder {
  kEquivalent,    // each has every field of the other (they may differ in names or attributes)
  kProgramNewer,  // the program's has every stored field, and more
  kStoredNewer,   // the stored one has every field of the program's, and more
};

// Compares the program's schema of `table` with `stored` (a binary schema). DataLoss
// when `stored` is not a valid binary schema of the table; FailedPrecondition naming
// the table and a field when neither schema has every field of the other (two
// diverged versions: the bytes one writes would be misread by the other).
absl::StatusOr<SchemaOrder> compareSchemas(const TableDescription& table,
                                           std::span<const uint8_t> stored);

// An index the file holds that the program does not declare.
struct ForeignIndex {
  std::string table;  // the index table, "<ns.Name>$<id path>"
  FieldPath path;     // resolved against the newest schema
  bool unique = false;
};

class VersionBridge {
 public:
  // The bridge for `table` given the newest schema of the file (`newest`, the program's
  // own when it is the newest) and the indexes the program does not declare; null when
  // the program needs none. DataLoss when `newest` is not a valid binary schema of the
  // table or an index's key path does not resolve in it.
  static absl::StatusOr<std::unique_ptr<VersionBridge>> create(
      const TableDescription& table, std::vector<uint8_t> newest,
      const std::vector<StoredIndex>& foreign_indexes);

  // Whether a change over the verified object `current` must be re-composed: it holds
  // a field the program's encoding drops.
  bool mustRecompose(const uint8_t* current) const;
  // The object with the fields that `changed_fields` (bit i: field id i, as in
  // EncodedObject) marks taken from `encoded` and all others from `current`; both are
  // verified objects of the table. InvalidArgument naming the table for content that
  // reflection cannot copy (a vector of unions).
  absl::StatusOr<ObjectBuffer> recompose(const uint8_t* current, const uint8_t* encoded,
                                         uint64_t changed_fields) const;
  // Verifies `bytes` against the newest schema (the generated verifier checks only the
  // fields the program knows).
  bool verify(std::span<const uint8_t> bytes) const;

  // Indexes the program does not declare, in the order their values are appended.
  const std::vector<ForeignIndex>& foreignIndexes() const { return indexes_; }
  // Appends one value per foreign index of the verified object in `buffer`.
  void appendIndexValues(const uint8_t* buffer, std::vector<Value>* out) const;

 private:
  VersionBridge() = default;

  std::string table_;
  std::vector<uint8_t> bfbs_;
  const reflection::Schema* schema_ = nullptr;
  const reflection::Object* object_ = nullptr;
  // By field id of the newest root table: whether the program's encoding carries the
  // field (it knows it and has not deprecated it).
  std::vector<bool> written_;
  // vtable offsets of the root fields whose content the program's encoding may drop:
  // fields it does not write, and fields with such fields somewhere below them.
  std::vector<flatbuffers::voffset_t> dropped_;
  std::vector<ForeignIndex> indexes_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_VERSION_BRIDGE_H_
