#include "runtime/dynamic_table.h"

#include <array>
#include <atomic>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/catalog.h"

namespace flatstore::internal {

namespace {

// Slots behind the trampolines: each entry is published before the function pointer
// that reads it is handed out, and cleared only after its owner is gone.
absl::Mutex g_slots_mu;
std::array<std::atomic<const DynamicTable*>, DynamicTable::kMaxTables> g_tables;
std::array<std::atomic<const FieldPath*>, DynamicTable::kMaxFields> g_fields;
std::array<bool, DynamicTable::kMaxTables> g_table_used ABSL_GUARDED_BY(g_slots_mu);
std::array<bool, DynamicTable::kMaxFields> g_field_used ABSL_GUARDED_BY(g_slots_mu);

template <size_t I>
bool verifyAt(std::span<const uint8_t> bytes) {
  return g_tables[I].load(std::memory_order_acquire)->verify(bytes);
}
template <size_t I>
void keyOfAt(const uint8_t* buffer, std::vector<Value>* out) {
  g_tables[I].load(std::memory_order_acquire)->keyOf(buffer, out);
}
template <size_t I>
void indexValuesOfAt(const uint8_t* buffer, std::vector<Value>* out) {
  g_tables[I].load(std::memory_order_acquire)->indexValuesOf(buffer, out);
}
template <size_t I>
Value readAt(const uint8_t* buffer) {
  return g_fields[I].load(std::memory_order_acquire)->read(buffer);
}

struct TableTrampolines {
  bool (*verify)(std::span<const uint8_t>);
  void (*key_of)(const uint8_t*, std::vector<Value>*);
  void (*index_values_of)(const uint8_t*, std::vector<Value>*);
};
template <size_t... I>
constexpr std::array<TableTrampolines, sizeof...(I)> makeTableTrampolines(
    std::index_sequence<I...>) {
  return {TableTrampolines{&verifyAt<I>, &keyOfAt<I>, &indexValuesOfAt<I>}...};
}
template <size_t... I>
constexpr std::array<Value (*)(const uint8_t*), sizeof...(I)> makeReadTrampolines(
    std::index_sequence<I...>) {
  return {&readAt<I>...};
}
constexpr auto kTableTrampolines =
    makeTableTrampolines(std::make_index_sequence<DynamicTable::kMaxTables>());
constexpr auto kReadTrampolines =
    makeReadTrampolines(std::make_index_sequence<DynamicTable::kMaxFields>());

template <size_t N>
int takeSlot(std::array<bool, N>& used) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_slots_mu) {
  for (size_t i = 0; i < N; ++i) {
    if (!used[i]) {
      used[i] = true;
      return static_cast<int>(i);
    }
  }
  return -1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DynamicTable>> DynamicTable::load(Connection& c,
                                                                 std::string_view name) {
  std::unique_ptr<DynamicTable> t(new DynamicTable());
  t->name_ = std::string(name);
  std::string what = absl::StrCat("table ", av(name));
  uint64_t schema_hash = 0;
  {
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement s,
        c.prepare("SELECT schema_hash, schema FROM flatstore_tables WHERE name = ?", what));
    s.bindText(1, name);
    FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(what));
    if (!row) return absl::NotFoundError(absl::StrCat("no table ", av(name), " in the file"));
    schema_hash = static_cast<uint64_t>(s.columnInt(0));
    std::span<const uint8_t> b = s.columnBlob(1);
    t->bfbs_.assign(b.begin(), b.end());
  }
  flatbuffers::Verifier verifier(t->bfbs_.data(), t->bfbs_.size());
  if (t->bfbs_.empty() || !reflection::VerifySchemaBuffer(verifier)) {
    return absl::DataLossError(
        absl::StrCat(what, ": the stored schema is not a valid binary schema"));
  }
  t->schema_ = reflection::GetSchema(t->bfbs_.data());
  t->object_ = t->schema_->objects()->LookupByKey(t->name_.c_str());
  if (t->object_ == nullptr || t->object_->is_struct()) {
    return absl::DataLossError(
        absl::StrCat(what, ": the stored schema does not define the table ", av(name)));
  }
  std::string quoted = quoteIdentifier(name);

