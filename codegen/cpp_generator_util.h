// Helpers shared by the parts of CppGenerator (cpp_*.cc): the names and types that
// several constructs spell the same way. Internal to flatstore-codegen.
#ifndef FLATSTORE_CODEGEN_CPP_GENERATOR_UTIL_H_
#define FLATSTORE_CODEGEN_CPP_GENERATOR_UTIL_H_

#include <string>
#include <vector>

#include "codegen/schema_model.h"
#include "flatbuffers/idl.h"

namespace flatstore::codegen {

// The fully qualified C++ name of a schema definition, with a leading "::".
std::string globalName(const flatbuffers::Definition& def);

// The accessor flatc writes for the hidden `<union>_type` field of union field `f`.
std::string flatcTypeAccessor(const flatbuffers::FieldDef& f);

// A field that holds the hash of another object's name and, in the object API, a
// pointer to that object (`hash` with `cpp_type`). The object API cannot carry its value
// without a resolver, so change requests keep the hashes themselves.
bool isHashedReference(const flatbuffers::FieldDef& f);

// The C++ type of a hash: the field's scalar type, or its vectors' element type.
std::string hashType(const flatbuffers::FieldDef& f);

// The fields a change request can set: every field of the root table that the object
// API carries.
std::vector<const flatbuffers::FieldDef*> settableFields(const flatbuffers::StructDef& table);

}  // namespace flatstore::codegen

#endif  // FLATSTORE_CODEGEN_CPP_GENERATOR_UTIL_H_
