// Helpers shared by the parts of CppGenerator; see cpp_generator_util.h.
#include "codegen/cpp_generator_util.h"

#include "codegen/names.h"

namespace flatstore::codegen {

std::string globalName(const flatbuffers::Definition& def) { return "::" + cppQualifiedName(def); }

std::string flatcTypeAccessor(const flatbuffers::FieldDef& f) {
  return flatcName(f.name + "_type");
}

bool isHashedReference(const flatbuffers::FieldDef& f) {
  return f.attributes.Lookup("hash") != nullptr && f.attributes.Lookup("cpp_type") != nullptr;
}

std::string hashType(const flatbuffers::FieldDef& f) {
  const auto& t = f.value.type;
  return cppScalarType(t.base_type == flatbuffers::BASE_TYPE_VECTOR ? t.element : t.base_type);
}

std::vector<const flatbuffers::FieldDef*> settableFields(const flatbuffers::StructDef& table) {
  std::vector<const flatbuffers::FieldDef*> out;
  for (const flatbuffers::FieldDef* f : table.fields.vec) {
    if (f->deprecated || isHiddenTypeField(*f)) continue;
    out.push_back(f);
  }
  return out;
}

}  // namespace flatstore::codegen
