// The `flatstore` tool on files written by the library: goldens, --where against the
// typed API, check on damaged files, export and import.
#include <sqlite3.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "tests/tools/cli_util.h"

namespace flatstore::testing {
namespace {

using test::game::Color;
using test::game::Event;
using test::game::Monster;
using ::testing::HasSubstr;
using F = test::game::MonsterFields;

std::string goldenPath(const std::string& name) {
  const char* src = std::getenv("FLATSTORE_SOURCE_DIR");
  return absl::StrCat(src == nullptr ? "." : src, "/tests/tools/goldens/", name);
}

// Compares `actual` with the checked-in golden; FLATSTORE_UPDATE_GOLDENS=1 rewrites it.
void expectGolden(const std::string& name, const std::string& actual) {
  if (std::getenv("FLATSTORE_UPDATE_GOLDENS") != nullptr) {
    writeFile(goldenPath(name), actual);
    return;
  }
  EXPECT_EQ(actual, readFile(goldenPath(name))) << "golden " << name
                                                << " differs (FLATSTORE_UPDATE_GOLDENS=1 "
                                                   "rewrites it)";
}

// Runs SQL on the file with the sqlite3 C API (no workspace open), to damage it.
void execSql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << (error == nullptr ? "" : error);
  sqlite3_free(error);
  sqlite3_close(db);
}

TEST(CliTest, HelpAndUsageErrors) {
  TempDir dir;
  CliResult help = runCli(dir, {"--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* c :
       {"inspect", "schema", "dump", "check", "export", "import", "backup", "watch"}) {
    EXPECT_THAT(help.out, HasSubstr(c));
    CliResult h = runCli(dir, {c, "--help"});
    EXPECT_EQ(h.exit_code, 0) << c;
    EXPECT_THAT(h.out, HasSubstr(absl::StrCat("usage: flatstore ", c))) << c;
  }
  CliResult unknown = runCli(dir, {"frobnicate"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("unknown command 'frobnicate'"));
  std::string missing = dir.file("missing.db");
  CliResult m = runCli(dir, {"inspect", missing});
  EXPECT_EQ(m.exit_code, 2);
  EXPECT_EQ(m.err, absl::StrCat("flatstore: ", missing, ": no such file\n"));
  writeFile(dir.file("text.db"), "this is not a database, just text that is long enough\n");
  CliResult t = runCli(dir, {"check", dir.file("text.db")});
  EXPECT_EQ(t.exit_code, 2);
  EXPECT_THAT(t.err, HasSubstr(absl::StrCat("flatstore: ", dir.file("text.db"), ": ")));
  CliResult bad_option = runCli(dir, {"dump", missing, "Monster", "--colour"});
  EXPECT_EQ(bad_option.exit_code, 2);
  EXPECT_THAT(bad_option.err, HasSubstr("unknown option --colour"));
}

TEST(CliTest, GoldensOfInspectSchemaAndDump) {
  TempDir dir;
  std::string path = dir.file("golden.db");
  seedFile(path, 6, 3);
  std::string before = readFile(path);

  CliResult inspect = runCli(dir, {"inspect", path});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  // The path and the sizes depend on the machine; the rest is fixed.
  std::string text = absl::StrReplaceAll(inspect.out, {{path, "FILE"}});
  text = std::regex_replace(text, std::regex("(file size|WAL size) +[^\n]*"), "$1 ...");
  expectGolden("inspect.txt", text);

  CliResult json = runCli(dir, {"inspect", path, "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"name\":\"flatstore.test.game.Monster\",\"objects\":6"));
  EXPECT_THAT(json.out, HasSubstr("{\"path\":\"email\",\"id_path\":\"14\",\"unique\":true,"
                                  "\"complete\":true,\"backfill_next_rowid\":null}"));

  CliResult schema = runCli(dir, {"schema", path, "Monster"});
  ASSERT_EQ(schema.exit_code, 0) << schema.err;
  expectGolden("schema.fbs", schema.out);
  CliResult all_schemas = runCli(dir, {"schema", path});
  EXPECT_THAT(all_schemas.out, HasSubstr("// table flatstore.test.game.Event\n"));
  EXPECT_THAT(all_schemas.out, HasSubstr("table Event (entity) {"));

  CliResult dump = runCli(dir, {"dump", path, "game.Monster"});
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  expectGolden("dump-monster.jsonl", dump.out);
  CliResult events = runCli(dir, {"dump", path, "Event", "--format", "json"});
  ASSERT_EQ(events.exit_code, 0) << events.err;
  expectGolden("dump-event.json", events.out);

  // Read-only commands leave the file as it was.
  EXPECT_EQ(runCli(dir, {"check", path}).exit_code, 0);
  EXPECT_TRUE(readFile(path) == before) << "a read-only command changed the file";
}

TEST(CliTest, AmbiguousAndUnknownTables) {
  TempDir dir;
  std::string path = dir.file("t.db");
  seedFile(path, 2, 1);
  CliResult r = runCli(dir, {"dump", path, "Dragon"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, absl::StrCat("flatstore: ", path,
                                ": no table named Dragon (tables: flatstore.test.game.Event, "
                                "flatstore.test.game.Monster)\n"));
  CliResult partial = runCli(dir, {"dump", path, "ster"});
  EXPECT_EQ(partial.exit_code, 2) << "a suffix must start after a dot";
}

struct WhereCase {
  std::string expr;
  Predicate<Monster> typed;
};

TEST(CliTest, DumpWhereEqualsTheTypedQuery) {
  TempDir dir;
  std::string path = dir.file("where.db");
  seedFile(path, 300, 0);
  std::vector<WhereCase> cases = {
      {"hp > 100", F::hp > 100},                                  // indexed
      {"mana >= 150 and hp < 50", F::mana >= 150 && F::hp < 50},  // unindexed and indexed
      {"color == Red", F::color == Color::Red},                   // enum by name
      {"color != 2 or hp = 0", F::color != Color::Blue || F::hp == 0},
      {"equipped.Weapon.damage in (3, 4)", F::equipped.asWeapon.damage.in({3, 4})},
      {"equipped.Shield.armor not in (1, 4, 7)", F::equipped.asShield.armor.notIn({1, 4, 7})},
      {"email is null", F::email.isNull()},  // unique index
      {"score is not null and not (score > 100)", F::score.isNotNull() && !(F::score > 100)},
      {"stats.xp >= 100000", F::stats.xp >= 100000},                           // nested table
      {"stats.level = 3", F::stats.level == 3},                                // nested, indexed
      {"pos.x < 10.5", F::pos.x < 10.5f},                                      // struct, indexed
      {"speed > 70.1 && alive == true", F::speed > 70.1 && F::alive == true},  // real, bool
      {"name == \"m-7\" || name = 'm-70'", F::name == "m-7" || F::name == "m-70"},  // key
      {"realm == 2 and name > 'm-5'", F::realm == 2 && F::name > "m-5"},
      {"big == 0 and hp > -1", F::big == uint64_t{0} && F::hp > -1},
  };
  auto ws = Workspace::open(path);
  ASSERT_TRUE(ws.ok()) << ws.status();
  for (const WhereCase& c : cases) {
    auto typed = (*ws)->fetch<Monster>().where(c.typed).all();
    ASSERT_TRUE(typed.ok()) << typed.status();
    std::vector<int64_t> want;
    for (const auto& m : *typed) want.push_back(m->rowid());
    CliResult r = runCli(dir, {"dump", path, "Monster", "--where", c.expr});
    ASSERT_EQ(r.exit_code, 0) << c.expr << ": " << r.err;
    std::vector<int64_t> got = dumpRowids(r.out);
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, want) << c.expr;
    EXPECT_FALSE(want.empty()) << c.expr << " matches nothing, which proves little";
  }
  // Ordered and limited: the same objects in the same order.
  auto typed = (*ws)
                   ->fetch<Monster>()
                   .where(F::hp > 20)
                   .orderBy(F::color.descending(), F::speed.ascending())
                   .limit(25)
                   .all();
  ASSERT_TRUE(typed.ok());
  std::vector<int64_t> want;
  for (const auto& m : *typed) want.push_back(m->rowid());
  CliResult r = runCli(dir, {"dump", path, "Monster", "--where", "hp > 20", "--order-by", "color",
                             "desc", "--order-by", "speed", "--limit", "25"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(dumpRowids(r.out), want);

  CliResult wrong = runCli(dir, {"dump", path, "Monster", "--where", "hp == \"ten\""});
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_THAT(wrong.err, HasSubstr("--where: column 7: field hp cannot be compared with the "
                                   "string ten"));
  CliResult syntax = runCli(dir, {"dump", path, "Monster", "--where", "hp > 1 and"});
  EXPECT_EQ(syntax.exit_code, 2);
  EXPECT_THAT(syntax.err, HasSubstr("expected a field path, found the end"));
}

class CheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("check.db");
    seedFile(path_, 40, 5);
    CliResult clean = runCli(dir_, {"check", path_});
    ASSERT_EQ(clean.exit_code, 0) << clean.out << clean.err;
    EXPECT_EQ(clean.out, "ok: 45 objects in 2 tables\n");
  }
  CliResult check() { return runCli(dir_, {"check", path_}); }

  TempDir dir_;
  std::string path_;
};

TEST_F(CheckTest, FindsADamagedObject) {
  execSql(path_, "UPDATE \"flatstore.test.game.Monster\" SET p = x'0a0b0c' WHERE rowid = 3");
  CliResult r = check();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out,
            "table flatstore.test.game.Monster rowid 3: object (3 bytes) fails verification "
            "against the stored schema\n");
  EXPECT_THAT(r.err, HasSubstr(": 1 problem\n"));
}

TEST_F(CheckTest, FindsAMissingIndexRow) {
  execSql(path_, "DELETE FROM \"flatstore.test.game.Monster$2\" WHERE rowid = 4");
  CliResult r = check();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out,
            "table flatstore.test.game.Monster rowid 4: index hp has no row for the "
            "object\n");
}

TEST_F(CheckTest, FindsAnExtraIndexRow) {
  execSql(path_, "INSERT INTO \"flatstore.test.game.Monster$11.0\"(rowid, value) VALUES(999, 1)");
  CliResult r = check();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out,
            "table flatstore.test.game.Monster rowid 999: index stats.level has a row "
            "but the table has no such object\n");
}

