#include "runtime/version_bridge.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"

namespace flatstore::internal {

namespace {

// A binary schema and the entity's table in it; null when `bfbs` is not a valid
// binary schema defining `entity`.
const reflection::Object* rootOf(std::span<const uint8_t> bfbs, std::string_view entity,
                                 const reflection::Schema** schema) {
  flatbuffers::Verifier verifier(bfbs.data(), bfbs.size());
  if (bfbs.empty() || !reflection::VerifySchemaBuffer(verifier)) return nullptr;
  *schema = reflection::GetSchema(bfbs.data());
  const reflection::Object* o = (*schema)->objects()->LookupByKey(std::string(entity).c_str());
  return o == nullptr || o->is_struct() ? nullptr : o;
}

const reflection::Object* objectAt(const reflection::Schema& s, int32_t index) {
  return s.objects()->Get(static_cast<flatbuffers::uoffset_t>(index));
}

// The table a union member holds; null for NONE (whose type has no object).
const reflection::Object* memberObject(const reflection::Schema& s, const reflection::EnumVal* v) {
  if (v == nullptr || v->union_type() == nullptr || v->union_type()->index() < 0) return nullptr;
  return objectAt(s, v->union_type()->index());
}

// Walks two schemas of one table in parallel, from the root through nested tables,
// structs, vectors of them and union members, matching fields by id.
class SchemaWalk {
 public:
  SchemaWalk(const reflection::Schema& a, const reflection::Schema& b) : a_(a), b_(b) {}

  // The first field of `ob` (a table of schema b) that `oa` (the same table in schema
  // a) lacks, has with another type, or has live where b deprecated it, as a path of
  // b's names; empty when a has all of b's fields.
  std::string missingIn(const reflection::Object& oa, const reflection::Object& ob) {
    if (!visited_.emplace(&oa, &ob).second) return "";
    if (oa.is_struct() != ob.is_struct() || (ob.is_struct() && oa.bytesize() != ob.bytesize())) {
      return ob.name()->str();
    }
    for (const reflection::Field* fb : *ob.fields()) {
      std::string here = absl::StrCat(ob.name()->str(), ".", fb->name()->str());
      const reflection::Field* fa = fieldById(oa, fb->id());
      if (fa == nullptr || !sameShape(*fa, *fb) || (fb->deprecated() && !fa->deprecated())) {
        return here;
      }
      if (const reflection::Object* sb = subObject(b_, *fb)) {
        std::string deeper = missingIn(*subObject(a_, *fa), *sb);
        if (!deeper.empty()) return deeper;
      }
      if (fb->type()->base_type() == reflection::Union) {
        const reflection::Enum* ea = a_.enums()->Get(fa->type()->index());
        const reflection::Enum* eb = b_.enums()->Get(fb->type()->index());
        for (const reflection::EnumVal* vb : *eb->values()) {
          const reflection::Object* mb = memberObject(b_, vb);
          if (mb == nullptr) continue;
          const reflection::Object* ma = memberObject(a_, ea->values()->LookupByKey(vb->value()));
          if (ma == nullptr) return absl::StrCat(here, ".", vb->name()->str());
          std::string deeper = missingIn(*ma, *mb);
          if (!deeper.empty()) return deeper;
        }
      }
    }
    return "";
  }

  // Whether re-packing an object of table `nb` (schema b, the newest) with the
  // program's table `pa` (schema a) drops something: a field a lacks or deprecated,
  // here or below. Call only when a has every field of b (missingIn is empty).
  bool drops(const reflection::Object& pa, const reflection::Object& nb) {
    auto [it, fresh] = drops_.emplace(&nb, false);
    if (!fresh) return it->second;  // known, or in progress on a cycle
    bool result = false;
    for (const reflection::Field* fb : *nb.fields()) {
      const reflection::Field* fa = fieldById(pa, fb->id());
      if (fa == nullptr || fa->deprecated() || dropsBelow(*fa, *fb)) {
        result = true;
        break;
      }
    }
    drops_[&nb] = result;
    return result;
  }

