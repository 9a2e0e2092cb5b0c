// Compares flatstore-codegen's output for the test schemas with the checked-in goldens
// in tests/codegen/goldens/, byte for byte, and checks that the output depends only on
// the schema (not on the working directory or on the paths the tool is given).
//
// After an intended change to the generator, regenerate the goldens with
//   tests/codegen/update_goldens.sh [BUILD_DIR]
// and review and commit their diff with the change.
//
// Instantiated as `codegen`, so that the ctest names match `ctest -R codegen`.
#include <algorithm>
#include <filesystem>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/codegen/codegen_runner.h"

namespace flatstore::codegen_test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

struct GoldenCase {
  const char* name;     // test name suffix
  const char* schema;   // relative to the source tree
  const char* warning;  // a fragment of the one warning the tool prints, or null
};

std::ostream& operator<<(std::ostream& os, const GoldenCase& c) { return os << c.name; }

// The schemas with goldens; keep in step with tests/codegen/update_goldens.sh.
const GoldenCase kGoldenCases[] = {
    {"game", "schemas/game.fbs", nullptr},
    {"docs", "schemas/docs.fbs", nullptr},
    {"constructs", "tests/codegen/schemas/constructs.v2.fbs",
     "constructs.v2.fbs:53:19: warning: field 'Hero.badge' is unique and has the default 7"},
};

// The files the tool writes for a schema, goldens included.
const char* const kSuffixes[] = {"_flatstore.h", "_flatstore.cc"};

fs::path goldenDir() { return sourceDir() / "tests" / "codegen" / "goldens"; }

// Empty when `actual` equals `expected`; otherwise a unified-diff-like excerpt around the
// first differing line.
std::string firstDifference(const std::string& expected, const std::string& actual,
                            const std::string& expected_name, const std::string& actual_name) {
  if (expected == actual) return "";
  std::vector<std::string> e = splitLines(expected);
  std::vector<std::string> a = splitLines(actual);
  size_t i = 0;
  while (i < e.size() && i < a.size() && e[i] == a[i]) ++i;
  constexpr size_t kContext = 3;
  size_t from = i > kContext ? i - kContext : 0;
  size_t e_to = std::min(e.size(), i + kContext + 1);
  size_t a_to = std::min(a.size(), i + kContext + 1);
  std::ostringstream out;
  out << "--- " << expected_name << "\n+++ " << actual_name << "\n";
  out << "@@ -" << from + 1 << "," << e_to - from << " +" << from + 1 << "," << a_to - from
      << " @@ first difference at line " << i + 1 << "\n";
  for (size_t k = from; k < i; ++k) out << " " << e[k] << "\n";
  for (size_t k = i; k < e_to; ++k) out << "-" << e[k] << "\n";
  for (size_t k = i; k < a_to; ++k) out << "+" << a[k] << "\n";
  if (i == e.size() && i == a.size()) {
    out << "(the lines are equal; the files differ in their final newline)\n";
  }
  out << "(" << e.size() << " lines expected, " << a.size() << " generated)\n";
  return out.str();
}

// The bytes of every `...BinarySchema[] = {0x.., ...};` array in a generated file.
std::vector<std::string> embeddedSchemas(const std::string& header) {
  std::vector<std::string> out;
  const std::string kStart = "BinarySchema[] = {";
  for (size_t pos = header.find(kStart); pos != std::string::npos; pos = header.find(kStart, pos)) {
    pos += kStart.size();
    size_t end = header.find("};", pos);
    if (end == std::string::npos) break;
    std::string bytes;
    for (size_t k = header.find("0x", pos); k != std::string::npos && k < end;
         k = header.find("0x", k + 2)) {
      bytes.push_back(static_cast<char>(std::stoi(header.substr(k + 2, 2), nullptr, 16)));
    }
    out.push_back(std::move(bytes));
  }
  return out;
}

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {
 protected:
  fs::path schema() const { return sourceDir() / GetParam().schema; }
  std::string stem() const { return schema().stem().string(); }

  // Runs the tool on schema() into `out_dir` from `cwd`, with the schema and output
  // directory named relative to `cwd` when `relative`; returns the generated file with
  // `suffix`, or "" after a failure.
  std::string generate(const fs::path& out_dir, const fs::path& cwd, bool relative,
                       const std::string& suffix = "_flatstore.h") {
    std::string schema_arg = relative ? fs::relative(schema(), cwd).string() : schema().string();
    std::string out_arg = relative ? fs::relative(out_dir, cwd).string() : out_dir.string();
    RunResult r = runCodegen({"-o", out_arg, schema_arg}, cwd, scratch_.path());
    EXPECT_EQ(r.exit_code, 0) << "flatstore-codegen -o " << out_arg << " " << schema_arg << " in "
                              << cwd << ":\n"
                              << r.err;
    if (GetParam().warning == nullptr) {
      EXPECT_THAT(r.err, IsEmpty());
    } else {
      EXPECT_THAT(splitLines(r.err), ElementsAre(HasSubstr(GetParam().warning)));
    }
    if (r.exit_code != 0) return "";
    return readFileOrDie(out_dir / (stem() + suffix));
  }

  TempDir scratch_;
};

