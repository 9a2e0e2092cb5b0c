// CppGenerator's field descriptors: the `<Entity>_flatstore_detail` namespace of each
// entity with its key-path readers (`readN`, defined in the source file), their
// FieldInfo constants and the nested `PathN` structs of key paths, and the entity's
// `<Entity>Fields` struct of typed Field descriptors for queries and ordering.
#include <memory>
#include <string>
#include <vector>

#include "codegen/cpp_generator.h"
#include "codegen/cpp_generator_util.h"
#include "codegen/names.h"

namespace flatstore::codegen {
namespace {

// Member name of a path step inside the generated field-descriptor structs.
std::string stepMember(const PathStep& step) { return memberName(step.field->name); }
std::string unionMemberName(const flatbuffers::EnumVal& ev) { return "as" + upperCamel(ev.name); }

// A node in the tree of key paths: interior nodes become structs, leaves Field members.
struct PathNode {
  std::string member;
  int leaf = -1;  // index into Entity::paths
  int struct_id = -1;
  std::vector<std::unique_ptr<PathNode>> children;

  PathNode* child(const std::string& name) {
    for (auto& c : children) {
      if (c->member == name) return c.get();
    }
    children.push_back(std::make_unique<PathNode>());
    children.back()->member = name;
    return children.back().get();
  }
};

std::unique_ptr<PathNode> buildPathTree(const Entity& e) {
  auto root = std::make_unique<PathNode>();
  for (size_t i = 0; i < e.paths.size(); ++i) {
    PathNode* node = root.get();
    for (const PathStep& step : e.paths[i].steps) {
      node = node->child(stepMember(step));
      if (step.union_member != nullptr) node = node->child(unionMemberName(*step.union_member));
    }
    node->leaf = static_cast<int>(i);
  }
  return root;
}

}  // namespace

void CppGenerator::genEntityDetail(const Entity& e) {
  w_.line("");
  w_.line("// Implementation details of {{ENTITY}}; not for direct use.");
  w_.line("namespace {{DETAIL}} {");
  w_.line("");
  w_.select(kSource);
  w_.line("");
  w_.line("namespace {{DETAIL}} {");
  w_.line("");
  for (size_t i = 0; i < e.paths.size(); ++i) genReadFunction(e, i);
  w_.select(kHeader);
  for (size_t i = 0; i < e.paths.size(); ++i) {
    w_.set("I", std::to_string(i));
    w_.line("::flatstore::Value read{{I}}(const uint8_t* buffer);");
  }
  for (size_t i = 0; i < e.paths.size(); ++i) {
    const QueryPath& p = e.paths[i];
    w_.set("I", std::to_string(i));
    w_.set("PATH", cppStringLiteral(p.name_path));
    w_.set("IDS", cppStringLiteral(p.id_path));
    if (p.primary) {
      w_.set("STORAGE", "kPrimaryKey");
      w_.set("SLOT", std::to_string(p.key_position));
    } else if (p.indexed) {
      w_.set("STORAGE", "kIndexed");
      w_.set("SLOT", std::to_string(p.index_position));
    } else {
      w_.set("STORAGE", "kUnindexed");
      w_.set("SLOT", "-1");
    }
    w_.line(
        "inline constexpr ::flatstore::FieldInfo kField{{I}}{{{PATH}}, {{IDS}}, "
        "::flatstore::FieldStorage::{{STORAGE}}, {{SLOT}}, &read{{I}}};");
  }
  genPathStructs(e);
  w_.line("extern const ::flatstore::TableDescription kDescription;");
  w_.line("void keyOf(const uint8_t* buffer, std::vector<::flatstore::Value>* out);");
  w_.line("");
  w_.line("}  // namespace {{DETAIL}}");
  w_.select(kSource);
  genDescription(e);
  w_.line("");
  w_.line("}  // namespace {{DETAIL}}");
  w_.select(kHeader);
}

void CppGenerator::genReadFunction(const Entity& e, size_t index) {
  const QueryPath& p = e.paths[index];
  w_.set("I", std::to_string(index));
  w_.line("::flatstore::Value read{{I}}(const uint8_t* buffer) {");
  w_.indent();
  w_.line("const auto* o0 = ::flatbuffers::GetRoot<{{TABLE}}>(buffer);");
  for (size_t s = 0; s + 1 < p.steps.size(); ++s) {
    const PathStep& step = p.steps[s];
    w_.set("A", "o" + std::to_string(s));
    w_.set("B", "o" + std::to_string(s + 1));
    w_.set("ACC", flatcName(step.field->name));
    if (step.union_member != nullptr) {
      w_.set("ENUM", globalName(*step.field->value.type.enum_def));
      w_.set("EV", flatcName(step.union_member->name));
      w_.set("MT", globalName(*step.union_member->union_type.struct_def));
      w_.set("TACC", flatcTypeAccessor(*step.field));
      w_.line("if ({{A}}->{{TACC}}() != {{ENUM}}::{{EV}}) return {};");
      w_.line("const auto* {{B}} = static_cast<const {{MT}}*>({{A}}->{{ACC}}());");
    } else if (step.owner->fixed) {
      // A struct inside a struct is always present.
      w_.line("const auto* {{B}} = &{{A}}->{{ACC}}();");
    } else {
      w_.line("const auto* {{B}} = {{A}}->{{ACC}}();");
      w_.line("if ({{B}} == nullptr) return {};");
    }
  }
  const PathStep& leaf = p.steps.back();
  w_.set("O", "o" + std::to_string(p.steps.size() - 1));
  w_.set("ACC", flatcName(leaf.field->name));
  if (p.kind == LeafKind::kText) {
    w_.line("const auto* s = {{O}}->{{ACC}}();");
    w_.line("if (s == nullptr) return {};");
    w_.line("return ::flatstore::Value::text(std::string(s->c_str(), s->size()));");
  } else if (leaf.field->IsScalarOptional()) {
    w_.line("const auto v = {{O}}->{{ACC}}();");
    w_.line("if (!v.has_value()) return {};");
    w_.line("return ::flatstore::Value::of(*v);");
  } else {
    w_.line("return ::flatstore::Value::of({{O}}->{{ACC}}());");
  }
  w_.outdent();
  w_.line("}");
}

void CppGenerator::genPathStructs(const Entity& e) {
  std::unique_ptr<PathNode> root = buildPathTree(e);
  int next_id = 0;
  // Post-order: a struct is defined before the struct that holds it.
  auto emit = [&](auto&& self, PathNode& node) -> void {
    for (auto& c : node.children) {
      if (c->leaf < 0) self(self, *c);
    }
    if (&node == root.get()) return;
    node.struct_id = next_id++;
    w_.set("S", std::to_string(node.struct_id));
    w_.line("struct Path{{S}} {");
    w_.indent();
    for (auto& c : node.children) {
      w_.set("M", c->member);
      if (c->leaf >= 0) {
        w_.set("V", e.paths[static_cast<size_t>(c->leaf)].cpp_type);
        w_.set("I", std::to_string(c->leaf));
        w_.line("::flatstore::Field<{{TABLE}}, {{V}}> {{M}}{kField{{I}}};");
      } else {
        w_.set("C", std::to_string(c->struct_id));
        w_.line("Path{{C}} {{M}}{};");
      }
    }
    w_.outdent();
    w_.line("};");
  };
  emit(emit, *root);
  // The root's members are emitted by genFieldsStruct from the same tree.
  root_members_.clear();
  for (auto& c : root->children) {
    RootMember m;
    m.member = c->member;
    m.leaf = c->leaf;
    m.struct_id = c->struct_id;
    root_members_.push_back(m);
  }
}

void CppGenerator::genFieldsStruct(const Entity& e) {
  w_.line("");
  w_.line("// Typed field descriptors of {{NAME}} for queries and ordering.");
  w_.line("struct {{FIELDS}} {");
  w_.indent();
  for (const RootMember& m : root_members_) {
    w_.set("M", m.member);
    if (m.leaf >= 0) {
      w_.set("V", e.paths[static_cast<size_t>(m.leaf)].cpp_type);
      w_.set("I", std::to_string(m.leaf));
      w_.line(
          "static constexpr ::flatstore::Field<{{TABLE}}, {{V}}> {{M}}{{{DETAIL}}::kField{{I}}};");
    } else {
      w_.set("S", std::to_string(m.struct_id));
      w_.line("static constexpr {{DETAIL}}::Path{{S}} {{M}}{};");
    }
  }
  w_.outdent();
  w_.line("};");
}

}  // namespace flatstore::codegen
