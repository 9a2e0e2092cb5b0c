#include "runtime/object_check.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "flatbuffers/reflection.h"
#include "runtime/absl_compat.h"
#include "runtime/version_bridge.h"

namespace flatstore::internal {
namespace {

// flatbuffers::Verifier's defaults, which the generated verifier uses.
constexpr flatbuffers::uoffset_t kMaxDepth = 64;
constexpr flatbuffers::uoffset_t kMaxTables = 1000000;
// Limits no object reaches, to tell a limit from a malformed buffer.
constexpr flatbuffers::uoffset_t kNoLimit = 1u << 30;

// The table a `nested_flatbuffer` attribute of a field of `object` names: as written,
// or (as flatc resolves it) in `object`'s namespace.
const reflection::Object* nestedType(const reflection::Schema& schema,
                                     const reflection::Object& object, const std::string& name) {
  if (const reflection::Object* o = schema.objects()->LookupByKey(name.c_str())) return o;
  std::string scope = object.name()->str();
  size_t dot = scope.rfind('.');
  if (dot == std::string::npos) return nullptr;
  return schema.objects()->LookupByKey((scope.substr(0, dot + 1) + name).c_str());
}

// The first `nested_flatbuffer` field below `table` (an object of `object`, verified
// apart from the limits) whose bytes are not a valid buffer of their type, as a field
// path ("inner", "tree.child.inner"); empty when there is none. Reflection's verifier
// does not look into nested buffers, so they are checked here one by one.
std::string invalidNestedBuffer(const reflection::Schema& schema, const reflection::Object& object,
                                const flatbuffers::Table& table, const std::string& prefix,
                                int depth) {
  if (depth > static_cast<int>(kMaxDepth)) return "";
  for (const reflection::Field* field : *object.fields()) {
    std::string path = prefix + field->name()->str();
    reflection::BaseType type = field->type()->base_type();
    if (type == reflection::Vector && field->type()->element() == reflection::UByte &&
        field->attributes() != nullptr) {
      const reflection::KeyValue* nested = field->attributes()->LookupByKey("nested_flatbuffer");
      if (nested == nullptr || nested->value() == nullptr) continue;
      const auto* bytes = table.GetPointer<const flatbuffers::Vector<uint8_t>*>(field->offset());
      const reflection::Object* inner = nestedType(schema, object, nested->value()->str());
      if (bytes == nullptr || inner == nullptr) continue;
      bool ok = bytes->size() >= sizeof(flatbuffers::uoffset_t) &&
                flatbuffers::Verify(schema, *inner, bytes->data(), bytes->size());
      if (!ok) return absl::StrCat(path, " (nested_flatbuffer of ", inner->name()->str(), ")");
      const flatbuffers::Table* root = flatbuffers::GetAnyRoot(bytes->data());
      std::string deeper = invalidNestedBuffer(schema, *inner, *root, path + ".", depth + 1);
      if (!deeper.empty()) return deeper;
    } else if (type == reflection::Obj) {
      const reflection::Object* child = schema.objects()->Get(field->type()->index());
      if (child->is_struct()) continue;
      const auto* sub = table.GetPointer<const flatbuffers::Table*>(field->offset());
      if (sub == nullptr) continue;
      std::string deeper = invalidNestedBuffer(schema, *child, *sub, path + ".", depth + 1);
      if (!deeper.empty()) return deeper;
    } else if (type == reflection::Vector && field->type()->element() == reflection::Obj) {
      const reflection::Object* child = schema.objects()->Get(field->type()->index());
      if (child->is_struct()) continue;
      const auto* items =
          table.GetPointer<const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::Table>>*>(
              field->offset());
      if (items == nullptr) continue;
      for (flatbuffers::uoffset_t i = 0; i < items->size(); ++i) {
        std::string deeper = invalidNestedBuffer(schema, *child, *items->Get(i),
                                                 absl::StrCat(path, "[", i, "]."), depth + 1);
        if (!deeper.empty()) return deeper;
      }
    } else if (type == reflection::Union) {
      const auto* sub = table.GetPointer<const flatbuffers::Table*>(field->offset());
      if (sub == nullptr) continue;
      const reflection::Object& member = flatbuffers::GetUnionType(schema, object, *field, table);
      std::string deeper = invalidNestedBuffer(schema, member, *sub, path + ".", depth + 1);
      if (!deeper.empty()) return deeper;
    }
  }
  return "";
}

// Why the generated verifier refused `bytes`, as precisely as the schema tells.
std::string whyInvalid(const TableDescription& d, std::span<const uint8_t> bytes) {
  std::string generic = absl::StrCat("it is not a well-formed ", av(d.entity_name));
  flatbuffers::Verifier schema_verifier(d.binary_schema.data(), d.binary_schema.size());
  if (d.binary_schema.empty() || !reflection::VerifySchemaBuffer(schema_verifier)) return generic;
  const reflection::Schema& schema = *reflection::GetSchema(d.binary_schema.data());
  const reflection::Object* root =
      schema.objects()->LookupByKey(std::string(d.entity_name).c_str());
  if (root == nullptr ||
      !flatbuffers::Verify(schema, *root, bytes.data(), bytes.size(), kNoLimit, kNoLimit)) {
    return generic;
  }
  if (!flatbuffers::Verify(schema, *root, bytes.data(), bytes.size(), kMaxDepth, kNoLimit)) {
    return absl::StrCat("its tables nest deeper than the verifier's limit of ", kMaxDepth);
  }
  if (!flatbuffers::Verify(schema, *root, bytes.data(), bytes.size(), kNoLimit, kMaxTables)) {
    return absl::StrCat("it holds more than the verifier's limit of ", kMaxTables, " tables");
  }
  std::string nested =
      invalidNestedBuffer(schema, *root, *flatbuffers::GetAnyRoot(bytes.data()), "", 1);
  if (!nested.empty()) return absl::StrCat("field ", nested, " is not a valid buffer of its type");
  return generic;
}

}  // namespace

absl::Status checkEncodedObject(const TableDescription& table, std::span<const uint8_t> bytes,
                                const VersionBridge* bridge) {
  if (table.verify(bytes)) {
    if (bridge == nullptr || bridge->verify(bytes)) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("table ", av(table.table_name), ": the object (", bytes.size(),
                     " bytes) fails FlatBuffers verification against the file's newest schema, "
                     "so it is not stored"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "table ", av(table.table_name), ": the object (", bytes.size(),
      " bytes) fails FlatBuffers verification, so it is not stored: ", whyInvalid(table, bytes)));
}

}  // namespace flatstore::internal
