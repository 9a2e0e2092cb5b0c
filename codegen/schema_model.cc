#include "codegen/schema_model.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "codegen/names.h"
#include "codegen/source_locator.h"

namespace flatstore::codegen {
namespace {

using flatbuffers::BaseType;
using flatbuffers::FieldDef;
using flatbuffers::StructDef;

// Key paths have at most this many steps; a recursive schema would otherwise produce
// unbounded key paths.
constexpr size_t kMaxPathDepth = 8;
// A table appears at most this often on one key path, the entity's own table included:
// Monster.enemy.hp (a Monster inside a Monster) is a key path, Monster.enemy.enemy.hp is
// not. docs/guide.md states this bound.
constexpr int kMaxTableRepeats = 2;

std::string joinNamespace(const flatbuffers::Namespace* ns, const char* sep) {
  std::string out;
  if (ns == nullptr) return out;
  for (const auto& c : ns->components) {
    if (!out.empty()) out += sep;
    out += c;
  }
  return out;
}

bool hasAttribute(const flatbuffers::Definition& def, const char* name) {
  return def.attributes.Lookup(name) != nullptr;
}

// What kind of type a field has, in words for messages.
std::string describeType(const flatbuffers::Type& type) {
  switch (type.base_type) {
    case flatbuffers::BASE_TYPE_VECTOR:
      return "a vector";
    case flatbuffers::BASE_TYPE_ARRAY:
      return "an array";
    case flatbuffers::BASE_TYPE_UNION:
      return "a union";
    case flatbuffers::BASE_TYPE_STRUCT:
      return type.struct_def->fixed ? "a struct" : "a table";
    case flatbuffers::BASE_TYPE_FLOAT:
    case flatbuffers::BASE_TYPE_DOUBLE:
      return "floating-point";
    default:
      return "scalar";
  }
}

bool isLeafType(const flatbuffers::Type& type) {
  return flatbuffers::IsScalar(type.base_type) || type.base_type == flatbuffers::BASE_TYPE_STRING;
}

// Reads source files on demand to locate declarations for diagnostics.
class Locations {
 public:
  Diagnostic at(const flatbuffers::Definition& owner, const FieldDef* field, const char* attribute,
                std::string message) {
    Diagnostic d;
    d.file = owner.file;
    d.message = std::move(message);
    const SourceLocator* loc = locator(owner.file);
    if (loc == nullptr) return d;
    std::string ns = joinNamespace(owner.defined_namespace, ".");
    std::optional<SourcePosition> pos;
    if (field != nullptr && attribute != nullptr) {
      pos = loc->fieldAttribute(ns, owner.name, field->name, attribute);
    } else if (field != nullptr) {
      pos = loc->field(ns, owner.name, field->name);
    } else {
      pos = loc->declaration(ns, owner.name);
    }
    if (pos) {
      d.line = pos->line;
      d.column = pos->column;
    }
    return d;
  }

  Diagnostic atEnd(const std::string& file, std::string message) {
    Diagnostic d;
    d.file = file;
    d.message = std::move(message);
    if (const SourceLocator* loc = locator(file)) {
      d.line = loc->end().line;
      d.column = loc->end().column;
    }
    return d;
  }

 private:
  const SourceLocator* locator(const std::string& file) {
    auto it = cache_.find(file);
    if (it != cache_.end()) return it->second.get();
    std::ifstream in(file, std::ios::binary);
    std::unique_ptr<SourceLocator> loc;
    if (in) {
      std::stringstream ss;
      ss << in.rdbuf();
      loc = std::make_unique<SourceLocator>(ss.str());
    }
    return (cache_[file] = std::move(loc)).get();
  }

  std::map<std::string, std::unique_ptr<SourceLocator>> cache_;
};

class ModelBuilder {
 public:
  ModelBuilder(const flatbuffers::Parser& parser, const std::string& main_file, SchemaModel* model,
               std::vector<Diagnostic>* errors)
      : parser_(parser), main_file_(main_file), model_(model), errors_(errors) {}

