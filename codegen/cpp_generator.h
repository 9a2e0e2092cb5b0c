// CppGenerator: writes `<stem>_flatstore.h` and `<stem>_flatstore.cc` for a schema
// model. The header declares what users call and keeps inline only what is small; the
// source holds the key-path readers, the table descriptions, the encoders and, once
// per schema file, the binary schema, so that including the header stays cheap.
//
// One genX() per construct, each in its own file: the entity class
// (cpp_entity_class.cc), the field descriptors (cpp_field_descriptors.cc), the change
// request (cpp_change_request.cc), the table description (cpp_table_description.cc);
// the files' frame and the EntityTraits specialization are in cpp_generator.cc. The output
// depends only on the schema, never on paths or time, so it can be checked in as a
// golden.
#ifndef FLATSTORE_CODEGEN_CPP_GENERATOR_H_
#define FLATSTORE_CODEGEN_CPP_GENERATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "codegen/code_writer.h"
#include "codegen/schema_model.h"

namespace flatstore::codegen {

struct GeneratedFiles {
  std::string header;  // <stem>_flatstore.h
  std::string source;  // <stem>_flatstore.cc, compiled once into the user's target
};

class CppGenerator {
 public:
  // `stem` is the schema's file name without ".fbs"; `binary_schema` its serialized
  // reflection schema.
  CppGenerator(const SchemaModel& model, std::string stem, std::vector<uint8_t> binary_schema);

  GeneratedFiles generate();

 private:
  // The files for a schema without entities: a header that includes flatc's only.
  GeneratedFiles generateWithoutEntities();
  void genEntityDetail(const Entity& e);
  void genReadFunction(const Entity& e, size_t index);
  void genPathStructs(const Entity& e);
  void genDescription(const Entity& e);
  void genEntityClass(const Entity& e);
  void genFieldsStruct(const Entity& e);
  void genChangeRequest(const Entity& e);
  // The positions in `fields` (a change request's settable fields) of the scalars that
  // encodeOver() may write into a copy of the current object.
  static std::vector<size_t> inPlaceFields(const std::vector<const flatbuffers::FieldDef*>& fields);
  void genEncodeInPlace(const Entity& e, const std::vector<const flatbuffers::FieldDef*>& fields,
                        const std::vector<size_t>& in_place);
  void genSetter(const Entity& e, const flatbuffers::FieldDef& f, size_t bit);
  void genTraits(const Entity& e);
  // The C++ types of the primary key's fields, as deletion(key...) takes them.
  static std::vector<std::string> keyTypes(const Entity& e);

  void setEntityVars(const Entity& e);

  // The top-level members of the field-descriptor struct, left by genPathStructs.
  struct RootMember {
    std::string member;
    int leaf = -1;
    int struct_id = -1;
  };
  std::vector<RootMember> root_members_;

  // The outputs of w_.
  static constexpr size_t kHeader = 0;
  static constexpr size_t kSource = 1;

  const SchemaModel& model_;
  std::string stem_;
  std::vector<uint8_t> binary_schema_;
  CodeWriter w_;
};

}  // namespace flatstore::codegen

#endif  // FLATSTORE_CODEGEN_CPP_GENERATOR_H_