  // Whether the content of field `fb` (schema b) re-packed as field `fa` (schema a)
  // loses something below the field itself.
  bool dropsBelow(const reflection::Field& fa, const reflection::Field& fb) {
    if (const reflection::Object* sb = subObject(b_, fb)) {
      return !sb->is_struct() && drops(*subObject(a_, fa), *sb);
    }
    if (fb.type()->base_type() != reflection::Union) return false;
    const reflection::Enum* ea = a_.enums()->Get(fa.type()->index());
    const reflection::Enum* eb = b_.enums()->Get(fb.type()->index());
    for (const reflection::EnumVal* vb : *eb->values()) {
      const reflection::Object* mb = memberObject(b_, vb);
      if (mb == nullptr) continue;
      const reflection::Object* ma = memberObject(a_, ea->values()->LookupByKey(vb->value()));
      if (ma == nullptr || drops(*ma, *mb)) return true;
    }
    return false;
  }

 private:
  static bool sameShape(const reflection::Field& fa, const reflection::Field& fb) {
    const reflection::Type& ta = *fa.type();
    const reflection::Type& tb = *fb.type();
    if (ta.base_type() != tb.base_type()) return false;
    if (ta.base_type() == reflection::Vector && ta.element() != tb.element()) return false;
    return ta.base_type() != reflection::Array || ta.fixed_length() == tb.fixed_length();
  }
  // The table or struct a field holds (directly or as vector elements), or null.
  static const reflection::Object* subObject(const reflection::Schema& s,
                                             const reflection::Field& f) {
    reflection::BaseType t = f.type()->base_type();
    if (t == reflection::Vector || t == reflection::Array) t = f.type()->element();
    return t == reflection::Obj ? objectAt(s, f.type()->index()) : nullptr;
  }

