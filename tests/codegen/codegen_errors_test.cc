// Runs flatstore-codegen on schemas it must reject and on schemas it must accept.
//
// Each rejected schema in tests/codegen/bad/ holds exactly one error; the test checks
// the exit status, that stderr is exactly one `file:line:col: error: message` line at the
// right place (columns are 1-based bytes, at the offending field name, attribute or type
// token) and that nothing was written to the output directory.
//
// The tests are value-parameterized and instantiated as `codegen`, so that their ctest
// names (`codegen/BadSchemaTest...`) match `ctest -R codegen`.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/codegen/codegen_runner.h"

namespace flatstore::codegen_test {
namespace {

using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

fs::path badDir() { return sourceDir() / "tests" / "codegen" / "bad"; }
fs::path goodDir() { return sourceDir() / "tests" / "codegen" / "good"; }

struct BadCase {
  const char* name;     // test name suffix
  const char* schema;   // the file given to the tool, relative to tests/codegen/bad
  const char* at_file;  // the file the error is in, relative to tests/codegen/bad
  int line;
  int column;
  const char* message;  // a fragment of the message
};

std::ostream& operator<<(std::ostream& os, const BadCase& c) { return os << c.name; }

const BadCase kBadCases[] = {
    {"UnknownType", "unknown_type.fbs", "unknown_type.fbs", 8, 8, "unknown type 'Animal'"},
    {"SyntaxError", "syntax_error.fbs", "syntax_error.fbs", 6, 6, "expecting: :"},
    {"PrimaryOnVector", "primary_on_vector.fbs", "primary_on_vector.fbs", 8, 19,
     "field 'Monster.tags': a primary key must be a scalar, enum or string, not a vector"},
    {"PrimaryOnStruct", "primary_on_struct.fbs", "primary_on_struct.fbs", 14, 14,
     "field 'Monster.pos': a primary key must be a scalar, enum or string, not a struct"},
    {"PrimaryOnUnion", "primary_on_union.fbs", "primary_on_union.fbs", 18, 24,
     "field 'Monster.equipped': a primary key must be a scalar, enum or string, not a union"},
    {"PrimaryOnNestedTable", "primary_on_table.fbs", "primary_on_table.fbs", 12, 17,
     "field 'Monster.stats': a primary key must be a scalar, enum or string, not a table"},
    {"PrimaryOnFloat", "primary_on_float.fbs", "primary_on_float.fbs", 8, 17,
     "field 'Monster.speed': a primary key cannot be floating-point"},
    {"PrimaryOnOptionalScalar", "primary_on_optional.fbs", "primary_on_optional.fbs", 8, 22,
     "field 'Monster.score': a primary key cannot be optional (= null)"},
    {"IndexedOnStruct", "indexed_on_struct.fbs", "indexed_on_struct.fbs", 14, 14,
     "field 'Monster.pos': only scalars, enums and strings can be indexed, not a struct"},
    {"IndexedOnVector", "indexed_on_vector.fbs", "indexed_on_vector.fbs", 8, 23,
     "field 'Monster.inventory': only scalars, enums and strings can be indexed, not a vector"},
    {"UniqueOnNestedTable", "unique_on_table.fbs", "unique_on_table.fbs", 12, 17,
     "field 'Monster.stats': only scalars, enums and strings can be unique, not a table"},
    {"DuplicateFieldName", "duplicate_field.fbs", "duplicate_field.fbs", 7, 3,
     "field already exists: hp"},
    {"PrimaryInNonEntityTable", "primary_not_entity.fbs", "primary_not_entity.fbs", 7, 15,
     "field 'Stats.level': primary keys belong to entity tables, and 'Stats' is not one"},
    {"PrimaryInSchemaWithoutEntities", "primary_without_entity.fbs", "primary_without_entity.fbs",
     8, 17, "field 'Monster.name': primary keys belong to entity tables, and 'Monster' is not one"},
    {"UnknownRootType", "unknown_root_type.fbs", "unknown_root_type.fbs", 8, 11,
     "unknown root type: Animal"},
    {"UndeclaredAttribute", "unknown_attribute.fbs", "unknown_attribute.fbs", 5, 17,
     "must be declared before use: primry"},
    {"UnknownTypeInIncludedFile", "unknown_type_in_include.fbs", "included/uses_unknown_type.fbs",
     6, 8, "unknown type 'Animal'"},
    {"SchemaFileDoesNotExist", "does_not_exist.fbs", "does_not_exist.fbs", 1, 1,
     "cannot read schema file"},
    {"EntityOnStruct", "entity_on_struct.fbs", "entity_on_struct.fbs", 4, 8,
     "struct 'Point': only a table can be an entity"},
    {"NameCollisionCamelCase", "name_collision_camel.fbs", "name_collision_camel.fbs", 6, 3,
     "field 'Account.userId': the generated name 'userId' (the accessor of field 'userId') is "
     "also derived from the accessor of field 'user_id'"},
    {"NameCollisionHasTest", "name_collision_has.fbs", "name_collision_has.fbs", 4, 3,
     "the generated name 'hasName' (the accessor of field 'has_name') is also derived from the "
     "has-test of field 'name'"},
    {"NameCollisionUnionMember", "name_collision_union_member.fbs",
     "name_collision_union_member.fbs", 10, 3,
     "the generated name 'gearAsSword' (the accessor of field 'gear_as_sword') is also derived "
     "from the accessor of member 'Sword' of field 'gear'"},
    {"NameCollisionNestedTable", "name_collision_nested.fbs", "name_collision_nested.fbs", 4, 3,
     "field 'Stats.hitPoints': the generated name 'hitPoints'"},
    {"NameCollisionClass", "name_collision_class.fbs", "name_collision_class.fbs", 6, 7,
     "table 'Doc': the generated class 'DocEntity' has the name of table 'DocEntity'"},
};

class BadSchemaTest : public ::testing::TestWithParam<BadCase> {
 protected:
  // Runs the tool with `args` in `cwd` and checks that it rejects the case's schema
  // with one diagnostic naming `expected_file` at the case's line and column.
  void expectRejected(const std::vector<std::string>& args, const fs::path& cwd,
                      const std::string& expected_file) {
    const BadCase& c = GetParam();
    SCOPED_TRACE(std::string("schema ") + c.schema);
    RunResult r = runCodegen(args, cwd, scratch_.path());
    EXPECT_EQ(r.exit_code, 1) << "stderr:\n" << r.err;
    EXPECT_THAT(r.out, IsEmpty());
    // Exactly one diagnostic, at the expected place. The prefix is matched at the start
    // of the line so that a relative name cannot match the tail of an absolute one.
    std::string where = ":" + std::to_string(c.line) + ":" + std::to_string(c.column) + ": error: ";
    const std::string alternative =  // "./dir/file" for a relative "dir/file"
        fs::path(expected_file).is_relative() ? "./" + expected_file : expected_file;
    EXPECT_THAT(
        splitLines(r.err),
        ElementsAre(AllOf(AnyOf(StartsWith(expected_file + where), StartsWith(alternative + where)),
                          HasSubstr(c.message))))
        << "expected " << expected_file << where << "..." << c.message;
    EXPECT_THAT(filesIn(out_.path()), IsEmpty()) << "the tool wrote output for a bad schema";
  }