  bool build() {
    model_->main_file = main_file_;
    checkAttributes();
    checkKeysOnEntities();
    std::vector<const StructDef*> entity_tables = findEntities();
    if (entity_tables.empty()) {
      // Not an error: a schema of shared types (included by others, or used without a
      // root) is valid FlatBuffers, and its header only includes flatc's. The warning
      // names the fix for a schema that meant to store something.
      model_->warnings.push_back(locations_.atEnd(
          main_file_,
          "no root_type and no table marked `entity`: flatstore stores nothing from this "
          "schema and its header only includes flatc's; declare `root_type T;` (or mark "
          "tables with the `entity` attribute) to say which tables flatstore stores"));
    }
    for (const StructDef* table : entity_tables) buildEntity(*table);
    // Without entities the schema's indexes are for the schemas that include it.
    if (!entity_tables.empty()) warnUnreachableIndexes();
    return errors_->empty();
  }

 private:
  bool inMainFile(const flatbuffers::Definition& def) const {
    return def.file == main_file_ ||
           (def.declaration_file != nullptr && *def.declaration_file == main_file_);
  }

  std::vector<const StructDef*> findEntities() const {
    std::vector<const StructDef*> out;
    for (const StructDef* sd : parser_.structs_.vec) {
      if (sd->fixed || !inMainFile(*sd)) continue;
      if (sd == parser_.root_struct_def_ || hasAttribute(*sd, "entity")) out.push_back(sd);
    }
    if (out.empty() && parser_.root_struct_def_ != nullptr && !parser_.root_struct_def_->fixed) {
      out.push_back(parser_.root_struct_def_);
    }
    return out;
  }

  void error(Diagnostic d) {
    // One problem may be found from several entities; report it once.
    for (const Diagnostic& e : *errors_) {
      if (e.file == d.file && e.line == d.line && e.column == d.column && e.message == d.message) {
        return;
      }
    }
    errors_->push_back(std::move(d));
  }

  // Checks flatstore's attributes on every field of the main file, wherever they are.
  void checkAttributes() {
    for (const StructDef* sd : parser_.structs_.vec) {
      if (!inMainFile(*sd)) continue;
      if (sd->fixed && hasAttribute(*sd, "entity")) {
        error(locations_.at(*sd, nullptr, nullptr,
                            "struct '" + sd->name +
                                "': only a table can be an entity; make it a table, or store "
                                "it as a field of an entity table"));
      }
      if (hasAttribute(*sd, "primary") || hasAttribute(*sd, "indexed") ||
          hasAttribute(*sd, "unique")) {
        error(locations_.at(*sd, nullptr, nullptr,
                            "'" + sd->name +
                                "': primary, indexed and unique go on fields, not on a " +
                                (sd->fixed ? "struct" : "table")));
      }
      for (const FieldDef* f : sd->fields.vec) {
        std::string where = "field '" + sd->name + "." + f->name + "'";
        const auto& type = f->value.type;
        bool primary = hasAttribute(*f, "primary");
        if (primary) {
          if (!isLeafType(type)) {
            error(locations_.at(*sd, f, "primary",
                                where + ": a primary key must be a scalar, enum or string, not " +
                                    describeType(type)));
          } else if (type.base_type == flatbuffers::BASE_TYPE_FLOAT ||
                     type.base_type == flatbuffers::BASE_TYPE_DOUBLE) {
            error(locations_.at(*sd, f, "primary",
                                where + ": a primary key cannot be floating-point (inexact "
                                        "equality); use an integer or a string"));
          } else if (type.base_type == flatbuffers::BASE_TYPE_UTYPE) {
            error(locations_.at(*sd, f, "primary", where + ": a union cannot be a primary key"));
          } else if (f->IsScalarOptional()) {
            error(locations_.at(*sd, f, "primary",
                                where + ": a primary key cannot be optional (= null)"));
          } else if (f->deprecated) {
            error(locations_.at(*sd, f, "primary",
                                where + ": a deprecated field cannot be a primary key"));
          } else if (sd->fixed) {
            error(locations_.at(*sd, f, "primary",
                                where + ": primary keys are fields of the entity's table, "
                                        "not of a struct"));
          }
        }
        for (const char* attr : {"indexed", "unique"}) {
          if (!hasAttribute(*f, attr)) continue;
          if (!isLeafType(type) || type.base_type == flatbuffers::BASE_TYPE_UTYPE) {
            error(locations_.at(*sd, f, attr,
                                where + ": only scalars, enums and strings can be " + attr +
                                    ", not " + describeType(type) +
                                    "; index the fields inside it instead"));
          } else if (f->deprecated) {
            error(locations_.at(*sd, f, attr,
                                where + ": a deprecated field cannot be " + std::string(attr)));
          } else if (std::string(attr) == "unique" && flatbuffers::IsScalar(type.base_type) &&
                     !f->IsScalarOptional()) {
            // FlatBuffers cannot tell an unset scalar from one set to its default, so the
            // default is a value like any other (docs/guide.md, "Constructs with particular
            // rules").
            Diagnostic d =
                locations_.at(*sd, f, attr,
                              where + " is unique and has the default " + f->value.constant +
                                  ": every object that leaves it unset has that "
                                  "value, so only one can; declare it `= null` to "
                                  "let unset mean no value");
            model_->warnings.push_back(std::move(d));
          }
        }
      }
    }
  }