TEST_P(GoldenTest, MatchesCheckedInGolden) {
  for (const std::string suffix : kSuffixes) {
    SCOPED_TRACE(suffix);
    TempDir out;
    std::string generated = generate(out.path(), scratch_.path(), /*relative=*/false, suffix);
    ASSERT_FALSE(generated.empty());
    const std::string name = stem() + suffix;
    const fs::path golden = goldenDir() / name;
    ASSERT_TRUE(fs::exists(golden)) << golden << " is missing; run tests/codegen/update_goldens.sh";
    std::string diff = firstDifference(readFileOrDie(golden), generated,
                                       "tests/codegen/goldens/" + name, "generated/" + name);
    EXPECT_TRUE(diff.empty())
        << "the generated file differs from its golden. If the generator change is "
           "intended, run tests/codegen/update_goldens.sh and commit the new goldens.\n"
        << diff;
  }
}

// The binary schema is in the source file, once however many entities the schema has,
// and not in the header.
TEST_P(GoldenTest, BinarySchemaOncePerSchemaFile) {
  TempDir out;
  std::string header = generate(out.path(), scratch_.path(), /*relative=*/false);
  std::string source = readFileOrDie(out.path() / (stem() + "_flatstore.cc"));
  EXPECT_THAT(embeddedSchemas(header), IsEmpty());
  EXPECT_EQ(embeddedSchemas(source).size(), 1u);
}

// The same schema, reached by another path from another working directory and written
// to another output directory, gives the same bytes; and no path of this machine ends
// up in the header, neither in its text nor in the binary schema it embeds.
TEST_P(GoldenTest, IndependentOfWorkingDirectoryAndPaths) {
  TempDir out_a;
  TempDir out_b;
  std::string from_elsewhere =
      generate(out_a.path(), scratch_.path(), /*relative=*/false, "_flatstore.cc");
  std::string from_schema_dir =
      generate(out_b.path(), schema().parent_path(), /*relative=*/true, "_flatstore.cc");
  ASSERT_FALSE(from_elsewhere.empty());
  ASSERT_FALSE(from_schema_dir.empty());
  std::string diff =
      firstDifference(from_elsewhere, from_schema_dir, "absolute paths, cwd elsewhere",
                      "relative paths, cwd = schemas/");
  EXPECT_TRUE(diff.empty()) << "the output depends on how the tool was invoked:\n" << diff;
  std::vector<std::string> schemas = embeddedSchemas(from_elsewhere);
  EXPECT_THAT(schemas, Not(IsEmpty()));
  for (const fs::path& p : {sourceDir(), out_a.path(), out_b.path(), scratch_.path()}) {
    EXPECT_THAT(from_elsewhere, Not(HasSubstr(p.string())));
    for (const std::string& bytes : schemas) {
      EXPECT_THAT(bytes, Not(HasSubstr(p.string()))) << "a path in the embedded schema";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(codegen, GoldenTest, ::testing::ValuesIn(kGoldenCases),
                         [](const ::testing::TestParamInfo<GoldenCase>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace flatstore::codegen_test