  TempDir out_;
  TempDir scratch_;
};

// The schema named by an absolute path, run from an unrelated directory: the file in the
// message is that absolute path.
TEST_P(BadSchemaTest, FailsWithOneLocatedErrorAndWritesNothing) {
  const BadCase& c = GetParam();
  expectRejected({"-o", out_.path().string(), (badDir() / c.schema).string()}, scratch_.path(),
                 (badDir() / c.at_file).string());
}

// The schema named relative to the working directory: the file in the message is named
// the same way (as compilers do), so that editors and IDEs can open it. A leading "./"
// on an included file is accepted.
TEST_P(BadSchemaTest, NamesTheFileAsGivenWhenRelative) {
  const BadCase& c = GetParam();
  SCOPED_TRACE(
      "if only the file name is wrong: the tool prints FlatBuffers' absolute path for parser "
      "errors but the path as given for flatstore's own checks");
  expectRejected({"-o", out_.path().string(), c.schema}, badDir(), c.at_file);
}

INSTANTIATE_TEST_SUITE_P(codegen, BadSchemaTest, ::testing::ValuesIn(kBadCases),
                         [](const ::testing::TestParamInfo<BadCase>& info) {
                           return std::string(info.param.name);
                         });

// How the tool is invoked in the CodegenRunTest cases.
enum class Invocation {
  kAbsolutePaths,  // absolute schema and output paths, run from an unrelated directory
  kRelativePaths,  // run from the schema's directory with relative paths
};

std::ostream& operator<<(std::ostream& os, Invocation i) {
  return os << (i == Invocation::kAbsolutePaths ? "AbsolutePaths" : "RelativePaths");
}

class CodegenRunTest : public ::testing::TestWithParam<Invocation> {
 protected:
  // Runs the tool on `schemas` (absolute paths) with output to out_.
  RunResult run(const std::vector<fs::path>& schemas) {
    std::vector<std::string> args;
    fs::path cwd = scratch_.path();
    if (GetParam() == Invocation::kRelativePaths) {
      cwd = schemas.front().parent_path();
      args = {"-o", fs::relative(out_.path(), cwd).string()};
      for (const fs::path& s : schemas) args.push_back(fs::relative(s, cwd).string());
    } else {
      args = {"-o", out_.path().string()};
      for (const fs::path& s : schemas) args.push_back(s.string());
    }
    return runCodegen(args, cwd, scratch_.path());
  }

