// Key paths read by FlatBuffers reflection: a field of the root table, or of a nested
// table, struct or union member below it, resolved against a binary schema.
//
// Both programs without generated code (DynamicTable, for the `flatstore` tool) and
// programs older than the file's newest schema (VersionBridge, for the indexes they do
// not declare) read index keys this way, with the same rules as the generated readers:
// an absent string, table, struct or union member, or optional scalar is null; an
// absent scalar with a default reads as its default; bools and enums are integers,
// floats are reals.
//
// Thread-safety: a resolved FieldPath is immutable; read() may run on any thread.
#ifndef FLATSTORE_RUNTIME_FIELD_PATH_H_
#define FLATSTORE_RUNTIME_FIELD_PATH_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "flatbuffers/reflection.h"
#include "flatstore/table_description.h"
#include "flatstore/value.h"

namespace flatstore::internal {

// One step of a key path: a field of the table or struct reached so far; for a union,
// the member type the path goes through.
struct PathStep {
  const reflection::Field* field = nullptr;
  bool in_struct = false;                         // `field` belongs to a struct
  const reflection::Field* union_type = nullptr;  // the union's _type field
  int64_t union_member = 0;                       // the member's type value
};

// A resolved key path ending in a scalar, enum, bool or string field.
struct FieldPath {
  std::string path;     // schema names: "equipped.Weapon.damage"
  std::string id_path;  // field ids: "10u1.1"
  std::vector<PathStep> steps;
  ColumnType type = ColumnType::kInteger;
  // Reads the value from a verified root object; null when absent.
  Value read(const uint8_t* buffer) const;
};

// Resolves `id_path` (field ids as index tables are named: "12.0", "10u1.1") from
// `root` of `schema`. DataLoss naming `table` and the path when it does not lead to a
// scalar, enum, bool or string field of the schema.
absl::Status resolveIdPath(const reflection::Schema& schema, const reflection::Object& root,
                           std::string_view table, std::string_view id_path, FieldPath* out);

// The field of `object` with FlatBuffers id `id`, or null.
const reflection::Field* fieldById(const reflection::Object& object, int64_t id);

// Whether a field of base type `t` can end a key path (scalar, enum, bool, string).
bool isScalarLeaf(reflection::BaseType t);
// The SQL column type of a leaf field of base type `t`.
ColumnType columnTypeOf(reflection::BaseType t);
const char* sqlType(ColumnType t);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_FIELD_PATH_H_