  // Primary keys are fields of entity tables only; checked also when the schema has no
  // entity, where a `primary` shows that one was meant.
  void checkKeysOnEntities() {
    for (const StructDef* sd : parser_.structs_.vec) {
      if (sd->fixed || !inMainFile(*sd) || isEntityTable(*sd)) continue;
      for (const FieldDef* f : sd->fields.vec) {
        if (hasAttribute(*f, "primary")) {
          error(locations_.at(*sd, f, "primary",
                              "field '" + sd->name + "." + f->name +
                                  "': primary keys belong to entity tables, and '" + sd->name +
                                  "' is not one (it is not the root_type)"));
        }
      }
    }
  }

  void buildEntity(const StructDef& table) {
    Entity entity;
    entity.table = &table;
    entity.full_name = schemaQualifiedName(table);
    entity.cpp_name = cppQualifiedName(table);
    if (table.defined_namespace != nullptr) {
      entity.cpp_namespace = table.defined_namespace->components;
    }
    checkEntityNames(table);
    std::vector<PathStep> prefix;
    std::map<const StructDef*, int> on_path = {{&table, 1}};
    collectPaths(entity, table, &prefix, &on_path, "", "");

    for (size_t i = 0; i < entity.paths.size(); ++i) {
      QueryPath& p = entity.paths[i];
      if (p.primary) {
        p.key_position = static_cast<int>(entity.key_paths.size());
        entity.key_paths.push_back(static_cast<int>(i));
      }
      if (p.indexed && !p.primary) {
        p.index_position = static_cast<int>(entity.index_paths.size());
        entity.index_paths.push_back(static_cast<int>(i));
        reached_indexes_.insert(p.steps.back().field);
      }
    }
    entity.schema_hash = layoutHash(entity);
    model_->entities.push_back(std::move(entity));
  }

  bool isEntityTable(const StructDef& sd) const {
    return &sd == parser_.root_struct_def_ || hasAttribute(sd, "entity");
  }

  // Whether a key path at `prefix` may enter `child`: structs always (they cannot
  // recurse), tables up to kMaxTableRepeats times, within kMaxPathDepth steps.
  static bool mayEnter(const StructDef& child, const std::vector<PathStep>& prefix,
                       const std::map<const StructDef*, int>& on_path) {
    if (child.fixed) return true;
    auto it = on_path.find(&child);
    return prefix.size() < kMaxPathDepth && (it == on_path.end() || it->second < kMaxTableRepeats);
  }

