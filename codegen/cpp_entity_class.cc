// CppGenerator's entity classes: `<Entity>Entity`, the immutable object over verified
// FlatBuffers bytes, with its zero-copy accessors in the header and its factories
// (`fromBytes`, `fromVerified`) in the source file.
#include <string>

#include "codegen/cpp_generator.h"
#include "codegen/cpp_generator_util.h"
#include "codegen/names.h"

namespace flatstore::codegen {

using flatbuffers::FieldDef;

void CppGenerator::genEntityClass(const Entity& e) {
  w_.line("");
  w_.line("// A stored {{NAME}}: immutable, owns its verified FlatBuffers bytes, and reads");
  w_.line("// fields straight from them. Shared as std::shared_ptr<const {{ENTITY}}>.");
  w_.line("class {{ENTITY}} final : public ::flatstore::EntityBase {");
  w_.line(" public:");
  w_.indent();
  w_.line("using Table = {{TABLE}};");
  w_.line("using ChangeRequest = {{REQUEST}};");
  w_.line("using Fields = {{FIELDS}};");
  w_.line("");
  w_.line("// Verifies `bytes` as a {{NAME}} and copies them. DataLoss naming the table and");
  w_.line("// `rowid` when they are not a valid object.");
  w_.line("static absl::StatusOr<std::shared_ptr<const {{ENTITY}}>> fromBytes(");
  w_.line("    std::span<const uint8_t> bytes, int64_t rowid = 0,");
  w_.line("    ::flatstore::Versionstamp versionstamp = {});");
  w_.line("// Wraps bytes that were already verified as a {{NAME}}.");
  w_.line(
      "static std::shared_ptr<const {{ENTITY}}> fromVerified(::flatstore::ObjectBuffer buffer,");
  w_.line("                                                     int64_t rowid,");
  w_.line(
      "                                                     ::flatstore::Versionstamp "
      "versionstamp);");
  // Out of line: each entity's StatusOr and shared_ptr are instantiated once, in the
  // source file, not in every file that includes the header.
  w_.select(kSource);
  w_.line("");
  w_.line("absl::StatusOr<std::shared_ptr<const {{ENTITY}}>> {{ENTITY}}::fromBytes(");
  w_.line(
      "    std::span<const uint8_t> bytes, int64_t rowid, ::flatstore::Versionstamp versionstamp) "
      "{");
  w_.line(
      "  FLATSTORE_ASSIGN_OR_RETURN(auto buffer, "
      "::flatstore::internal::verifiedCopy(description(), bytes, rowid));");
  w_.line("  return fromVerified(std::move(buffer), rowid, versionstamp);");
  w_.line("}");
  w_.line("");
  w_.line("std::shared_ptr<const {{ENTITY}}> {{ENTITY}}::fromVerified(");
  w_.line(
      "    ::flatstore::ObjectBuffer buffer, int64_t rowid, ::flatstore::Versionstamp "
      "versionstamp) {");
  w_.line(
      "  return std::shared_ptr<const {{ENTITY}}>(new {{ENTITY}}(std::move(buffer), rowid, "
      "versionstamp));");
  w_.line("}");
  w_.select(kHeader);
  w_.line("static const ::flatstore::TableDescription& description() {");
  w_.line("  return {{DETAIL}}::kDescription;");
  w_.line("}");
  w_.line("");
  w_.line("// The FlatBuffers table (zero-copy).");
  w_.line("const {{TABLE}}& view() const { return *::flatbuffers::GetRoot<{{TABLE}}>(data()); }");
  w_.line("// A mutable copy in FlatBuffers' object API.");
  w_.line("{{NATIVE}} unpack() const {");
  w_.line("  {{NATIVE}} object;");
  w_.line("  view().UnPackTo(&object);");
  w_.line("  return object;");
  w_.line("}");
  for (const FieldDef* f : settableFields(*e.table)) {
    const auto& type = f->value.type;
    w_.set("F", memberName(f->name));
    w_.set("STEM", camelStem(f->name));
    w_.set("UF", upperCamel(f->name));
    w_.set("ACC", flatcName(f->name));
    w_.set("TACC", flatcTypeAccessor(*f));
    w_.line("");
    if (type.base_type == flatbuffers::BASE_TYPE_STRING) {
      w_.line("// `{{ACC}}`; empty when absent.");
      w_.line("std::string_view {{F}}() const {");
      w_.line("  const auto* s = view().{{ACC}}();");
      w_.line(
          "  return s == nullptr ? std::string_view() : std::string_view(s->c_str(), s->size());");
      w_.line("}");
      w_.line("bool has{{UF}}() const { return view().{{ACC}}() != nullptr; }");
    } else if (flatbuffers::IsScalar(type.base_type)) {
      w_.set("T", type.enum_def != nullptr
                      ? globalName(*type.enum_def)
                      : std::string(flatbuffers::IsBool(type.base_type) ? "bool" : ""));
      if (type.enum_def == nullptr && !flatbuffers::IsBool(type.base_type)) {
        w_.set("T", "decltype(std::declval<const {{TABLE}}&>().{{ACC}}())");
      }
      if (f->IsScalarOptional()) {
        w_.line("// `{{ACC}}`; nullopt when absent.");
        w_.line("auto {{F}}() const {");
        w_.line("  const auto v = view().{{ACC}}();");
        w_.line("  return v.has_value() ? std::optional(*v) : std::nullopt;");
        w_.line("}");
      } else {
        w_.line("// `{{ACC}}`; the schema default when absent.");
        w_.line("auto {{F}}() const { return view().{{ACC}}(); }");
      }
    } else if (type.base_type == flatbuffers::BASE_TYPE_UNION) {
      w_.line("// `{{ACC}}`: which member is set, and each member (null unless it is the one).");
      w_.line("auto {{STEM}}Type() const { return view().{{TACC}}(); }");
      for (const flatbuffers::EnumVal* ev : type.enum_def->Vals()) {
        if (ev->union_type.base_type != flatbuffers::BASE_TYPE_STRUCT) continue;
        w_.set("ENUM", globalName(*type.enum_def));
        w_.set("EV", flatcName(ev->name));
        w_.set("UEV", upperCamel(ev->name));
        w_.set("MT", globalName(*ev->union_type.struct_def));
        w_.line("const {{MT}}* {{STEM}}As{{UEV}}() const {");
        w_.line("  return view().{{TACC}}() == {{ENUM}}::{{EV}}");
        w_.line("             ? static_cast<const {{MT}}*>(view().{{ACC}}())");
        w_.line("             : nullptr;");
        w_.line("}");
      }
    } else {
      w_.line("// `{{ACC}}` as FlatBuffers gives it (zero-copy); null when absent.");
      w_.line("auto {{F}}() const { return view().{{ACC}}(); }");
      if (type.base_type == flatbuffers::BASE_TYPE_VECTOR &&
          type.element == flatbuffers::BASE_TYPE_UNION) {
        w_.line("auto {{STEM}}Type() const { return view().{{TACC}}(); }");
      }
    }
  }
  w_.outdent();
  w_.line("");
  w_.line(" private:");
  w_.line("  using EntityBase::EntityBase;");
  w_.line("};");
}

}  // namespace flatstore::codegen