TEST_F(CheckTest, FindsAWrongIndexValueAndKeyColumn) {
  execSql(path_,
          "UPDATE \"flatstore.test.game.Monster\" SET k1 = 77 WHERE rowid = 5;"
          "UPDATE \"flatstore.test.game.Monster$14\" SET value = 'nobody' WHERE rowid = 7;");
  CliResult r = check();
  EXPECT_EQ(r.exit_code, 1);
  // Monster 4 (rowid 5) is in realm 1; monster 6 (rowid 7) has an email.
  EXPECT_EQ(r.out,
            "table flatstore.test.game.Monster rowid 5: key column k1 (realm) holds 77 but the "
            "object has 1\n"
            "table flatstore.test.game.Monster rowid 7: index email holds \"nobody\" but the "
            "object has \"m6@example.org\"\n");
  EXPECT_THAT(r.err, HasSubstr(": 2 problems\n"));
}

TEST_F(CheckTest, FindsWrongRealTextAndNullColumns) {
  execSql(path_,
          "UPDATE \"flatstore.test.game.Monster$5.0\" SET value = 99.5 WHERE rowid = 2;"
          "UPDATE \"flatstore.test.game.Monster\" SET k0 = 'zz' WHERE rowid = 3;"
          "UPDATE \"flatstore.test.game.Monster$21.0\" SET value = 'gold' WHERE rowid = 4;"
          "UPDATE \"flatstore.test.game.Monster$14\" SET value = NULL WHERE rowid = 5;");
  CliResult r = check();
  EXPECT_EQ(r.exit_code, 1);
  // Monster 1 (rowid 2) is at x 0.5, monster 2 (rowid 3) is named m-2, monster 3 has no
  // badge, monster 4 has an email.
  EXPECT_EQ(r.out,
            "table flatstore.test.game.Monster rowid 2: index pos.x holds 99.5 but the object "
            "has 0.5\n"
            "table flatstore.test.game.Monster rowid 3: key column k0 (name) holds \"zz\" but "
            "the object has \"m-2\"\n"
            "table flatstore.test.game.Monster rowid 4: index badge.label holds \"gold\" but the "
            "object has NULL\n"
            "table flatstore.test.game.Monster rowid 5: index email holds NULL but the object "
            "has \"m4@example.org\"\n");
  EXPECT_THAT(r.err, HasSubstr(": 4 problems\n"));
}

