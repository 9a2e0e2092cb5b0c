#include "runtime/field_path.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "runtime/absl_compat.h"

namespace flatstore::internal {

bool isScalarLeaf(reflection::BaseType t) {
  return (t >= reflection::Bool && t <= reflection::Double) || t == reflection::String;
}

ColumnType columnTypeOf(reflection::BaseType t) {
  if (t == reflection::String) return ColumnType::kText;
  if (t == reflection::Float || t == reflection::Double) return ColumnType::kReal;
  return ColumnType::kInteger;
}

const char* sqlType(ColumnType t) {
  switch (t) {
    case ColumnType::kInteger:
      return "INTEGER";
    case ColumnType::kReal:
      return "REAL";
    case ColumnType::kText:
      return "TEXT";
  }
  return "INTEGER";
}

const reflection::Field* fieldById(const reflection::Object& o, int64_t id) {
  for (const reflection::Field* f : *o.fields()) {
    if (f->id() == id) return f;
  }
  return nullptr;
}

Value FieldPath::read(const uint8_t* buffer) const {
  const flatbuffers::Table* table = flatbuffers::GetAnyRoot(buffer);
  const flatbuffers::Struct* st = nullptr;
  for (size_t i = 0; i + 1 < steps.size(); ++i) {
    const PathStep& s = steps[i];
    const reflection::Field& f = *s.field;
    if (s.in_struct) {
      st = flatbuffers::GetFieldStruct(*st, f);
    } else if (f.type()->base_type() == reflection::Union) {
      auto member = table->GetField<uint8_t>(s.union_type->offset(), 0);
      if (member != s.union_member) return {};
      table = flatbuffers::GetFieldT(*table, f);
      if (table == nullptr) return {};
    } else if (steps[i + 1].in_struct) {
      st = flatbuffers::GetFieldStruct(*table, f);
      if (st == nullptr) return {};
    } else {
      table = flatbuffers::GetFieldT(*table, f);
      if (table == nullptr) return {};
    }
  }
  const PathStep& leaf = steps.back();
  const reflection::Field& f = *leaf.field;
  if (leaf.in_struct) {
    if (type == ColumnType::kReal) return Value::real(flatbuffers::GetAnyFieldF(*st, f));
    return Value::integer(flatbuffers::GetAnyFieldI(*st, f));
  }
  if (f.type()->base_type() == reflection::String) {
    const flatbuffers::String* s = flatbuffers::GetFieldS(*table, f);
    if (s == nullptr) return {};
    return Value::text(std::string(s->c_str(), s->size()));
  }
  if (f.optional() && !table->CheckField(f.offset())) return {};
  if (type == ColumnType::kReal) return Value::real(flatbuffers::GetAnyFieldF(*table, f));
  return Value::integer(flatbuffers::GetAnyFieldI(*table, f));
}

absl::Status resolveIdPath(const reflection::Schema& schema, const reflection::Object& root,
                           std::string_view table, std::string_view id_path, FieldPath* out) {
  const reflection::Object* o = &root;
  bool in_struct = false;
  std::vector<std::string> names;
  auto bad = [&](std::string_view why) {
    return absl::DataLossError(
        absl::StrCat("table ", av(table), ": key path ", av(id_path), " ", av(why)));
  };
  for (absl::string_view segment : absl::StrSplit(av(id_path), '.')) {
    if (o == nullptr) return bad("goes past a scalar field");
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(segment, 'u');
    int64_t id = 0;
    if (!absl::SimpleAtoi(parts.first, &id)) return bad("is malformed");
    const reflection::Field* f = fieldById(*o, id);
    if (f == nullptr) return bad("names a field the stored schema lacks");
    PathStep step{f, in_struct, nullptr, 0};
    names.push_back(f->name()->str());
    reflection::BaseType bt = f->type()->base_type();
    if (bt == reflection::Obj) {
      o = schema.objects()->Get(static_cast<flatbuffers::uoffset_t>(f->type()->index()));
      in_struct = o->is_struct();
    } else if (bt == reflection::Union) {
      int64_t member = 0;
      if (parts.second.empty() || !absl::SimpleAtoi(parts.second, &member)) {
        return bad("does not name a union member");
      }
      const reflection::Enum* e =
          schema.enums()->Get(static_cast<flatbuffers::uoffset_t>(f->type()->index()));
      const reflection::EnumVal* v = e->values()->LookupByKey(member);
      if (v == nullptr || v->union_type() == nullptr) return bad("names an unknown union member");
      step.union_type = fieldById(*o, id - 1);
      step.union_member = member;
      names.push_back(v->name()->str());
      o = schema.objects()->Get(static_cast<flatbuffers::uoffset_t>(v->union_type()->index()));
      in_struct = false;
    } else if (isScalarLeaf(bt)) {
      o = nullptr;
      out->type = columnTypeOf(bt);
    } else {
      return bad("goes through a vector");
    }
    out->steps.push_back(step);
  }
  if (o != nullptr) return bad("does not end at a scalar or string field");
  out->path = absl::StrJoin(names, ".");
  out->id_path = std::string(id_path);
  return absl::OkStatus();
}

}  // namespace flatstore::internal