  // Key columns: k<field id>, in the order the table declares them.
  {
    FLATSTORE_ASSIGN_OR_RETURN(Statement s,
                               c.prepare(absl::StrCat("PRAGMA table_info(", quoted, ")"), what));
    while (true) {
      FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(what));
      if (!row) break;
      std::string column(s.columnText(1));
      int64_t id = 0;
      if (column.size() < 2 || column[0] != 'k' || !absl::SimpleAtoi(column.substr(1), &id)) {
        continue;
      }
      FieldPath path;
      FLATSTORE_RETURN_IF_ERROR(t->resolveIdPath(column.substr(1), &path));
      const std::string& col = t->strings_.emplace_back(column);
      const std::string& field_path = t->strings_.emplace_back(path.path);
      t->key_columns_.push_back(KeyColumn{col, field_path, path.type});
      t->key_paths_.push_back(std::move(path));
    }
  }
  // Indexes, in the order they were created.
  {
    FLATSTORE_ASSIGN_OR_RETURN(std::vector<StoredIndex> stored, readStoredIndexes(c, name));
    for (StoredIndex& index : stored) {
      FieldPath path;
      FLATSTORE_RETURN_IF_ERROR(t->resolveIdPath(index.id_path, &path));
      t->backfill_next_.push_back(index.backfill_next);
      std::string quoted_index = quoteIdentifier(index.table);
      IndexDescription d;
      d.table = t->strings_.emplace_back(index.table);
      d.field_path = t->strings_.emplace_back(path.path);
      d.id_path = t->strings_.emplace_back(index.id_path);
      d.type = path.type;
      d.unique = index.unique;
      d.create_table_sql = t->strings_.emplace_back(
          absl::StrCat("CREATE TABLE IF NOT EXISTS ", quoted_index,
                       " (rowid INTEGER PRIMARY KEY, value ", sqlType(path.type), ")"));
      d.create_index_sql = t->strings_.emplace_back(absl::StrCat(
          "CREATE ", index.unique ? "UNIQUE " : "", "INDEX IF NOT EXISTS ",
          quoteIdentifier(absl::StrCat(index.table, "$value")), " ON ", quoted_index, " (value)"));
      t->indexes_.push_back(d);
      t->index_paths_.push_back(std::move(path));
    }
  }
  std::string create = absl::StrCat("CREATE TABLE IF NOT EXISTS ", quoted,
                                    " (rowid INTEGER PRIMARY KEY AUTOINCREMENT, ");
  std::string unique_cols;
  for (const KeyColumn& k : t->key_columns_) {
    absl::StrAppend(&create, quoteIdentifier(k.column), " ", sqlType(k.type), " NOT NULL, ");
    absl::StrAppend(&unique_cols, unique_cols.empty() ? "" : ", ", quoteIdentifier(k.column));
  }
  absl::StrAppend(&create, "p BLOB NOT NULL, vs INTEGER NOT NULL");
  if (!unique_cols.empty()) absl::StrAppend(&create, ", UNIQUE(", unique_cols, ")");
  absl::StrAppend(&create, ")");

  t->parser_ = std::make_unique<flatbuffers::Parser>();
  t->parser_->opts.strict_json = true;
  t->parser_->opts.indent_step = -1;
  t->parser_->opts.output_enum_identifiers = true;
  if (!t->parser_->Deserialize(t->bfbs_.data(), t->bfbs_.size()) ||
      !t->parser_->SetRootType(t->name_.c_str())) {
    return absl::DataLossError(
        absl::StrCat(what, ": the stored schema cannot be loaded: ", t->parser_->error_));
  }

  {
    absl::MutexLock lock(&g_slots_mu);
    t->table_slot_ = takeSlot(g_table_used);
  }
  if (t->table_slot_ < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": more than ", kMaxTables, " tables described at once"));
  }
  g_tables[static_cast<size_t>(t->table_slot_)].store(t.get(), std::memory_order_release);
  const TableTrampolines& tr = kTableTrampolines[static_cast<size_t>(t->table_slot_)];
  t->desc_.entity_name = t->name_;
  t->desc_.table_name = t->name_;
  t->desc_.key_columns = t->key_columns_;
  t->desc_.indexes = t->indexes_;
  t->desc_.create_table_sql = t->strings_.emplace_back(std::move(create));
  t->desc_.schema_hash = schema_hash;
  t->desc_.binary_schema = t->bfbs_;
  t->desc_.verify = tr.verify;
  t->desc_.key_of = tr.key_of;
  t->desc_.index_values_of = tr.index_values_of;
  return t;
}