// SQLite's integrity check: damage that only it sees reaches the output. The first is
// found by its per-row look-ups in SQL indexes, the second by its accounting of pages.
TEST_F(CheckTest, FindsAnSqlIndexThatDisagreesWithItsTable) {
  // While the SQL index on hp is (in the schema only) partial with no rows, an update
  // leaves its entry for rowid 4 stale; then the schema is put back.
  const std::string index = "flatstore.test.game.Monster$2$value";
  execSql(path_, absl::StrCat("PRAGMA writable_schema = ON; UPDATE sqlite_master SET sql = sql "
                              "|| ' WHERE 0' WHERE name = '",
                              index, "'"));
  execSql(path_,
          "UPDATE \"flatstore.test.game.Monster$2\" SET value = value + 1000 WHERE rowid = 4");
  execSql(path_, absl::StrCat("PRAGMA writable_schema = ON; UPDATE sqlite_master SET sql = "
                              "replace(sql, ' WHERE 0', '') WHERE name = '",
                              index, "'"));
  CliResult r = check();
  EXPECT_EQ(r.exit_code, 1);
  // Monster 3 (rowid 4) has hp 111.
  EXPECT_EQ(
      r.out,
      "table flatstore.test.game.Monster rowid 4: index hp holds 1111 but the object has "
      "111\n"
      "sqlite integrity_check: row 4 missing from index flatstore.test.game.Monster$2$value\n");
  EXPECT_THAT(r.err, HasSubstr(": 2 problems\n"));
}

