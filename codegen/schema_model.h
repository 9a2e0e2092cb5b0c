// SchemaModel: what flatstore makes of a parsed FlatBuffers schema.
//
// Built from a flatbuffers::Parser after a successful parse: the entities (the root
// type and tables marked `entity` in the main file), their primary keys, and every
// queryable key path with its index flags. Building also checks flatstore's rules and
// reports each violation with the file, line and column it concerns.
#ifndef FLATSTORE_CODEGEN_SCHEMA_MODEL_H_
#define FLATSTORE_CODEGEN_SCHEMA_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "flatbuffers/idl.h"

namespace flatstore::codegen {

struct Diagnostic {
  std::string file;
  int line = 1;
  int column = 1;
  std::string message;

  // "file:line:col: error: message"
  std::string format() const;
};

// The value kind of a queryable leaf.
enum class LeafKind { kInteger, kReal, kText, kBool, kEnum };

// One step of a key path: a field of a table or struct, or a union field entered at one
// of its member types.
struct PathStep {
  const flatbuffers::StructDef* owner = nullptr;
  const flatbuffers::FieldDef* field = nullptr;
  const flatbuffers::EnumVal* union_member = nullptr;  // set when entering a union member
  int field_id = 0;                                    // table field id or struct index
};

// A queryable field reachable from an entity's root without crossing a vector.
struct QueryPath {
  std::vector<PathStep> steps;  // the last step is the leaf
  std::string name_path;        // "pos.x", "equipped.Weapon.damage"
  std::string id_path;          // "5.0", "9u1.1"
  LeafKind kind = LeafKind::kInteger;
  std::string cpp_type;   // value type in C++: "int16_t", "std::string_view", "game::Color"
  bool nullable = false;  // absent values read as null
  bool primary = false;
  bool indexed = false;
  bool unique = false;
  int key_position = -1;    // position in the primary key, when primary
  int index_position = -1;  // position among the indexes, when indexed
};

struct Entity {
  const flatbuffers::StructDef* table = nullptr;
  std::string full_name;                   // "game.Monster"
  std::string cpp_name;                    // "game::Monster"
  std::vector<std::string> cpp_namespace;  // {"game"}
  std::vector<QueryPath> paths;
  std::vector<int> key_paths;    // indexes into `paths`, in key order
  std::vector<int> index_paths;  // indexes into `paths`, in index order
  uint64_t schema_hash = 0;
};

struct SchemaModel {
  std::string main_file;
  std::vector<Entity> entities;
  std::vector<Diagnostic> warnings;
};

// The attributes flatstore adds to the schema language.
inline constexpr const char* kFlatstoreAttributes[] = {"primary", "indexed", "unique", "entity"};

// Builds the model of `parser`'s main file `main_file`, or returns the diagnostics that
// make the schema unusable for flatstore (never both).
bool buildSchemaModel(const flatbuffers::Parser& parser, const std::string& main_file,
                      SchemaModel* model, std::vector<Diagnostic>* errors);

// The `<union>_type` fields the parser adds for every union (or vector of unions).
inline bool isHiddenTypeField(const flatbuffers::FieldDef& f) {
  const auto& t = f.value.type;
  return t.base_type == flatbuffers::BASE_TYPE_UTYPE ||
         (t.base_type == flatbuffers::BASE_TYPE_VECTOR &&
          t.element == flatbuffers::BASE_TYPE_UTYPE);
}

// The C++ type of a scalar base type ("int16_t"), or null for a non-scalar.
const char* cppScalarType(flatbuffers::BaseType t);
// C++ spelling of a definition: "game::Monster".
std::string cppQualifiedName(const flatbuffers::Definition& def);
// Schema spelling of a definition: "game.Monster".
std::string schemaQualifiedName(const flatbuffers::Definition& def);
// The id of a table field (from its vtable offset) or the index of a struct field.
int fieldId(const flatbuffers::StructDef& owner, const flatbuffers::FieldDef& field);

}  // namespace flatstore::codegen

#endif  // FLATSTORE_CODEGEN_SCHEMA_MODEL_H_
