// flatstore inspect and flatstore schema.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "flatstore/status.h"
#include "runtime/change_log.h"
#include "runtime/dynamic_table.h"
#include "tools/cli.h"

namespace flatstore::cli {

namespace {

using internal::Connection;
using internal::DynamicTable;
using internal::Statement;

int64_t fileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

absl::StatusOr<int64_t> scalar(Connection& c, const std::string& sql) {
  FLATSTORE_ASSIGN_OR_RETURN(Statement s, c.prepare(sql, c.path()));
  FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(c.path()));
  return row ? s.columnInt(0) : 0;
}

struct IndexInfo {
  std::string path;
  std::string id_path;
  bool unique;
  std::optional<int64_t> backfill_next;
};

struct TableInfo {
  std::string name;
  int64_t objects = 0;
  int64_t bytes = 0;
  int64_t max_rowid = 0;
  uint64_t schema_hash = 0;
  std::vector<std::string> key;
  std::vector<IndexInfo> indexes;
};

absl::StatusOr<TableInfo> describe(Connection& c, const std::string& name) {
  FLATSTORE_ASSIGN_OR_RETURN(auto t, DynamicTable::load(c, name));
  TableInfo info;
  info.name = name;
  info.schema_hash = t->description().schema_hash;
  FLATSTORE_ASSIGN_OR_RETURN(Statement s,
                             c.prepare(absl::StrCat("SELECT count(*), coalesce(sum(length(p)), 0), "
                                                    "coalesce(max(rowid), 0) FROM ",
                                                    internal::quoteIdentifier(name)),
                                       name));
  FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(name));
  if (row) {
    info.objects = s.columnInt(0);
    info.bytes = s.columnInt(1);
    info.max_rowid = s.columnInt(2);
  }
  for (const KeyColumn& k : t->description().key_columns) info.key.emplace_back(k.field_path);
  for (size_t i = 0; i < t->description().indexes.size(); ++i) {
    const IndexDescription& d = t->description().indexes[i];
    info.indexes.push_back(IndexInfo{std::string(d.field_path), std::string(d.id_path), d.unique,
                                     t->backfillNext()[i]});
  }
  return info;
}

std::string backfillText(const IndexInfo& i, const TableInfo& t) {
  if (!i.backfill_next.has_value()) return "complete";
  int64_t pct = t.max_rowid > 0 ? std::min<int64_t>(99, *i.backfill_next * 100 / t.max_rowid) : 0;
  return absl::StrFormat("back-filling, at rowid %d of %d (%d%%)", *i.backfill_next, t.max_rowid,
                         pct);
}

}  // namespace