  void collectPaths(Entity& entity, const StructDef& sd, std::vector<PathStep>* prefix,
                    std::map<const StructDef*, int>* on_path, const std::string& names,
                    const std::string& ids) {
    checkMemberNames(sd);
    for (const FieldDef* f : sd.fields.vec) {
      const auto& type = f->value.type;
      if (f->deprecated || isHiddenTypeField(*f)) continue;
      int id = fieldId(sd, *f);
      std::string name = names.empty() ? f->name : names + "." + f->name;
      std::string id_text = ids.empty() ? std::to_string(id) : ids + "." + std::to_string(id);
      PathStep step{&sd, f, nullptr, id};
      if (isLeafType(type)) {
        QueryPath path;
        path.steps = *prefix;
        path.steps.push_back(step);
        path.name_path = name;
        path.id_path = id_text;
        fillLeaf(*f, &path);
        path.primary = prefix->empty() && hasAttribute(*f, "primary");
        path.unique = hasAttribute(*f, "unique");
        path.indexed = path.unique || hasAttribute(*f, "indexed");
        entity.paths.push_back(std::move(path));
      } else if (type.base_type == flatbuffers::BASE_TYPE_STRUCT) {
        const StructDef& child = *type.struct_def;
        if (!mayEnter(child, *prefix, *on_path)) continue;
        prefix->push_back(step);
        ++(*on_path)[&child];
        collectPaths(entity, child, prefix, on_path, name, id_text);
        --(*on_path)[&child];
        prefix->pop_back();
      } else if (type.base_type == flatbuffers::BASE_TYPE_UNION) {
        for (const flatbuffers::EnumVal* ev : type.enum_def->Vals()) {
          const auto& ut = ev->union_type;
          // Members are tables or (since FlatBuffers 2) structs; strings are skipped.
          if (ut.base_type != flatbuffers::BASE_TYPE_STRUCT) continue;
          const StructDef& child = *ut.struct_def;
          if (!mayEnter(child, *prefix, *on_path)) continue;
          PathStep member = step;
          member.union_member = ev;
          prefix->push_back(member);
          ++(*on_path)[&child];
          collectPaths(entity, child, prefix, on_path, name + "." + ev->name,
                       id_text + "u" + std::to_string(ev->GetAsInt64()));
          --(*on_path)[&child];
          prefix->pop_back();
        }
      }
    }
  }

  // Reports a field whose derived name `name` was already derived from another field
  // (or union member) of the same class, as recorded in `taken`.
  void claimName(std::map<std::string, std::string>* taken, const std::string& name,
                 const StructDef& owner, const FieldDef& f, const std::string& what) {
    auto [it, inserted] = taken->emplace(name, what);
    // One report per field, though its accessor and setter may both collide.
    if (inserted || !collided_.insert(&f).second) return;
    error(locations_.at(owner, &f, nullptr,
                        "field '" + owner.name + "." + f.name + "': the generated name '" + name +
                            "' (" + what + ") is also derived from " + it->second +
                            "; rename one of them"));
  }