  fs::path header(const std::string& stem) const { return out_.path() / (stem + "_flatstore.h"); }

  TempDir out_;
  TempDir scratch_;
};

TEST_P(CodegenRunTest, WritesHeaderForValidSchema) {
  RunResult r = run({sourceDir() / "schemas" / "docs.fbs"});
  ASSERT_EQ(r.exit_code, 0) << "stderr:\n" << r.err;
  EXPECT_THAT(r.err, IsEmpty());
  EXPECT_THAT(filesIn(out_.path()), ElementsAre("docs_flatstore.cc", "docs_flatstore.h"));
  EXPECT_THAT(readFileOrDie(out_.path() / "docs_flatstore.cc"),
              HasSubstr("#include \"docs_flatstore.h\""));
  std::string text = readFileOrDie(header("docs"));
  EXPECT_THAT(text, StartsWith("// Generated by flatstore-codegen from docs.fbs. Do not edit.\n"));
  EXPECT_THAT(text, HasSubstr("class DocEntity"));
  EXPECT_THAT(text, HasSubstr("class DocChangeRequest"));
  EXPECT_THAT(text, HasSubstr("#endif  // FLATSTORE_GENERATED_DOCS_FLATSTORE_H_\n"));
}

TEST_P(CodegenRunTest, SecondRunLeavesUnchangedHeaderAlone) {
  ASSERT_EQ(run({sourceDir() / "schemas" / "docs.fbs"}).exit_code, 0);
  const fs::path h = header("docs");
  // Back-date the header, so that a rewrite is visible even within the file system's
  // timestamp granularity; a rewrite (temp file + rename) would also change the inode.
  const auto old_time = fs::last_write_time(h) - std::chrono::hours(1);
  fs::last_write_time(h, old_time);
  struct stat before {};
  ASSERT_EQ(::stat(h.c_str(), &before), 0);
  const std::string first = readFileOrDie(h);

  RunResult r = run({sourceDir() / "schemas" / "docs.fbs"});
  ASSERT_EQ(r.exit_code, 0) << "stderr:\n" << r.err;
  struct stat after {};
  ASSERT_EQ(::stat(h.c_str(), &after), 0);
  EXPECT_EQ(fs::last_write_time(h), old_time) << "an identical header was rewritten";
  EXPECT_EQ(after.st_ino, before.st_ino) << "an identical header was replaced";
  EXPECT_EQ(readFileOrDie(h), first);
  // No temp file left.
  EXPECT_THAT(filesIn(out_.path()), ElementsAre("docs_flatstore.cc", "docs_flatstore.h"));
}

// The control for the test above: a header that differs is rewritten.
TEST_P(CodegenRunTest, RewritesHeaderThatDiffers) {
  ASSERT_EQ(run({sourceDir() / "schemas" / "docs.fbs"}).exit_code, 0);
  const fs::path h = header("docs");
  const std::string fresh = readFileOrDie(h);
  writeFileOrDie(h, "// stale\n");
  const auto old_time = fs::last_write_time(h) - std::chrono::hours(1);
  fs::last_write_time(h, old_time);

  RunResult r = run({sourceDir() / "schemas" / "docs.fbs"});
  ASSERT_EQ(r.exit_code, 0) << "stderr:\n" << r.err;
  EXPECT_NE(fs::last_write_time(h), old_time);
  EXPECT_EQ(readFileOrDie(h), fresh);
}

// flatc needs `attribute "primary";` and the like; flatstore-codegen declares its own
// attributes itself, so a schema may leave them out.
TEST_P(CodegenRunTest, AcceptsUndeclaredFlatstoreAttributes) {
  RunResult r = run({goodDir() / "undeclared_attributes.fbs"});
  ASSERT_EQ(r.exit_code, 0) << "stderr:\n" << r.err;
  EXPECT_THAT(r.err, IsEmpty());
  std::string text = readFileOrDie(header("undeclared_attributes")) +
                     readFileOrDie(out_.path() / "undeclared_attributes_flatstore.cc");
  // `id` is the primary key, `level` indexed, `email` unique and `Log` an entity.
  EXPECT_THAT(text, HasSubstr("::flatstore::FieldStorage::kPrimaryKey, 0, &read0}"));
  EXPECT_THAT(text, HasSubstr("CREATE INDEX IF NOT EXISTS \\\"good.Player$1$value\\\""));
  EXPECT_THAT(text, HasSubstr("CREATE UNIQUE INDEX IF NOT EXISTS \\\"good.Player$2$value\\\""));
  EXPECT_THAT(text, HasSubstr("class PlayerEntity"));
  EXPECT_THAT(text, HasSubstr("class LogEntity"));
}

// A schema without entities (no root_type, no table marked `entity`) is valid
// FlatBuffers: the tool warns, just after the last token (nothing is at fault, as
// SourceLocator::end() documents), and writes a header that includes flatc's only.
// constructs_test compiles that header and uses flatc's type through it.
TEST_P(CodegenRunTest, WarnsAndWritesFlatcIncludeOnlyForSchemaWithoutEntities) {
  RunResult r = run({goodDir() / "no_entity.fbs"});
  ASSERT_EQ(r.exit_code, 0) << "stderr:\n" << r.err;
  EXPECT_THAT(splitLines(r.err),
              ElementsAre(AllOf(HasSubstr("no_entity.fbs:11:2: warning: no root_type and no table "
                                          "marked `entity`: flatstore stores nothing"),
                                HasSubstr("declare `root_type T;`"))));
  EXPECT_THAT(filesIn(out_.path()), ElementsAre("no_entity_flatstore.cc", "no_entity_flatstore.h"));
  std::string text = readFileOrDie(header("no_entity"));
  EXPECT_THAT(text, HasSubstr("#include \"no_entity_generated.h\"\n"));
  EXPECT_THAT(text, Not(HasSubstr("flatstore/")));
  EXPECT_THAT(text, Not(HasSubstr("Entity")));
  EXPECT_THAT(readFileOrDie(out_.path() / "no_entity_flatstore.cc"),
              HasSubstr("#include \"no_entity_flatstore.h\""));
}

// The stamp is written on every run, also when the outputs are left alone, and is the
// target of the depfile's rule; the depfile names the included schemas.
TEST_P(CodegenRunTest, StampIsWrittenOnEveryRunAndIsTheDepfileTarget) {
  const fs::path stamp = out_.path() / "game.stamp";
  const fs::path depfile = out_.path() / "game.d";
  const fs::path schema = sourceDir() / "schemas" / "game.fbs";
  RunResult r = runCodegen({"-o", out_.path().string(), "--depfile", depfile.string(), "--stamp",
                            stamp.string(), schema.string()},
                           scratch_.path(), scratch_.path());
  ASSERT_EQ(r.exit_code, 0) << "stderr:\n" << r.err;
  ASSERT_TRUE(fs::exists(stamp));
  EXPECT_THAT(readFileOrDie(depfile), StartsWith(stamp.string() + ":"));
  EXPECT_THAT(readFileOrDie(depfile), HasSubstr("common.fbs"));

  const auto old_time = fs::last_write_time(stamp) - std::chrono::hours(1);
  fs::last_write_time(stamp, old_time);
  fs::last_write_time(header("game"), old_time);
  r = runCodegen({"-o", out_.path().string(), "--depfile", depfile.string(), "--stamp",
                  stamp.string(), schema.string()},
                 scratch_.path(), scratch_.path());
  ASSERT_EQ(r.exit_code, 0) << "stderr:\n" << r.err;
  EXPECT_NE(fs::last_write_time(stamp), old_time) << "the stamp was not written";
  EXPECT_EQ(fs::last_write_time(header("game")), old_time) << "an unchanged header was written";
}

// Several schemas in one run: if one is bad, none gets a header.
TEST_P(CodegenRunTest, WritesNothingWhenAnySchemaFails) {
  RunResult r = run({badDir() / "primary_on_float.fbs", sourceDir() / "schemas" / "docs.fbs"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("primary_on_float.fbs:8:17: error: field 'Monster.speed'"));
  EXPECT_THAT(filesIn(out_.path()), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(codegen, CodegenRunTest,
                         ::testing::Values(Invocation::kAbsolutePaths, Invocation::kRelativePaths),
                         ::testing::PrintToStringParamName());

// A usage error is not a schema error: the tool prints its usage line and exits 2
// without writing anything.
struct UsageCase {
  const char* name;
  std::vector<std::string> args;  // after `-o OUT_DIR`
  const char* stderr_prefix;
};

std::ostream& operator<<(std::ostream& os, const UsageCase& c) { return os << c.name; }

class CodegenUsageTest : public ::testing::TestWithParam<UsageCase> {};

TEST_P(CodegenUsageTest, ExitsWithTwoAndPrintsUsage) {
  TempDir out;
  TempDir scratch;
  std::vector<std::string> args = {"-o", out.path().string()};
  for (const std::string& a : GetParam().args) args.push_back(a);
  RunResult r = runCodegen(args, scratch.path(), scratch.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, StartsWith(GetParam().stderr_prefix));
  EXPECT_THAT(r.err, HasSubstr("usage: flatstore-codegen [-I DIR]... [-o OUT_DIR] "
                               "[--depfile FILE] [--stamp FILE] SCHEMA.fbs...\n"));
  EXPECT_THAT(filesIn(out.path()), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(
    codegen, CodegenUsageTest,
    ::testing::Values(UsageCase{"NoSchema", {}, "usage: "},
                      UsageCase{"UnknownOption",
                                {"--bogus", (sourceDir() / "schemas" / "docs.fbs").string()},
                                "flatstore-codegen: unknown option --bogus\n"},
                      UsageCase{"MissingOptionValue", {"-I"}, "usage: "}),
    ::testing::PrintToStringParamName());

}  // namespace
}  // namespace flatstore::codegen_test