int runInspect(const Args& args) {
  if (args.positional.size() != 1) return usage("inspect", "expects FILE");
  const std::string& file = args.positional[0];
  absl::StatusOr<std::unique_ptr<Connection>> opened = openReadOnly(file);
  if (!opened.ok()) return fail(file, opened.status());
  Connection& c = **opened;
  absl::Status status = c.exec("BEGIN", file);
  if (!status.ok()) return fail(file, status);
  int64_t format = 0, page_size = 0, page_count = 0;
  std::string latest;
  std::vector<TableInfo> tables;
  status = [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(format,
                               scalar(c, "SELECT value FROM flatstore_meta WHERE key = 'format'"));
    FLATSTORE_ASSIGN_OR_RETURN(page_size, scalar(c, "PRAGMA page_size"));
    FLATSTORE_ASSIGN_OR_RETURN(page_count, scalar(c, "PRAGMA page_count"));
    FLATSTORE_ASSIGN_OR_RETURN(internal::LogHead head, internal::readLogHead(c, file));
    latest = head.last_change.toString();
    FLATSTORE_ASSIGN_OR_RETURN(std::vector<std::string> names, internal::listTables(c));
    for (const std::string& n : names) {
      FLATSTORE_ASSIGN_OR_RETURN(TableInfo t, describe(c, n));
      tables.push_back(std::move(t));
    }
    return absl::OkStatus();
  }();
  c.rollbackQuietly();
  if (!status.ok()) return fail(file, status);
  int64_t file_bytes = fileSize(file);
  int64_t wal_bytes = fileSize(file + "-wal");

  if (args.has("--json")) {
    std::string out = absl::StrCat(
        "{\"file\":", jsonString(file), ",\"format\":", format, ",\"page_size\":", page_size,
        ",\"pages\":", page_count, ",\"file_bytes\":", file_bytes, ",\"wal_bytes\":", wal_bytes,
        ",\"latest_versionstamp\":", jsonString(latest), ",\"tables\":[");
    for (size_t i = 0; i < tables.size(); ++i) {
      const TableInfo& t = tables[i];
      std::vector<std::string> key;
      for (const std::string& k : t.key) key.push_back(jsonString(k));
      absl::StrAppend(&out, i == 0 ? "" : ",", "{\"name\":", jsonString(t.name),
                      ",\"objects\":", t.objects, ",\"bytes\":", t.bytes,
                      ",\"schema_hash\":", jsonString(absl::StrFormat("%016x", t.schema_hash)),
                      ",\"key\":[", absl::StrJoin(key, ","), "],\"indexes\":[");
      for (size_t j = 0; j < t.indexes.size(); ++j) {
        const IndexInfo& x = t.indexes[j];
        absl::StrAppend(&out, j == 0 ? "" : ",", "{\"path\":", jsonString(x.path),
                        ",\"id_path\":", jsonString(x.id_path),
                        ",\"unique\":", x.unique ? "true" : "false",
                        ",\"complete\":", x.backfill_next.has_value() ? "false" : "true",
                        ",\"backfill_next_rowid\":",
                        x.backfill_next.has_value() ? absl::StrCat(*x.backfill_next) : "null", "}");
      }
      absl::StrAppend(&out, "]}");
    }
    absl::StrAppend(&out, "]}\n");
    std::fputs(out.c_str(), stdout);
    return kExitOk;
  }
  std::printf("file                 %s\n", file.c_str());
  std::printf("format               %lld\n", static_cast<long long>(format));
  std::printf("page size            %lld\n", static_cast<long long>(page_size));
  std::printf("file size            %lld bytes (%lld pages)\n", static_cast<long long>(file_bytes),
              static_cast<long long>(page_count));
  std::printf("WAL size             %lld bytes\n", static_cast<long long>(wal_bytes));
  std::printf("latest versionstamp  %s\n", latest.c_str());
  std::printf("tables               %zu\n", tables.size());
  for (const TableInfo& t : tables) {
    std::printf("\ntable %s\n", t.name.c_str());
    std::printf("  objects      %lld\n", static_cast<long long>(t.objects));
    std::printf("  bytes        %lld\n", static_cast<long long>(t.bytes));
    std::printf("  schema hash  %016llx\n", static_cast<unsigned long long>(t.schema_hash));
    std::printf("  primary key  %s\n",
                t.key.empty() ? "automatic id" : absl::StrJoin(t.key, ", ").c_str());
    for (const IndexInfo& x : t.indexes) {
      std::printf("  index        %s%s: %s\n", x.path.c_str(), x.unique ? " (unique)" : "",
                  backfillText(x, t).c_str());
    }
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------------------
// schema: .fbs text from the stored binary schema.

namespace {

// Writes the declarations a table's schema uses, grouped by namespace as flatc reads
// them back.
class FbsWriter {
 public:
  explicit FbsWriter(const reflection::Schema& schema) : schema_(schema) {}

  std::string write(const reflection::Object& root) {
    collect(root);
    std::string body;
    std::string current_ns = "\x01";
    auto declare = [&](const std::string& full, const std::string& text) {
      std::string ns = namespaceOf(full);
      if (ns != current_ns) {
        absl::StrAppend(&body, "\nnamespace ", ns.empty() ? "" : ns, ns.empty() ? "" : "", ";\n");
        current_ns = ns;
      }
      absl::StrAppend(&body, "\n", text);
    };
    // flatc needs an enum or union declared before a field uses it, and a union's
    // members before the union; tables may refer to tables declared later.
    std::set<std::string> done;
    std::function<void(const reflection::Type&)> before;
    std::function<void(const reflection::Object&)> emitObject = [&](const reflection::Object& o) {
      if (!done.insert(o.name()->str()).second) return;
      for (const auto* f : *o.fields()) before(*f->type());
      declare(o.name()->str(), genObject(o));
    };
    before = [&](const reflection::Type& t) {
      if (t.index() < 0) return;
      if (t.base_type() == reflection::Obj ||
          (t.base_type() == reflection::Vector && t.element() == reflection::Obj)) {
        const auto* o = schema_.objects()->Get(static_cast<flatbuffers::uoffset_t>(t.index()));
        if (o->is_struct()) emitObject(*o);
        return;
      }
      const auto* e = schema_.enums()->Get(static_cast<flatbuffers::uoffset_t>(t.index()));
      if (done.count(e->name()->str()) != 0) return;
      for (const auto* v : *e->values()) {
        if (v->union_type() != nullptr && v->union_type()->index() >= 0) {
          emitObject(*schema_.objects()->Get(
              static_cast<flatbuffers::uoffset_t>(v->union_type()->index())));
        }
      }
      if (done.insert(e->name()->str()).second) declare(e->name()->str(), genEnum(*e));
    };
    for (const auto* o : *schema_.objects()) {
      if (objects_.count(o->name()->str()) != 0) emitObject(*o);
    }
    std::string out;
    for (const std::string& a : attributes_) absl::StrAppend(&out, "attribute \"", a, "\";\n");
    absl::StrAppend(&out, body);
    std::string ns = namespaceOf(root.name()->str());
    if (ns != current_ns) absl::StrAppend(&out, "\nnamespace ", ns, ";\n");
    absl::StrAppend(&out, "\nroot_type ", shortName(root.name()->str()), ";\n");
    return out;
  }

 private:
  static std::string namespaceOf(const std::string& full) {
    size_t dot = full.rfind('.');
    return dot == std::string::npos ? "" : full.substr(0, dot);
  }
  static std::string shortName(const std::string& full) {
    size_t dot = full.rfind('.');
    return dot == std::string::npos ? full : full.substr(dot + 1);
  }

  // Attributes flatc knows without a declaration; a schema may not declare them again.
  static bool builtIn(const std::string& name) {
    static const std::set<std::string> kBuiltIn = {"bit_flags",
                                                   "cpp_ptr_type",
                                                   "cpp_ptr_type_get",
                                                   "cpp_str_flex_ctor",
                                                   "cpp_str_type",
                                                   "cpp_type",
                                                   "csharp_partial",
                                                   "deprecated",
                                                   "flexbuffer",
                                                   "force_align",
                                                   "hash",
                                                   "id",
                                                   "idempotent",
                                                   "key",
                                                   "native_custom_alloc",
                                                   "native_default",
                                                   "native_inline",
                                                   "native_type",
                                                   "nested_flatbuffer",
                                                   "original_order",
                                                   "private",
                                                   "required",
                                                   "shared",
                                                   "streaming"};
    return kBuiltIn.contains(name);
  }

  template <class T>
  void collectAttributes(const T& x) {
    if (x.attributes() == nullptr) return;
    for (const auto* kv : *x.attributes()) {
      if (!builtIn(kv->key()->str())) attributes_.insert(kv->key()->str());
    }
  }

  void collectType(const reflection::Type& t) {
    if (t.index() < 0) return;
    bool is_object = t.base_type() == reflection::Obj ||
                     (t.base_type() == reflection::Vector && t.element() == reflection::Obj);
    if (is_object) {
      collect(*schema_.objects()->Get(static_cast<flatbuffers::uoffset_t>(t.index())));
      return;
    }
    const reflection::Enum* e =
        schema_.enums()->Get(static_cast<flatbuffers::uoffset_t>(t.index()));
    if (!enums_.insert(e->name()->str()).second) return;
    collectAttributes(*e);
    for (const auto* v : *e->values()) {
      if (v->union_type() != nullptr && v->union_type()->index() >= 0) {
        collect(
            *schema_.objects()->Get(static_cast<flatbuffers::uoffset_t>(v->union_type()->index())));
      }
    }
  }

  void collect(const reflection::Object& o) {
    if (!objects_.insert(o.name()->str()).second) return;
    collectAttributes(o);
    for (const auto* f : *o.fields()) {
      collectAttributes(*f);
      collectType(*f->type());
    }
  }

  std::string typeName(const reflection::Type& t, reflection::BaseType base) {
    static constexpr const char* kNames[] = {"",      "",       "bool",   "byte",  "ubyte",
                                             "short", "ushort", "int",    "uint",  "long",
                                             "ulong", "float",  "double", "string"};
    if (base == reflection::Obj) {
      return schema_.objects()->Get(static_cast<flatbuffers::uoffset_t>(t.index()))->name()->str();
    }
    if (t.index() >= 0 && (base == reflection::Union || base <= reflection::ULong)) {
      return schema_.enums()->Get(static_cast<flatbuffers::uoffset_t>(t.index()))->name()->str();
    }
    if (base >= 0 && base <= reflection::String) return kNames[base];
    return "?";
  }

  template <class T>
  std::string attributeText(const T& x, std::vector<std::string> extra) {
    if (x.attributes() != nullptr) {
      for (const auto* kv : *x.attributes()) {
        // Printed from the field's flags already (or, for `id`, by the field order).
        std::string key = kv->key()->str();
        if (key == "deprecated" || key == "required" || key == "key" || key == "id") continue;
        // flatc stores an attribute written without a value as "0".
        std::string v = kv->value() == nullptr ? "" : kv->value()->str();
        extra.push_back(v.empty() || v == "0" ? kv->key()->str()
                                              : absl::StrCat(kv->key()->str(), ": \"", v, "\""));
      }
    }
    return extra.empty() ? "" : absl::StrCat(" (", absl::StrJoin(extra, ", "), ")");
  }

  std::string defaultText(const reflection::Field& f) {
    const reflection::Type& t = *f.type();
    reflection::BaseType b = t.base_type();
    bool scalar = b >= reflection::Bool && b <= reflection::Double;
    if (!scalar) return "";
    if (f.optional()) return " = null";
    if (b == reflection::Float || b == reflection::Double) {
      return f.default_real() == 0 ? "" : absl::StrCat(" = ", f.default_real());
    }
    if (b < reflection::Bool || b > reflection::ULong || f.default_integer() == 0) return "";
    if (b == reflection::Bool) return " = true";
    if (t.index() >= 0) {
      const reflection::Enum* e =
          schema_.enums()->Get(static_cast<flatbuffers::uoffset_t>(t.index()));
      const reflection::EnumVal* v = e->values()->LookupByKey(f.default_integer());
      if (v != nullptr) return absl::StrCat(" = ", v->name()->str());
    }
    return absl::StrCat(" = ", f.default_integer());
  }

  std::string genEnum(const reflection::Enum& e) {
    std::vector<std::string> values;
    bool is_union = e.underlying_type()->base_type() == reflection::UType;
    for (const auto* v : *e.values()) {
      if (is_union) {
        if (v->value() == 0) continue;
        values.push_back(v->name()->str());
      } else {
        values.push_back(absl::StrCat(v->name()->str(), " = ", v->value()));
      }
    }
    std::string name = shortName(e.name()->str());
    if (is_union) {
      return absl::StrCat("union ", name, attributeText(e, {}), " { ", absl::StrJoin(values, ", "),
                          " }\n");
    }
    static constexpr const char* kIntegers[] = {"",       "",    "bool", "byte", "ubyte", "short",
                                                "ushort", "int", "uint", "long", "ulong"};
    reflection::BaseType u = e.underlying_type()->base_type();
    return absl::StrCat("enum ", name, " : ", u <= reflection::ULong ? kIntegers[u] : "int",
                        attributeText(e, {}), " { ", absl::StrJoin(values, ", "), " }\n");
  }

  std::string genObject(const reflection::Object& o) {
    std::vector<const reflection::Field*> fields(o.fields()->begin(), o.fields()->end());
    std::sort(fields.begin(), fields.end(),
              [](const auto* a, const auto* b) { return a->id() < b->id(); });
    std::string out = absl::StrCat(o.is_struct() ? "struct " : "table ", shortName(o.name()->str()),
                                   attributeText(o, {}), " {\n");
    for (const reflection::Field* f : fields) {
      const reflection::Type& t = *f->type();
      if (t.base_type() == reflection::UType ||
          (t.base_type() == reflection::Vector && t.element() == reflection::UType)) {
        continue;  // the hidden _type field of a union
      }
      std::string type = t.base_type() == reflection::Vector
                             ? absl::StrCat("[", typeName(t, t.element()), "]")
                             : typeName(t, t.base_type());
      std::vector<std::string> flags;
      if (f->deprecated()) flags.push_back("deprecated");
      if (f->required()) flags.push_back("required");
      if (f->key()) flags.push_back("key");
      absl::StrAppend(&out, "  ", f->name()->str(), ": ", type, defaultText(*f),
                      attributeText(*f, flags), ";\n");
    }
    absl::StrAppend(&out, "}\n");
    return out;
  }

  const reflection::Schema& schema_;
  std::set<std::string> objects_;
  std::set<std::string> enums_;
  std::set<std::string> attributes_;
};

}  // namespace

int runSchema(const Args& args) {
  if (args.positional.empty() || args.positional.size() > 2) {
    return usage("schema", "expects FILE [TABLE]");
  }
  const std::string& file = args.positional[0];
  absl::StatusOr<std::unique_ptr<Connection>> opened = openReadOnly(file);
  if (!opened.ok()) return fail(file, opened.status());
  Connection& c = **opened;
  std::string out;
  absl::Status status = [&]() -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(c.exec("BEGIN", file));
    FLATSTORE_ASSIGN_OR_RETURN(std::vector<std::string> names, internal::listTables(c));
    if (args.positional.size() == 2) {
      FLATSTORE_ASSIGN_OR_RETURN(std::string name,
                                 internal::resolveTableName(names, args.positional[1]));
      names = {name};
    }
    for (size_t i = 0; i < names.size(); ++i) {
      FLATSTORE_ASSIGN_OR_RETURN(auto t, DynamicTable::load(c, names[i]));
      if (names.size() > 1) absl::StrAppend(&out, i == 0 ? "" : "\n", "// table ", names[i], "\n");
      absl::StrAppend(&out, FbsWriter(t->schema()).write(t->object()));
    }
    return absl::OkStatus();
  }();
  c.rollbackQuietly();
  if (!status.ok()) return fail(file, status);
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

}  // namespace flatstore::cli