  // The names the entity class, change request and field descriptors of `table` derive
  // from its fields must all differ, and the classes must not take a name the schema
  // already uses in the table's namespace.
  void checkEntityNames(const StructDef& table) {
    // The field descriptors of the table's own fields are named like its accessors,
    // which are checked here.
    checked_members_.insert(&table);
    std::map<std::string, std::string> members;
    std::map<std::string, std::string> setters;
    for (const FieldDef* f : table.fields.vec) {
      if (f->deprecated || isHiddenTypeField(*f)) continue;
      const auto& type = f->value.type;
      std::string field = "field '" + f->name + "'";
      std::string stem = camelStem(f->name);
      claimName(&members, memberName(f->name), table, *f, "the accessor of " + field);
      claimName(&setters, "set" + upperCamel(f->name), table, *f, "the setter of " + field);
      if (type.base_type == flatbuffers::BASE_TYPE_STRING) {
        claimName(&members, "has" + upperCamel(f->name), table, *f, "the has-test of " + field);
      }
      if (type.base_type == flatbuffers::BASE_TYPE_UNION ||
          (type.base_type == flatbuffers::BASE_TYPE_VECTOR &&
           type.element == flatbuffers::BASE_TYPE_UNION)) {
        claimName(&members, stem + "Type", table, *f, "the type accessor of " + field);
      }
      if (type.base_type == flatbuffers::BASE_TYPE_UNION) {
        for (const flatbuffers::EnumVal* ev : type.enum_def->Vals()) {
          if (ev->union_type.base_type != flatbuffers::BASE_TYPE_STRUCT) continue;
          claimName(&members, stem + "As" + upperCamel(ev->name), table, *f,
                    "the accessor of member '" + ev->name + "' of " + field);
        }
      }
    }
    const std::vector<std::string>& ns = table.defined_namespace != nullptr
                                             ? table.defined_namespace->components
                                             : std::vector<std::string>();
    auto sameNamespace = [&](const flatbuffers::Definition& def) {
      return def.defined_namespace != nullptr ? def.defined_namespace->components == ns
                                              : ns.empty();
    };
    for (const char* suffix : {"Entity", "ChangeRequest", "Fields", "_flatstore_detail"}) {
      std::string generated = table.name + suffix;
      std::string clash;
      for (const StructDef* sd : parser_.structs_.vec) {
        if (sd->name == generated && sameNamespace(*sd)) clash = sd->fixed ? "struct" : "table";
      }
      for (const flatbuffers::EnumDef* ed : parser_.enums_.vec) {
        if (ed->name == generated && sameNamespace(*ed)) clash = ed->is_union ? "union" : "enum";
      }
      if (!clash.empty()) {
        error(locations_.at(table, nullptr, nullptr,
                            "table '" + table.name + "': the generated class '" + generated +
                                "' has the name of " + clash + " '" + generated +
                                "' in the same namespace; rename one of them"));
      }
    }
  }

  // Field descriptors of a table or struct on a key path are members named by
  // memberName(), and a union's members are "as" + UpperCamel; each name must be unique.
  void checkMemberNames(const StructDef& sd) {
    if (!checked_members_.insert(&sd).second) return;
    std::map<std::string, std::string> members;
    for (const FieldDef* f : sd.fields.vec) {
      if (f->deprecated || isHiddenTypeField(*f)) continue;
      claimName(&members, memberName(f->name), sd, *f,
                "the field descriptor of field '" + f->name + "'");
      if (f->value.type.base_type != flatbuffers::BASE_TYPE_UNION) continue;
      std::map<std::string, std::string> union_members;
      for (const flatbuffers::EnumVal* ev : f->value.type.enum_def->Vals()) {
        if (ev->union_type.base_type != flatbuffers::BASE_TYPE_STRUCT) continue;
        claimName(&union_members, "as" + upperCamel(ev->name), sd, *f,
                  "the descriptor of union member '" + ev->name + "'");
      }
    }
  }

  void fillLeaf(const FieldDef& f, QueryPath* path) {
    const auto& type = f.value.type;
    path->nullable = f.IsScalarOptional() || type.base_type == flatbuffers::BASE_TYPE_STRING ||
                     path->steps.size() > 1;
    // A field inside a struct is present whenever the struct is, and a struct field of
    // the root may be absent; nested tables and union members may be absent too.
    if (type.base_type == flatbuffers::BASE_TYPE_STRING) {
      path->kind = LeafKind::kText;
      path->cpp_type = "std::string_view";
    } else if (type.base_type == flatbuffers::BASE_TYPE_BOOL) {
      path->kind = LeafKind::kBool;
      path->cpp_type = "bool";
    } else if (type.enum_def != nullptr && !type.enum_def->is_union) {
      path->kind = LeafKind::kEnum;
      path->cpp_type = cppQualifiedName(*type.enum_def);
    } else if (flatbuffers::IsFloat(type.base_type)) {
      path->kind = LeafKind::kReal;
      path->cpp_type = cppScalarType(type.base_type);
    } else {
      path->kind = LeafKind::kInteger;
      path->cpp_type = cppScalarType(type.base_type);
    }
  }