  const reflection::Schema& a_;
  const reflection::Schema& b_;
  std::set<std::pair<const reflection::Object*, const reflection::Object*>> visited_;
  std::map<const reflection::Object*, bool> drops_;
};

// Deep copies of one field's value into `fbb`; 0 for an absent field or one stored
// inline (a scalar or struct).
absl::StatusOr<flatbuffers::uoffset_t> copyOutOfLine(flatbuffers::FlatBufferBuilder& fbb,
                                                     const reflection::Schema& schema,
                                                     const reflection::Object& object,
                                                     const reflection::Field& f,
                                                     const flatbuffers::Table& src,
                                                     std::string_view table) {
  if (!src.CheckField(f.offset())) return 0;
  switch (f.type()->base_type()) {
    case reflection::String:
      return fbb.CreateString(flatbuffers::GetFieldS(src, f)).o;
    case reflection::Obj: {
      const reflection::Object& sub = *objectAt(schema, f.type()->index());
      if (sub.is_struct()) return 0;
      return flatbuffers::CopyTable(fbb, schema, sub, *flatbuffers::GetFieldT(src, f)).o;
    }
    case reflection::Union: {
      const reflection::Enum& e = *schema.enums()->Get(f.type()->index());
      const reflection::Field* type_field = fieldById(object, f.id() - 1);
      uint8_t member = type_field == nullptr ? 0 : src.GetField<uint8_t>(type_field->offset(), 0);
      const reflection::Object* sub = memberObject(schema, e.values()->LookupByKey(member));
      if (sub == nullptr) return 0;
      return flatbuffers::CopyTable(fbb, schema, *sub, *flatbuffers::GetFieldT(src, f)).o;
    }
    case reflection::Vector: {
      const auto* any = src.GetPointer<const flatbuffers::Vector<uint8_t>*>(f.offset());
      reflection::BaseType element = f.type()->element();
      const reflection::Object* sub =
          element == reflection::Obj ? objectAt(schema, f.type()->index()) : nullptr;
      if (element == reflection::String) {
        const auto* v =
            reinterpret_cast<const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>*>(
                any);
        std::vector<flatbuffers::Offset<flatbuffers::String>> items;
        items.reserve(v->size());
        for (const flatbuffers::String* s : *v) items.push_back(fbb.CreateString(s));
        return fbb.CreateVector(items).o;
      }
      if (sub != nullptr && !sub->is_struct()) {
        const auto* v =
            reinterpret_cast<const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::Table>>*>(
                any);
        std::vector<flatbuffers::Offset<const flatbuffers::Table*>> items;
        items.reserve(v->size());
        for (const flatbuffers::Table* t : *v) {
          items.push_back(flatbuffers::CopyTable(fbb, schema, *sub, *t));
        }
        return fbb.CreateVector(items).o;
      }
      if (element == reflection::Union || element == reflection::UType) {
        return absl::InvalidArgumentError(
            absl::StrCat("table ", av(table), ": field ", f.name()->str(),
                         " is a vector of unions, which a program older than the file's "
                         "schema cannot carry over"));
      }
      // Scalars and structs: the elements' bytes as they are.
      size_t size = sub != nullptr ? sub->bytesize() : flatbuffers::GetTypeSize(element);
      size_t align = sub != nullptr ? sub->minalign() : size;
      size_t n = any->size();
      fbb.ForceVectorAlignment(n, size, align);
      fbb.StartVector(n * size, 1);
      fbb.PushBytes(any->Data(), n * size);
      return fbb.EndVector(n);
    }
    default:
      return 0;
  }
}

}  // namespace

absl::StatusOr<SchemaOrder> compareSchemas(const TableDescription& table,
                                           std::span<const uint8_t> stored) {
  const reflection::Schema* ps = nullptr;
  const reflection::Schema* ss = nullptr;
  const reflection::Object* po = rootOf(table.binary_schema, table.entity_name, &ps);
  const reflection::Object* so = rootOf(stored, table.entity_name, &ss);
  if (po == nullptr) {
    return absl::InternalError(absl::StrCat("table ", av(table.table_name),
                                            ": the program's binary schema does not define ",
                                            av(table.entity_name)));
  }
  if (so == nullptr) {
    return absl::DataLossError(absl::StrCat("table ", av(table.table_name),
                                            ": the stored schema is not a valid binary schema of ",
                                            av(table.entity_name)));
  }
  std::string program_lacks = SchemaWalk(*ps, *ss).missingIn(*po, *so);
  std::string stored_lacks = SchemaWalk(*ss, *ps).missingIn(*so, *po);
  if (program_lacks.empty()) {
    return stored_lacks.empty() ? SchemaOrder::kEquivalent : SchemaOrder::kProgramNewer;
  }
  if (stored_lacks.empty()) return SchemaOrder::kStoredNewer;
  return absl::FailedPreconditionError(absl::StrCat(
      "table ", av(table.table_name),
      " is stored with a schema that is neither older nor newer than this program's: the "
      "program lacks field ",
      program_lacks, " of the stored one, which lacks field ", stored_lacks,
      " of the program's (by field id and type)"));
}

absl::StatusOr<std::unique_ptr<VersionBridge>> VersionBridge::create(
    const TableDescription& table, std::vector<uint8_t> newest,
    const std::vector<StoredIndex>& foreign_indexes) {
  std::unique_ptr<VersionBridge> b(new VersionBridge());
  b->table_ = std::string(table.table_name);
  b->bfbs_ = std::move(newest);
  b->object_ = rootOf(b->bfbs_, table.entity_name, &b->schema_);
  const reflection::Schema* ps = nullptr;
  const reflection::Object* po = rootOf(table.binary_schema, table.entity_name, &ps);
  if (b->object_ == nullptr || po == nullptr) {
    return absl::DataLossError(absl::StrCat("table ", av(table.table_name),
                                            ": the newest schema is not a valid binary schema of ",
                                            av(table.entity_name)));
  }
  SchemaWalk walk(*ps, *b->schema_);
  for (const reflection::Field* f : *b->object_->fields()) {
    size_t id = f->id();
    if (b->written_.size() <= id) b->written_.resize(id + 1, false);
    const reflection::Field* known = fieldById(*po, f->id());
    b->written_[id] = known != nullptr && !known->deprecated();
    if (!b->written_[id] || walk.dropsBelow(*known, *f)) b->dropped_.push_back(f->offset());
  }
  for (const StoredIndex& index : foreign_indexes) {
    ForeignIndex& x = b->indexes_.emplace_back();
    x.table = index.table;
    x.unique = index.unique;
    FLATSTORE_RETURN_IF_ERROR(
        resolveIdPath(*b->schema_, *b->object_, table.table_name, index.id_path, &x.path));
  }
  if (b->dropped_.empty() && b->indexes_.empty()) return std::unique_ptr<VersionBridge>();
  return b;
}

bool VersionBridge::mustRecompose(const uint8_t* current) const {
  const flatbuffers::Table* t = flatbuffers::GetAnyRoot(current);
  for (flatbuffers::voffset_t off : dropped_) {
    if (t->CheckField(off)) return true;
  }
  return false;
}

absl::StatusOr<ObjectBuffer> VersionBridge::recompose(const uint8_t* current,
                                                      const uint8_t* encoded,
                                                      uint64_t changed_fields) const {
  const flatbuffers::Table& cur = *flatbuffers::GetAnyRoot(current);
  const flatbuffers::Table& enc = *flatbuffers::GetAnyRoot(encoded);
  // A changed field the program writes comes from its encoding; a union's type field
  // goes with its value field (the next id).
  auto source = [&](const reflection::Field& f) -> const flatbuffers::Table& {
    size_t id = f.id();
    if (f.type()->base_type() == reflection::UType) id += 1;
    bool written = id < written_.size() && written_[id];
    bool changed = (changed_fields >> std::min<size_t>(id, 63)) & 1;
    return written && changed ? enc : cur;
  };
  const auto& fields = *object_->fields();
  flatbuffers::FlatBufferBuilder fbb;
  // Out-of-line values first: a table is built only after everything it points to.
  std::vector<flatbuffers::uoffset_t> offsets(fields.size(), 0);
  for (flatbuffers::uoffset_t i = 0; i < fields.size(); ++i) {
    const reflection::Field& f = *fields.Get(i);
    FLATSTORE_ASSIGN_OR_RETURN(offsets[i],
                               copyOutOfLine(fbb, *schema_, *object_, f, source(f), table_));
  }
  flatbuffers::uoffset_t start = fbb.StartTable();
  for (flatbuffers::uoffset_t i = 0; i < fields.size(); ++i) {
    const reflection::Field& f = *fields.Get(i);
    const flatbuffers::Table& src = source(f);
    if (!src.CheckField(f.offset())) continue;
    reflection::BaseType type = f.type()->base_type();
    const reflection::Object* sub =
        type == reflection::Obj ? objectAt(*schema_, f.type()->index()) : nullptr;
    bool inline_value = flatbuffers::IsScalar(type) || (sub != nullptr && sub->is_struct());
    if (!inline_value) {
      if (offsets[i] != 0) fbb.AddOffset(f.offset(), flatbuffers::Offset<void>(offsets[i]));
      continue;
    }
    // Inline: a scalar, or a struct, copied byte for byte (so an optional scalar or a
    // value equal to its default stays present as it was).
    size_t size = sub != nullptr ? sub->bytesize() : flatbuffers::GetTypeSize(type);
    size_t align = sub != nullptr ? sub->minalign() : size;
    fbb.Align(align);
    fbb.PushBytes(src.GetStruct<const uint8_t*>(f.offset()), size);
    fbb.TrackField(f.offset(), fbb.GetSize());
  }
  fbb.Finish(flatbuffers::Offset<flatbuffers::Table>(fbb.EndTable(start)));
  return ObjectBuffer::copyOf(std::span<const uint8_t>(fbb.GetBufferPointer(), fbb.GetSize()));
}

bool VersionBridge::verify(std::span<const uint8_t> bytes) const {
  return flatbuffers::Verify(*schema_, *object_, bytes.data(), bytes.size());
}

void VersionBridge::appendIndexValues(const uint8_t* buffer, std::vector<Value>* out) const {
  for (const ForeignIndex& x : indexes_) out->push_back(x.path.read(buffer));
}

}  // namespace flatstore::internal
