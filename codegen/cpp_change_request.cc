// CppGenerator's change requests: `<Entity>ChangeRequest` with its factories, one
// setter (and clearer) per field in the header, and `encodeOver`, which applies the
// touched fields and encodes the object, in the source file.
#include <algorithm>
#include <string>
#include <vector>

#include "codegen/cpp_generator.h"
#include "codegen/cpp_generator_util.h"
#include "codegen/names.h"

namespace flatstore::codegen {

using flatbuffers::FieldDef;

namespace {

// The C++ type a scalar field is stored as (a bool as a byte); null for a union's type
// and for anything but a scalar.
const char* storedScalarType(flatbuffers::BaseType t) {
  if (t == flatbuffers::BASE_TYPE_UTYPE) return nullptr;
  return t == flatbuffers::BASE_TYPE_BOOL ? "uint8_t" : cppScalarType(t);
}

}  // namespace

std::vector<size_t> CppGenerator::inPlaceFields(const std::vector<const FieldDef*>& fields) {
  std::vector<size_t> out;
  for (size_t i = 0; i < fields.size(); ++i) {
    const FieldDef& f = *fields[i];
    // A stored scalar keeps its slot and size whatever its value; an optional one and a
    // hash (written after Pack) are left to the full encoding.
    if (storedScalarType(f.value.type.base_type) == nullptr || f.IsScalarOptional() ||
        isHashedReference(f)) {
      continue;
    }
    out.push_back(i);
  }
  return out;
}

void CppGenerator::genEncodeInPlace(const Entity& e, const std::vector<const FieldDef*>& fields,
                                    const std::vector<size_t>& in_place) {
  w_.line("");
  w_.line("absl::StatusOr<::flatstore::EncodedObject> {{REQUEST}}::encodeOver(");
  w_.line("    std::span<const uint8_t> current) const {");
  w_.indent();
  w_.line("if (current.empty()) return encodeOver(nullptr);");
  // Any other field touched: the full encoding. Four tests a line.
  std::vector<std::string> others;
  for (size_t i = 0, next = 0; i < fields.size(); ++i) {
    if (next < in_place.size() && in_place[next] == i) {
      ++next;
      continue;
    }
    others.push_back("touched_.test(" + std::to_string(i) + ")");
  }
  if (!others.empty()) {
    std::string line = "if (";
    for (size_t i = 0; i < others.size(); ++i) {
      bool last = i + 1 == others.size();
      line += others[i] + (last ? ") {" : " ||");
      if (last || i % 4 == 3) {
        w_.line(line);
        line = "    ";
      } else {
        line += " ";
      }
    }
    w_.line("  return encodeOver(current.data());");
    w_.line("}");
  }
  w_.line("const auto* object = ::flatbuffers::GetRoot<{{TABLE}}>(current.data());");
  w_.line("const auto* table = reinterpret_cast<const ::flatbuffers::Table*>(object);");
  w_.line("uint64_t changed_fields = 0;");
  // Sets the variables of field `i` and returns it.
  auto select = [&](size_t i) -> const FieldDef& {
    const FieldDef& f = *fields[i];
    w_.set("BIT", std::to_string(i));
    w_.set("M", flatcName(f.name));
    w_.set("VT", std::to_string(f.value.offset));
    return f;
  };
  // A field the object does not store (it had its default) has no slot to write.
  for (size_t i : in_place) {
    const FieldDef& f = select(i);
    w_.set("ID", std::to_string(std::min(fieldId(*e.table, f), 63)));
    w_.line("if (touched_.test({{BIT}}) && object->{{M}}() != value_.{{M}}) {");
    w_.line("  if (table->GetOptionalFieldOffset({{VT}}) == 0) return encodeOver(current.data());");
    w_.line("  changed_fields |= uint64_t{1} << {{ID}};");
    w_.line("}");
  }
  w_.line("if (changed_fields == 0) {");
  w_.line("  return ::flatstore::EncodedObject{::flatstore::ObjectBuffer(), false, 0};");
  w_.line("}");
  w_.line("::flatstore::detail::ScalarRewrite rewrite(current, table);");
  for (size_t i : in_place) {
    w_.set("ST", storedScalarType(select(i).value.type.base_type));
    w_.line("if (touched_.test({{BIT}})) rewrite.write<{{ST}}>({{VT}}, value_.{{M}});");
  }
  w_.line("return std::move(rewrite).done(changed_fields);");
  w_.outdent();
  w_.line("}");
}

void CppGenerator::genChangeRequest(const Entity& e) {
  std::vector<const FieldDef*> fields = settableFields(*e.table);
  w_.set("NBITS", std::to_string(fields.empty() ? 1 : fields.size()));
  w_.line("");
  w_.line("// A change to one {{NAME}}; see flatstore/change_request.h.");
  w_.line("class {{REQUEST}} : public ::flatstore::ChangeRequestBase<{{REQUEST}}> {");
  w_.line(" public:");
  w_.indent();
  w_.line("using Entity = {{ENTITY}};");
  w_.line("");
  w_.line("// A new object: untouched fields keep the schema's defaults.");
  w_.line(
      "static {{REQUEST}} creation() { return {{REQUEST}}(::flatstore::ChangeKind::kCreation); }");
  w_.line("// Inserts the object, or applies the touched fields if its key exists.");
  w_.line("static {{REQUEST}} upsert() { return {{REQUEST}}(::flatstore::ChangeKind::kUpsert); }");
  w_.line("// Applies the touched fields to `object` as the transaction sees it.");
  w_.line("static {{REQUEST}} changeOf(const {{ENTITY}}& object) {");
  w_.line("  {{REQUEST}} r(::flatstore::ChangeKind::kChange);");
  w_.line("  r.target(object);");
  w_.line("  return r;");
  w_.line("}");
  w_.line("// Deletes `object`.");
  w_.line("static {{REQUEST}} deletionOf(const {{ENTITY}}& object) {");
  w_.line("  {{REQUEST}} r(::flatstore::ChangeKind::kDeletion);");
  w_.line("  r.target(object);");
  w_.line("  return r;");
  w_.line("}");
  if (e.key_paths.empty()) {
    w_.line("// Deletes the object with automatic id `id`.");
    w_.line("static {{REQUEST}} deletion(int64_t id) {");
    w_.line("  {{REQUEST}} r(::flatstore::ChangeKind::kDeletion);");
    w_.line("  r.target_rowid_ = id;");
    w_.line("  return r;");
    w_.line("}");
  } else {
    // Parameters are named after the key fields; the body refers to nothing else by an
    // unqualified name, so no field name can shadow what it uses.
    std::string params;
    std::string values;
    std::vector<std::string> types = keyTypes(e);
    for (size_t i = 0; i < e.key_paths.size(); ++i) {
      const QueryPath& p = e.paths[static_cast<size_t>(e.key_paths[i])];
      std::string name = memberName(p.steps.back().field->name);
      params += (params.empty() ? "" : ", ") + types[i] + " " + name;
      values += (values.empty() ? "" : ", ") + std::string("::flatstore::Value::of(") + name + ")";
    }
    w_.set("PARAMS", params);
    w_.set("VALUES", values);
    w_.set("QREQUEST", "::" + e.cpp_name + "ChangeRequest");
    w_.line("// Deletes the object with this primary key.");
    w_.line("static {{REQUEST}} deletion({{PARAMS}}) {");
    w_.line("  return {{QREQUEST}}::keyedDeletion({{{VALUES}}});");
    w_.line("}");
  }
  for (size_t i = 0; i < fields.size(); ++i) genSetter(e, *fields[i], i);
  w_.line("");
  w_.line("// Whether a setter touched anything.");
  w_.line("bool touchesAnything() const { return touched_.any(); }");
  w_.line("");
  w_.line("// Applies the touched fields to the verified object in `current` (null: to a new");
  w_.line("// object with the schema's defaults) and encodes the result. `changed` is false");
  w_.line("// when the object would stay exactly as it is.");
  w_.line("absl::StatusOr<::flatstore::EncodedObject> encodeOver(const uint8_t* current) const;");
  std::vector<size_t> in_place = inPlaceFields(fields);
  if (!in_place.empty()) {
    w_.line("// The same, with the size of `current`: a change that sets only scalar fields the");
    w_.line("// object stores is written into a copy of it instead of encoding it again.");
    w_.line(
        "absl::StatusOr<::flatstore::EncodedObject> encodeOver(std::span<const uint8_t> current) "
        "const;");
  }
  w_.select(kSource);
  w_.line("");
  w_.line("absl::StatusOr<::flatstore::EncodedObject> {{REQUEST}}::encodeOver(");
  w_.line("    const uint8_t* current) const {");
  w_.indent();
  w_.line("{{NATIVE}} object;");
  w_.line("if (current != nullptr) ::flatbuffers::GetRoot<{{TABLE}}>(current)->UnPackTo(&object);");
  w_.line("uint64_t changed_fields = 0;");
  bool hashed_scalars = false;
  for (size_t i = 0; i < fields.size(); ++i) {
    const FieldDef& f = *fields[i];
    w_.set("BIT", std::to_string(i));
    w_.set("M", flatcName(f.name));
    w_.set("ACC", flatcName(f.name));
    // The mask is by FlatBuffers field id, which queries' id paths start with.
    w_.set("ID", std::to_string(std::min(fieldId(*e.table, f), 63)));
    if (isHashedReference(f)) {
      w_.set("HT", hashType(f));
      if (f.value.type.base_type == flatbuffers::BASE_TYPE_VECTOR) {
        w_.line("std::vector<{{HT}}> hashes{{BIT}};");
        w_.line("if (current != nullptr) {");
        w_.line("  if (const auto* v = ::flatbuffers::GetRoot<{{TABLE}}>(current)->{{ACC}}()) {");
        w_.line("    hashes{{BIT}}.assign(v->begin(), v->end());");
        w_.line("  }");
        w_.line("}");
      } else {
        hashed_scalars = true;
        w_.set("DEFAULT", f.value.constant);
        w_.line("{{HT}} hashes{{BIT}} = current != nullptr");
        w_.line("    ? ::flatbuffers::GetRoot<{{TABLE}}>(current)->{{ACC}}()");
        w_.line("    : {{HT}}({{DEFAULT}});");
      }
      w_.line("if (touched_.test({{BIT}})) {");
      w_.line("  if (hashes{{BIT}} != hash{{BIT}}_) changed_fields |= uint64_t{1} << {{ID}};");
      w_.line("  hashes{{BIT}} = hash{{BIT}}_;");
      w_.line("}");
      if (f.value.type.base_type == flatbuffers::BASE_TYPE_VECTOR) {
        // Pack() writes a vector of this length, filled below.
        w_.line("object.{{M}}.clear();");
        w_.line("object.{{M}}.resize(hashes{{BIT}}.size());");
      }
      continue;
    }
    w_.line("if (touched_.test({{BIT}})) {");
    w_.line("  if (!::flatstore::internal::deepEqual(object.{{M}}, value_.{{M}})) {");
    w_.line("    changed_fields |= uint64_t{1} << {{ID}};");
    w_.line("  }");
    w_.line("  object.{{M}} = ::flatstore::internal::deepCopy(value_.{{M}});");
    w_.line("}");
  }
  w_.line("if (current != nullptr && changed_fields == 0) {");
  w_.line("  return ::flatstore::EncodedObject{::flatstore::ObjectBuffer(), false, 0};");
  w_.line("}");
  for (const FieldDef* f : fields) {
    const auto& type = f->value.type;
    if (!f->IsRequired() || type.base_type != flatbuffers::BASE_TYPE_STRUCT || f->native_inline) {
      continue;
    }
    w_.set("M", flatcName(f->name));
    w_.set("FNAME", cppStringLiteral("{{FULL_NAME}}." + f->name));
    w_.line("if (object.{{M}} == nullptr) {");
    w_.line("  return absl::InvalidArgumentError(\"required field \" {{FNAME}} \" is not set\");");
    w_.line("}");
  }
  // One builder per thread, kept between calls (its buffer is reused), unless an object
  // made it large.
  w_.line("static thread_local ::flatbuffers::FlatBufferBuilder builder;");
  w_.line("builder.Clear();");
  // A hash equal to the default would not be written; forced, every scalar has its slot.
  if (hashed_scalars) w_.line("builder.ForceDefaults(true);");
  w_.line("builder.Finish({{TABLE}}::Pack(builder, &object));");
  bool any_hashed = false;
  for (size_t i = 0; i < fields.size(); ++i) {
    const FieldDef& f = *fields[i];
    if (!isHashedReference(f)) continue;
    if (!any_hashed) {
      w_.line("auto* written = ::flatbuffers::GetMutableRoot<::flatbuffers::Table>(");
      w_.line("    builder.GetBufferPointer());");
      any_hashed = true;
    }
    w_.set("BIT", std::to_string(i));
    w_.set("HT", hashType(f));
    w_.set("VT", std::to_string(f.value.offset));
    if (f.value.type.base_type == flatbuffers::BASE_TYPE_VECTOR) {
      w_.line("if (auto* v = written->GetPointer<::flatbuffers::Vector<{{HT}}>*>({{VT}})) {");
      w_.line("  for (::flatbuffers::uoffset_t i = 0; i < v->size(); ++i) {");
      w_.line("    v->Mutate(i, hashes{{BIT}}[i]);");
      w_.line("  }");
      w_.line("}");
    } else {
      w_.set("DEFAULT", f.value.constant);
      w_.line("written->SetField<{{HT}}>({{VT}}, hashes{{BIT}}, {{HT}}({{DEFAULT}}));");
    }
  }
  w_.line("::flatstore::ObjectBuffer bytes =");
  w_.line(
      "    ::flatstore::ObjectBuffer::copyOf({builder.GetBufferPointer(), builder.GetSize()});");
  w_.line("if (builder.GetSize() > ::flatstore::internal::kKeptBuilderBytes) builder.Reset();");
  w_.line("return ::flatstore::EncodedObject{std::move(bytes), true,");
  w_.line("                                 current != nullptr ? changed_fields : ~uint64_t{0}};");
  w_.outdent();
  w_.line("}");
  if (!in_place.empty()) genEncodeInPlace(e, fields, in_place);
  w_.select(kHeader);
  w_.outdent();
  w_.line("");
  w_.line(" private:");
  w_.indent();
  w_.line("explicit {{REQUEST}}(::flatstore::ChangeKind kind) : ChangeRequestBase(kind) {}");
  if (!e.key_paths.empty()) {
    w_.line("static {{REQUEST}} keyedDeletion(std::vector<::flatstore::Value> key) {");
    w_.line("  {{REQUEST}} r(::flatstore::ChangeKind::kDeletion);");
    w_.line("  r.target_key_ = std::move(key);");
    w_.line("  return r;");
    w_.line("}");
  }
  w_.line("void target(const {{ENTITY}}& object) {");
  w_.line("  target_rowid_ = object.rowid();");
  w_.line("  {{DETAIL}}::keyOf(object.data(), &target_key_);");
  w_.line("}");
  w_.line("");
  w_.line("std::bitset<{{NBITS}}> touched_;");
  w_.line("{{NATIVE}} value_;");
  for (size_t i = 0; i < fields.size(); ++i) {
    if (!isHashedReference(*fields[i])) continue;
    w_.set("BIT", std::to_string(i));
    w_.set("HT", hashType(*fields[i]));
    if (fields[i]->value.type.base_type == flatbuffers::BASE_TYPE_VECTOR) {
      w_.line("std::vector<{{HT}}> hash{{BIT}}_;");
    } else {
      w_.line("{{HT}} hash{{BIT}}_ = 0;");
    }
  }
  w_.outdent();
  w_.line("};");
}

void CppGenerator::genSetter(const Entity& e, const FieldDef& f, size_t bit) {
  const auto& type = f.value.type;
  w_.set("UF", upperCamel(f.name));
  w_.set("M", flatcName(f.name));
  w_.set("BIT", std::to_string(bit));
  w_.line("");
  auto body = [&](const char* assign) {
    w_.line(std::string("  ") + assign);
    w_.line("  touched_.set({{BIT}});");
    w_.line("  return *this;");
    w_.line("}");
  };
  if (isHashedReference(f)) {
    // The object API holds a pointer here that only a resolver can fill; the request
    // keeps the hashes, and encodeOver() writes them into the encoded object.
    w_.set("HT", hashType(f));
    if (type.base_type == flatbuffers::BASE_TYPE_VECTOR) {
      w_.line("// The hashes of the referenced objects' names.");
      w_.line("{{REQUEST}}& set{{UF}}(std::vector<{{HT}}> hashes) {");
      body("hash{{BIT}}_ = std::move(hashes);");
    } else {
      w_.line("// The hash of the referenced object's name.");
      w_.line("{{REQUEST}}& set{{UF}}({{HT}} hash) {");
      body("hash{{BIT}}_ = hash;");
    }
  } else if (type.base_type == flatbuffers::BASE_TYPE_STRING) {
    w_.line("{{REQUEST}}& set{{UF}}(std::string_view value) {");
    body("value_.{{M}}.assign(value.data(), value.size());");
  } else if (flatbuffers::IsScalar(type.base_type)) {
    if (f.IsScalarOptional()) {
      w_.line("{{REQUEST}}& set{{UF}}(typename decltype({{NATIVE}}::{{M}})::value_type value) {");
      body("value_.{{M}} = value;");
      w_.line("{{REQUEST}}& clear{{UF}}() {");
      body("value_.{{M}} = ::flatbuffers::nullopt;");
    } else {
      w_.line("{{REQUEST}}& set{{UF}}(decltype({{NATIVE}}::{{M}}) value) {");
      body("value_.{{M}} = value;");
    }
  } else if (type.base_type == flatbuffers::BASE_TYPE_STRUCT) {
    bool fixed = type.struct_def->fixed;
    w_.set("ST", globalName(*type.struct_def) + (fixed ? "" : "T"));
    // The object API holds a struct with `native_type` as that type.
    if (const auto* native = type.struct_def->attributes.Lookup("native_type"); fixed && native) {
      w_.set("ST", native->constant);
    }
    if (fixed) {
      w_.line("{{REQUEST}}& set{{UF}}(const {{ST}}& value) {");
    } else {
      w_.line("{{REQUEST}}& set{{UF}}({{ST}} value) {");
    }
    if (f.native_inline) {
      body(fixed ? "value_.{{M}} = value;" : "value_.{{M}} = std::move(value);");
    } else {
      body(fixed ? "value_.{{M}} = std::make_unique<{{ST}}>(value);"
                 : "value_.{{M}} = std::make_unique<{{ST}}>(std::move(value));");
      w_.line("{{REQUEST}}& clear{{UF}}() {");
      body("value_.{{M}}.reset();");
    }
  } else if (type.base_type == flatbuffers::BASE_TYPE_UNION) {
    w_.set("UT", globalName(*type.enum_def) + "Union");
    w_.line("{{REQUEST}}& set{{UF}}({{UT}} value) {");
    body("value_.{{M}} = std::move(value);");
    // flatc gives the union a Set() by member type only when no type is a member twice
    // (`union U { A1: A, A2: A }` has none); then the union setter above is the way.
    for (const flatbuffers::EnumVal* ev : type.enum_def->Vals()) {
      const auto& ut = ev->union_type;
      if (type.enum_def->uses_multiple_type_instances ||
          ut.base_type != flatbuffers::BASE_TYPE_STRUCT || ut.struct_def->fixed) {
        continue;
      }
      w_.set("MT", globalName(*ut.struct_def) + "T");
      w_.line("{{REQUEST}}& set{{UF}}({{MT}} value) {");
      body("value_.{{M}}.Set(std::move(value));");
    }
    w_.line("{{REQUEST}}& clear{{UF}}() {");
    body("value_.{{M}}.Reset();");
  } else {
    w_.line("{{REQUEST}}& set{{UF}}(decltype({{NATIVE}}::{{M}}) value) {");
    body("value_.{{M}} = std::move(value);");
  }
}

}  // namespace flatstore::codegen