  // FNV-1a over a canonical description of the stored layout.
  static uint64_t layoutHash(const Entity& e) {
    std::string canon = "flatstore-layout-1;table=" + e.full_name + ";key=";
    if (e.key_paths.empty()) canon += "auto";
    for (int k : e.key_paths) {
      const QueryPath& p = e.paths[static_cast<size_t>(k)];
      canon += p.id_path + ":" + std::to_string(static_cast<int>(p.kind)) + ",";
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : canon) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
    return h;
  }

  void warnUnreachableIndexes() {
    for (const StructDef* sd : parser_.structs_.vec) {
      if (!inMainFile(*sd) || isEntityTable(*sd)) continue;
      for (const FieldDef* f : sd->fields.vec) {
        if ((hasAttribute(*f, "indexed") || hasAttribute(*f, "unique")) &&
            isLeafType(f->value.type) && reached_indexes_.count(f) == 0) {
          Diagnostic d = locations_.at(*sd, f, nullptr,
                                       "field '" + sd->name + "." + f->name +
                                           "' is indexed but no entity reaches it without "
                                           "crossing a vector; no index is made for it here");
          model_->warnings.push_back(std::move(d));
        }
      }
    }
  }

  const flatbuffers::Parser& parser_;
  std::string main_file_;
  SchemaModel* model_;
  std::vector<Diagnostic>* errors_;
  Locations locations_;
  std::set<const FieldDef*> reached_indexes_;
  std::set<const StructDef*> checked_members_;
  std::set<const FieldDef*> collided_;
};

}  // namespace

const char* cppScalarType(flatbuffers::BaseType t) {
  switch (t) {
    case flatbuffers::BASE_TYPE_BOOL:
      return "bool";
    case flatbuffers::BASE_TYPE_CHAR:
      return "int8_t";
    case flatbuffers::BASE_TYPE_UCHAR:
      return "uint8_t";
    case flatbuffers::BASE_TYPE_SHORT:
      return "int16_t";
    case flatbuffers::BASE_TYPE_USHORT:
      return "uint16_t";
    case flatbuffers::BASE_TYPE_INT:
      return "int32_t";
    case flatbuffers::BASE_TYPE_UINT:
      return "uint32_t";
    case flatbuffers::BASE_TYPE_LONG:
      return "int64_t";
    case flatbuffers::BASE_TYPE_ULONG:
      return "uint64_t";
    case flatbuffers::BASE_TYPE_FLOAT:
      return "float";
    case flatbuffers::BASE_TYPE_DOUBLE:
      return "double";
    default:
      return nullptr;
  }
}

std::string Diagnostic::format() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": error: " + message;
}

std::string cppQualifiedName(const flatbuffers::Definition& def) {
  std::string ns = joinNamespace(def.defined_namespace, "::");
  return ns.empty() ? def.name : ns + "::" + def.name;
}

std::string schemaQualifiedName(const flatbuffers::Definition& def) {
  std::string ns = joinNamespace(def.defined_namespace, ".");
  return ns.empty() ? def.name : ns + "." + def.name;
}

int fieldId(const StructDef& owner, const FieldDef& field) {
  if (owner.fixed) {
    auto it = std::find(owner.fields.vec.begin(), owner.fields.vec.end(), &field);
    return static_cast<int>(it - owner.fields.vec.begin());
  }
  return (static_cast<int>(field.value.offset) - 4) / 2;
}

bool buildSchemaModel(const flatbuffers::Parser& parser, const std::string& main_file,
                      SchemaModel* model, std::vector<Diagnostic>* errors) {
  return ModelBuilder(parser, main_file, model, errors).build();
}

}  // namespace flatstore::codegen