DynamicTable::~DynamicTable() {
  // Lock order: a table's mu_ before g_slots_mu (as field() takes them).
  absl::MutexLock fields_lock(&mu_);
  absl::MutexLock lock(&g_slots_mu);
  if (table_slot_ >= 0) {
    g_tables[static_cast<size_t>(table_slot_)].store(nullptr, std::memory_order_release);
    g_table_used[static_cast<size_t>(table_slot_)] = false;
  }
  for (const QueryField& f : fields_) {
    g_fields[static_cast<size_t>(f.slot)].store(nullptr, std::memory_order_release);
    g_field_used[static_cast<size_t>(f.slot)] = false;
  }
}

absl::Status DynamicTable::resolveNamePath(std::string_view path, FieldPath* out) const {
  const reflection::Object* o = object_;
  bool in_struct = false;
  std::string id_path;
  std::vector<absl::string_view> segments = absl::StrSplit(av(path), '.');
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("table ", name_, " has no queryable field '", av(path), "' (", av(why), ")"));
  };
  for (size_t i = 0; i < segments.size(); ++i) {
    if (o == nullptr) return bad(absl::StrCat(segments[i - 1], " is not a table or struct"));
    std::string segment(segments[i]);
    const reflection::Field* f = o->fields()->LookupByKey(segment.c_str());
    if (f == nullptr) return bad(absl::StrCat("no field ", segment, " in ", o->name()->str()));
    PathStep step{f, in_struct, nullptr, 0};
    absl::StrAppend(&id_path, id_path.empty() ? "" : ".", f->id());
    reflection::BaseType bt = f->type()->base_type();
    if (bt == reflection::Obj) {
      o = schema_->objects()->Get(static_cast<flatbuffers::uoffset_t>(f->type()->index()));
      in_struct = o->is_struct();
    } else if (bt == reflection::Union) {
      if (i + 1 >= segments.size()) return bad("a union needs a member name after it");
      ++i;
      const reflection::Enum* e =
          schema_->enums()->Get(static_cast<flatbuffers::uoffset_t>(f->type()->index()));
      const reflection::EnumVal* member = nullptr;
      for (const reflection::EnumVal* v : *e->values()) {
        std::string n = v->name()->str();
        if (v->union_type() != nullptr &&
            (n == segments[i] || absl::EndsWith(n, absl::StrCat(".", segments[i])))) {
          member = v;
        }
      }
      if (member == nullptr) {
        return bad(absl::StrCat("no member ", segments[i], " in union ", e->name()->str()));
      }
      step.union_type = fieldById(*o, f->id() - 1);
      step.union_member = member->value();
      absl::StrAppend(&id_path, "u", member->value());
      o = schema_->objects()->Get(
          static_cast<flatbuffers::uoffset_t>(member->union_type()->index()));
      in_struct = false;
    } else if (isScalarLeaf(bt)) {
      o = nullptr;
      out->type = columnTypeOf(bt);
    } else {
      return bad(absl::StrCat(segment, " is a vector"));
    }
    out->steps.push_back(step);
  }
  if (o != nullptr) return bad("it is a table or struct, not a scalar or string");
  out->path = std::string(path);
  out->id_path = id_path;
  return absl::OkStatus();
}

absl::StatusOr<const FieldInfo*> DynamicTable::field(std::string_view path) {
  absl::MutexLock lock(&mu_);
  for (const QueryField& f : fields_) {
    if (f.path.path == path) return &f.info;
  }
  FieldPath resolved;
  FLATSTORE_RETURN_IF_ERROR(resolveNamePath(path, &resolved));
  FieldStorage storage = FieldStorage::kUnindexed;
  int slot = -1;
  for (size_t i = 0; i < key_paths_.size(); ++i) {
    if (key_paths_[i].id_path == resolved.id_path) {
      storage = FieldStorage::kPrimaryKey;
      slot = static_cast<int>(i);
    }
  }
  for (size_t i = 0; i < index_paths_.size() && storage == FieldStorage::kUnindexed; ++i) {
    if (index_paths_[i].id_path == resolved.id_path) {
      storage = FieldStorage::kIndexed;
      slot = static_cast<int>(i);
    }
  }
  int read_slot = -1;
  {
    absl::MutexLock slots(&g_slots_mu);
    read_slot = takeSlot(g_field_used);
  }
  if (read_slot < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("more than ", kMaxFields, " fields described at once"));
  }
  QueryField& q = fields_.emplace_back(QueryField{std::move(resolved), FieldInfo{}, read_slot});
  g_fields[static_cast<size_t>(read_slot)].store(&q.path, std::memory_order_release);
  q.info = FieldInfo{q.path.path, q.path.id_path, storage, slot,
                     kReadTrampolines[static_cast<size_t>(read_slot)]};
  return &q.info;
}