TEST_F(CheckTest, FindsPagesNoTableUses) {
  // The SQL index on hp leaves the schema; its pages stay in the file, used by nothing.
  // quick_check sees that too.
  execSql(path_,
          "PRAGMA writable_schema = ON; DELETE FROM sqlite_master WHERE name = "
          "'flatstore.test.game.Monster$2$value'");
  CliResult r = check();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("sqlite integrity_check: *** in database main ***\nPage "));
  EXPECT_THAT(r.out, HasSubstr(" is never used\n"));
  CliResult quick = runCli(dir_, {"check", path_, "--quick"});
  EXPECT_EQ(quick.exit_code, 1);
  EXPECT_THAT(quick.out, HasSubstr("sqlite quick_check: *** in database main ***\nPage "));
}

TEST_F(CheckTest, FindsABadChangeLogRow) {
  execSql(path_, "UPDATE flatstore_changes SET changes = x'0102' WHERE seq = 1");
  CliResult r = check();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("flatstore_changes seq 1: "));
}

TEST(CliTest, ExportThenImportGivesEqualObjectsAndDictionary) {
  TempDir dir;
  std::string path = dir.file("source.db");
  seedFile(path, 120, 30);
  std::string out = dir.file("export");
  CliResult e = runCli(dir, {"export", path, "-o", out});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  std::string copy = dir.file("copy.db");
  for (const char* table : {"flatstore.test.game.Monster", "flatstore.test.game.Event"}) {
    CliResult i = runCli(dir, {"import", copy, table, absl::StrCat(out, "/", table, ".jsonl"),
                               "--like", path, "--chunk", "17"});
    ASSERT_EQ(i.exit_code, 0) << i.err;
  }
  CliResult d = runCli(dir, {"import", copy, "dictionary", out + "/dictionary.jsonl"});
  ASSERT_EQ(d.exit_code, 0) << d.err;

  std::string again = dir.file("export-again");
  ASSERT_EQ(runCli(dir, {"export", copy, "-o", again}).exit_code, 0);
  // The objects, their keys and order are equal; rowids too, since the import keeps
  // the file's order. Versionstamps differ (new commits).
  auto objects = [](const std::string& text) {
    return std::regex_replace(text, std::regex("\"versionstamp\":\"[0-9a-f]+\","), "");
  };
  for (const char* f : {"flatstore.test.game.Monster.jsonl", "flatstore.test.game.Event.jsonl"}) {
    std::string a = readFile(absl::StrCat(out, "/", f));
    EXPECT_FALSE(a.empty());
    EXPECT_EQ(objects(readFile(absl::StrCat(again, "/", f))), objects(a)) << f;
  }
  EXPECT_EQ(readFile(again + "/dictionary.jsonl"), readFile(out + "/dictionary.jsonl"));
  EXPECT_THAT(readFile(out + "/dictionary.jsonl"),
              HasSubstr("{\"key\":\"boss\",\"kind\":\"object\",\"type\":\"flatstore.test.game."
                        "Monster\",\"value\":{\"name\": \"m-1\""));

  // The copy is a working file: typed reads see the objects.
  auto ws = Workspace::open(copy);
  ASSERT_TRUE(ws.ok()) << ws.status();
  auto m = (*ws)->get<Monster>(std::string_view("m-9"), 0);
  ASSERT_TRUE(m.ok() && *m != nullptr);
  EXPECT_EQ((*m)->hp(), (9 * 37) % 200);
  EXPECT_EQ(*(*ws)->fetch<Event>().count(), 30);
  EXPECT_EQ(runCli(dir, {"check", copy}).exit_code, 0);
}

