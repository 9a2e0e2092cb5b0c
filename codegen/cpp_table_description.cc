// CppGenerator's table descriptions: for each entity, in the source file, its key
// columns, index descriptions and their DDL, the verifier, `keyOf`, the index values of
// an object and the `kDescription` constant that `<Entity>Entity::description()` returns.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "codegen/cpp_generator.h"
#include "codegen/names.h"

namespace flatstore::codegen {
namespace {

const char* columnType(LeafKind kind) {
  switch (kind) {
    case LeafKind::kText:
      return "kText";
    case LeafKind::kReal:
      return "kReal";
    default:
      return "kInteger";
  }
}

const char* sqlType(LeafKind kind) {
  switch (kind) {
    case LeafKind::kText:
      return "TEXT";
    case LeafKind::kReal:
      return "REAL";
    default:
      return "INTEGER";
  }
}

std::string upperHex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%016llxull", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

void CppGenerator::genDescription(const Entity& e) {
  w_.line("namespace {");
  w_.line("");
  // Key columns.
  std::string create = "CREATE TABLE IF NOT EXISTS \"" + e.full_name +
                       "\" (rowid INTEGER PRIMARY KEY AUTOINCREMENT, ";
  std::string unique_cols;
  if (!e.key_paths.empty()) {
    w_.line("constexpr ::flatstore::KeyColumn kKeyColumns[] = {");
    w_.indent();
    for (int k : e.key_paths) {
      const QueryPath& p = e.paths[static_cast<size_t>(k)];
      std::string column = "k" + p.id_path;
      w_.set("COL", cppStringLiteral(column));
      w_.set("PATH", cppStringLiteral(p.name_path));
      w_.set("TYPE", columnType(p.kind));
      w_.line("{{{COL}}, {{PATH}}, ::flatstore::ColumnType::{{TYPE}}},");
      create += "\"" + column + "\" " + sqlType(p.kind) + " NOT NULL, ";
      unique_cols += (unique_cols.empty() ? "\"" : ", \"") + column + "\"";
    }
    w_.outdent();
    w_.line("};");
  }
  create += "p BLOB NOT NULL, vs INTEGER NOT NULL";
  if (!unique_cols.empty()) create += ", UNIQUE(" + unique_cols + ")";
  create += ")";
  if (!e.index_paths.empty()) {
    w_.line("constexpr ::flatstore::IndexDescription kIndexes[] = {");
    w_.indent();
    for (int k : e.index_paths) {
      const QueryPath& p = e.paths[static_cast<size_t>(k)];
      std::string index_table = e.full_name + "$" + p.id_path;
      w_.set("ITABLE", cppStringLiteral(index_table));
      w_.set("PATH", cppStringLiteral(p.name_path));
      w_.set("IDS", cppStringLiteral(p.id_path));
      w_.set("TYPE", columnType(p.kind));
      w_.set("UNIQUE", p.unique ? "true" : "false");
      w_.set("CREATE_TABLE",
             cppStringLiteral("CREATE TABLE IF NOT EXISTS \"" + index_table +
                              "\" (rowid INTEGER PRIMARY KEY, value " + sqlType(p.kind) + ")"));
      w_.set("CREATE_INDEX", cppStringLiteral(std::string("CREATE ") + (p.unique ? "UNIQUE " : "") +
                                              "INDEX IF NOT EXISTS \"" + index_table +
                                              "$value\" ON \"" + index_table + "\" (value)"));
      w_.line(
          "{{{ITABLE}}, {{PATH}}, {{IDS}}, ::flatstore::ColumnType::{{TYPE}}, {{UNIQUE}},\n"
          " {{CREATE_TABLE}},\n"
          " {{CREATE_INDEX}}},");
    }
    w_.outdent();
    w_.line("};");
  }
  w_.line("bool verify(std::span<const uint8_t> bytes) {");
  w_.line("  ::flatbuffers::Verifier verifier(bytes.data(), bytes.size());");
  w_.line("  return verifier.VerifyBuffer<{{TABLE}}>(nullptr);");
  w_.line("}");
  w_.line("}  // namespace");
  w_.line("");
  // keyOf and indexValuesOf: the values of the paths `paths`, in order.
  auto appendReads = [&](const char* name, const std::vector<int>& paths) {
    w_.set("FN", name);
    w_.line("void {{FN}}(const uint8_t* buffer, std::vector<::flatstore::Value>* out) {");
    w_.indent();
    if (paths.empty()) w_.line("(void)buffer;\n(void)out;");
    for (int k : paths) {
      w_.set("I", std::to_string(k));
      w_.line("out->push_back(read{{I}}(buffer));");
    }
    w_.outdent();
    w_.line("}");
  };
  appendReads("keyOf", e.key_paths);
  w_.line("");
  w_.line("namespace {");
  w_.line("");
  appendReads("indexValuesOf", e.index_paths);
  w_.set("CREATE", cppStringLiteral(create));
  w_.set("HASH", upperHex(e.schema_hash));
  w_.set("KEYS", e.key_paths.empty() ? "{}" : "kKeyColumns");
  w_.set("INDEXES", e.index_paths.empty() ? "{}" : "kIndexes");
  w_.line("");
  w_.line("}  // namespace");
  w_.line("");
  w_.line("const ::flatstore::TableDescription kDescription{");
  w_.indent();
  w_.line(".entity_name = \"{{FULL_NAME}}\",");
  w_.line(".table_name = \"{{FULL_NAME}}\",");
  w_.line(".key_columns = {{KEYS}},");
  w_.line(".indexes = {{INDEXES}},");
  w_.line(".create_table_sql = {{CREATE}},");
  w_.line(".schema_hash = {{HASH}},");
  w_.line(".binary_schema = ::kFlatstoreBinarySchema,");
  w_.line(".verify = &verify,");
  w_.line(".key_of = &keyOf,");
  w_.line(".index_values_of = &indexValuesOf,");
  w_.outdent();
  w_.line("};");
}

}  // namespace flatstore::codegen