const FieldPath* DynamicTable::pathOf(const FieldInfo& field) {
  absl::MutexLock lock(&mu_);
  for (const QueryField& f : fields_) {
    if (&f.info == &field) return &f.path;
  }
  return nullptr;
}

ColumnType DynamicTable::typeOf(const FieldInfo& field) {
  const FieldPath* path = pathOf(field);
  return path == nullptr ? ColumnType::kInteger : path->type;
}

absl::StatusOr<Value> DynamicTable::literal(const FieldInfo& field, std::string_view name) {
  const FieldPath* path = pathOf(field);
  if (path == nullptr) return absl::InternalError("literal() on a field of another table");
  const reflection::Field& leaf = *path->steps.back().field;
  reflection::BaseType bt = leaf.type()->base_type();
  if (bt == reflection::Bool && (name == "true" || name == "false")) {
    return Value::integer(name == "true" ? 1 : 0);
  }
  if (leaf.type()->index() >= 0 && bt != reflection::Union) {
    const reflection::Enum* e =
        schema_->enums()->Get(static_cast<flatbuffers::uoffset_t>(leaf.type()->index()));
    for (const reflection::EnumVal* v : *e->values()) {
      if (v->name()->str() == name) return Value::integer(v->value());
    }
    return absl::InvalidArgumentError(absl::StrCat("field ", path->path, " of type ",
                                                   e->name()->str(), " has no value ", av(name)));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("field ", path->path, " is not an enum or bool: ", av(name), " is no value"));
}

bool DynamicTable::verify(std::span<const uint8_t> bytes) const {
  return flatbuffers::Verify(*schema_, *object_, bytes.data(), bytes.size());
}

void DynamicTable::keyOf(const uint8_t* buffer, std::vector<Value>* out) const {
  for (const FieldPath& p : key_paths_) out->push_back(p.read(buffer));
}

void DynamicTable::indexValuesOf(const uint8_t* buffer, std::vector<Value>* out) const {
  for (const FieldPath& p : index_paths_) out->push_back(p.read(buffer));
}

absl::StatusOr<std::string> DynamicTable::toJson(const uint8_t* bytes) {
  std::string text;
  if (!flatbuffers::GenerateTextFromTable(*parser_, flatbuffers::GetAnyRoot(bytes), name_, &text)) {
    return absl::InvalidArgumentError(
        absl::StrCat("table ", name_, ": an object cannot be written as JSON"));
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

absl::StatusOr<ObjectBuffer> DynamicTable::fromJson(std::string_view json) {
  std::string text(json);
  parser_->builder_.Clear();
  parser_->error_.clear();
  if (!parser_->ParseJson(text.c_str())) {
    std::string error = parser_->error_;
    while (!error.empty() && error.back() == '\n') error.pop_back();
    return absl::InvalidArgumentError(absl::StrCat("not a valid ", name_, ": ", error));
  }
  ObjectBuffer bytes = ObjectBuffer::copyOf(
      std::span<const uint8_t>(parser_->builder_.GetBufferPointer(), parser_->builder_.GetSize()));
  if (!verify(bytes.span())) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a valid ", name_, ": the encoded object fails verification"));
  }
  return bytes;
}

absl::StatusOr<std::vector<std::string>> listTables(Connection& c) {
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement s, c.prepare("SELECT name FROM flatstore_tables ORDER BY name", c.path()));
  std::vector<std::string> out;
  while (true) {
    FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(c.path()));
    if (!row) break;
    out.emplace_back(s.columnText(0));
  }
  return out;
}

absl::StatusOr<std::string> resolveTableName(const std::vector<std::string>& tables,
                                             std::string_view name) {
  std::vector<std::string> matches;
  for (const std::string& t : tables) {
    if (t == name) return t;
    if (t.size() > name.size() && absl::EndsWith(t, av(name)) &&
        t[t.size() - name.size() - 1] == '.') {
      matches.push_back(t);
    }
  }
  if (matches.size() == 1) return matches.front();
  if (matches.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no table named ", av(name),
                     " (tables: ", tables.empty() ? "none" : absl::StrJoin(tables, ", "), ")"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("table name ", av(name), " is ambiguous: ", absl::StrJoin(matches, ", ")));
}

}  // namespace flatstore::internal