TEST(CliTest, ImportReportsRejectedLinesAndGoesOn) {
  TempDir dir;
  std::string path = dir.file("import.db");
  seedFile(path, 3, 0);
  std::string input = dir.file("in.jsonl");
  writeFile(input,
            "{\"name\": \"a\", \"realm\": 9, \"email\": \"a@x\"}\n"
            "{\"name\": \"b\", \"realm\": 9, \"hp\": \"lots\"}\n"
            "{\"name\": \"c\", \"realm\": 9, \"color\": \"Purple\"}\n"
            "{\"name\": \"d\", \"realm\": 9, \"email\": \"m1@example.org\"}\n"
            "{\"name\": \"e\", \"realm\": 9, \"email\": \"a@x\"}\n"
            "\n"
            "{\"rowid\":5,\"versionstamp\":\"00000000000000010000\",\"object\":{\"name\": \"f\", "
            "\"realm\": 9}}\n"
            "{\"realm\": 9}\n");
  CliResult r = runCli(dir, {"import", path, "Monster", input});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("flatstore: ", input,
                                            ":2: not a valid "
                                            "flatstore.test.game.Monster: ")));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("flatstore: ", input, ":3: ")));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat(input,
                                            ":4: unique field 'email' already has value "
                                            "\"m1@example.org\"")));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat(input,
                                            ":5: unique field 'email' already has value "
                                            "\"a@x\"")));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat(input, ":8: ")));
  EXPECT_THAT(r.err, HasSubstr("2 inserted, 0 updated, 5 rejected of 8 lines"));
  auto ws = Workspace::open(path);
  ASSERT_TRUE(ws.ok());
  for (const char* name : {"a", "d", "f"}) {
    auto m = (*ws)->get<Monster>(std::string_view(name), 9);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(*m != nullptr, std::string(name) != "d") << name;
  }
  EXPECT_EQ(*(*ws)->fetch<Monster>().count(), 5);
}

}  // namespace
}  // namespace flatstore::testing
