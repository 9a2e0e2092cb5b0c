// Programs built from different versions of one schema share a database (design:
// "Program versions sharing a file"), on a SQLite file and on a PostgreSQL database.
// Three real programs, built from schemas/versions/v1..v3 (an added field and nested
// table, an added index, an added unique index, a deprecated field, a field added to a
// nested table), write one database in turns: creations, changes, upserts, deletions,
// and unique violations on an index the writing program may not know. After each turn
// every version lists all objects and runs its queries: each query equals a brute-force
// filter, and each object holds what a model of all turns says, in every field the
// version knows (so no version's write lost a field of another). Shorter tests show one
// rule each, and a fourth program, whose schema diverged from v2, is refused.
#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/pg_schema.h"
#include "tests/multiprocess/process_util.h"
#include "tests/support/pg_schema.h"

namespace flatstore::testing {
namespace {

const char* const kPrograms[] = {FLATSTORE_VERSIONS_V1, FLATSTORE_VERSIONS_V2,
                                 FLATSTORE_VERSIONS_V3};
// Built as v1, from a schema that diverged from v2 (schemas/versions/diverged).
const char kDiverged[] = FLATSTORE_VERSIONS_DIVERGED;
constexpr char kTable[] = "flatstore.test.versions.Book";

// Every field of every version, as the model holds it (absent reads as the default).
struct Book {
  int views = 0;
  float rating = 0;
  std::string code;
  std::string summary;  // v1 and v2; deprecated in v3
  std::string title;    // v2 and v3
  int edition = 0;      // v2 and v3
  int likes = 0;        // stats.likes, v2 and v3
  int shares = 0;       // stats.shares, v3
};

// The line a program of `version` prints for `b` (see versions_helper.cc).
std::string lineOf(int version, const std::string& id, const Book& b) {
  std::ostringstream out;
  out << "obj " << id << " views=" << b.views << " rating=" << b.rating << " code=" << b.code;
  if (version < 3) out << " summary=" << b.summary;
  if (version >= 2) out << " title=" << b.title << " edition=" << b.edition << " likes=" << b.likes;
  if (version >= 3) out << " shares=" << b.shares;
  return out.str();
}

struct Op {
  std::string text;      // KIND:ID[:SETTINGS] for the program
  bool expect_conflict;  // a unique violation on `code`
};

// The file as every turn so far left it, and the turns' operations.
class Model {
 public:
  explicit Model(uint32_t seed) : rng_(seed) {}

  bool codeIndexExists() const { return code_index_; }
  void setCodeIndexExists() { code_index_ = true; }

  // A turn of `version`: `creations` new objects, then changes, upserts, deletions and
  // (once `code` is a unique index) a violation of it.
  std::vector<Op> turn(int version, int creations) {
    std::vector<Op> ops;
    for (int i = 0; i < creations; ++i) ops.push_back(record(version, "create", newId()));
    for (int i = 0; i < 10 && !books_.empty(); ++i) {
      ops.push_back(record(version, "change", anyId()));
    }
    ops.push_back(record(version, "upsert", anyId()));
    ops.push_back(record(version, "upsert", newId()));
    for (int i = 0; i < 2 && books_.size() > 10; ++i) {
      std::string id = anyId();
      books_.erase(id);
      ops.push_back({"delete:" + id, false});
    }
    if (code_index_ && books_.size() > 2) {
      // Take another object's code, by a change and by a creation.
      std::string taken;
      for (const auto& [id, b] : books_) {
        if (!b.code.empty()) taken = b.code;
      }
      std::string target = anyId();
      if (!taken.empty() && books_[target].code != taken) {
        ops.push_back({"change:" + target + ":views=1,code=" + taken, true});
        ops.push_back({"create:" + newId() + ":code=" + taken, true});
      }
    }
    return ops;
  }

  std::vector<std::string> linesFor(int version) const {
    std::vector<std::string> out;
    for (const auto& [id, b] : books_) out.push_back(lineOf(version, id, b));
    return out;
  }

 private:
  std::string newId() { return absl::StrCat("b", 1000 + next_id_++); }
  std::string anyId() {
    auto it = books_.begin();
    std::advance(it, std::uniform_int_distribution<size_t>(0, books_.size() - 1)(rng_));
    return it->first;
  }
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

  // Chooses settings of fields `version` knows, applies the operation to the model and
  // returns it. Codes stay distinct, so only the deliberate violations conflict.
  Op record(int version, const std::string& kind, const std::string& id) {
    std::vector<std::string> fields = {"views", "rating", "code"};
    if (version < 3) fields.push_back("summary");
    if (version >= 2) {
      for (const char* f : {"title", "edition", "stats"}) fields.push_back(f);
    }
    bool exists = books_.count(id) != 0;
    Book b = kind == "create" || !exists ? Book{} : books_[id];
    std::vector<std::string> settings;
    // A new object gets every field; a change one or two.
    std::vector<std::string> chosen = fields;
    if (exists) {
      std::shuffle(chosen.begin(), chosen.end(), rng_);
      chosen.resize(1 + static_cast<size_t>(pick(2)));
    }
    static const float kRatings[] = {0.5f, 1.5f, 2.5f, 3.0f, 3.5f, 4.25f};
    for (const std::string& f : chosen) {
      if (f == "views") {
        b.views = pick(10);
        settings.push_back(absl::StrCat("views=", b.views));
      } else if (f == "rating") {
        b.rating = kRatings[pick(6)];
        settings.push_back(absl::StrCat("rating=", b.rating));
      } else if (f == "code") {
        b.code = absl::StrCat("c", next_code_++);
        settings.push_back("code=" + b.code);
      } else if (f == "summary") {
        b.summary = absl::StrCat("s", pick(1000));
        settings.push_back("summary=" + b.summary);
      } else if (f == "title") {
        b.title = absl::StrCat("t", pick(1000));
        settings.push_back("title=" + b.title);
      } else if (f == "edition") {
        b.edition = pick(4);
        settings.push_back(absl::StrCat("edition=", b.edition));
      } else if (f == "stats") {
        // Setting the nested table replaces all of it.
        b.likes = pick(10);
        b.shares = version >= 3 ? pick(10) : 0;
        settings.push_back(absl::StrCat("likes=", b.likes));
        if (version >= 3) settings.push_back(absl::StrCat("shares=", b.shares));
      }
    }
    books_[id] = b;
    return {absl::StrCat(kind, ":", id, ":", absl::StrJoin(settings, ",")), false};
  }

  std::mt19937 rng_;
  std::map<std::string, Book> books_;
  int next_id_ = 0;
  int next_code_ = 0;
  bool code_index_ = false;
};

// What a program printed.
struct ProgramRun {
  std::vector<std::string> results;     // "CODE MESSAGE" per op
  std::vector<std::string> mismatches;  // its queries against its filter
  std::vector<std::string> objects;     // "obj ..." lines
};

// Adds what a program prints to `run`, up to its "end" line.
absl::Status readUntilEnd(Child& child, ProgramRun* run) {
  while (true) {
    FLATSTORE_ASSIGN_OR_RETURN(std::string line, child.readLine());
    if (line == "end") return absl::OkStatus();
    if (absl::StartsWith(line, "op ")) {
      std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
      run->results.push_back(parts.size() > 2 ? parts[2] : "");
    } else if (absl::StartsWith(line, "obj ")) {
      run->objects.push_back(line);
    } else {
      run->mismatches.push_back(line);
    }
  }
}

// Runs `program` on the database at `path` with `ops` to its end.
absl::StatusOr<ProgramRun> runProgram(const char* program, const std::string& path,
                                      const std::vector<Op>& ops) {
  std::vector<std::string> args = {program, path};
  for (const Op& op : ops) args.push_back(op.text);
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<Child> child, Child::spawn(args));
  ProgramRun run;
  FLATSTORE_RETURN_IF_ERROR(readUntilEnd(*child, &run));
  FLATSTORE_RETURN_IF_ERROR(child->waitSuccess());
  return run;
}

// Runs the program of `version` with `ops` to its end.
absl::StatusOr<ProgramRun> runProgram(int version, const std::string& path,
                                      const std::vector<Op>& ops) {
  return runProgram(kPrograms[version - 1], path, ops);
}

// Has a program started with `serve` apply `ops`, then report.
absl::StatusOr<ProgramRun> askServed(Child& child, const std::vector<Op>& ops) {
  ProgramRun run;
  for (const Op& op : ops) {
    FLATSTORE_ASSIGN_OR_RETURN(std::string line, child.ask(op.text));
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
    run.results.push_back(parts.size() > 2 ? parts[2] : line);
  }
  FLATSTORE_RETURN_IF_ERROR(child.send("check"));
  FLATSTORE_RETURN_IF_ERROR(readUntilEnd(child, &run));
  return run;
}

// Each op succeeded, or was refused as the unique violation it was meant to be.
void expectResults(const std::vector<Op>& ops, const ProgramRun& run) {
  ASSERT_EQ(run.results.size(), ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].expect_conflict) {
      EXPECT_THAT(run.results[i], ::testing::StartsWith("ALREADY_EXISTS")) << ops[i].text;
      EXPECT_THAT(run.results[i], ::testing::HasSubstr(kTable)) << ops[i].text;
      EXPECT_THAT(run.results[i], ::testing::HasSubstr("'code'")) << ops[i].text;
    } else {
      EXPECT_EQ(run.results[i], "OK ") << ops[i].text;
    }
  }
  EXPECT_THAT(run.mismatches, ::testing::IsEmpty());
}

// What a program of `version` read equals the model.
void expectModel(int version, const ProgramRun& run, const Model& model) {
  SCOPED_TRACE(absl::StrCat("read by v", version));
  EXPECT_THAT(run.mismatches, ::testing::IsEmpty());
  EXPECT_EQ(run.objects, model.linesFor(version));
}

// The binary schema the SQLite file at `path` stores for the table.
std::string sqliteStoredSchema(const std::string& path) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT schema FROM flatstore_tables WHERE name = ?", -1, &s,
                           nullptr) == SQLITE_OK) {
      sqlite3_bind_text(s, 1, kTable, -1, SQLITE_STATIC);
      if (sqlite3_step(s) == SQLITE_ROW) {
        out.assign(static_cast<const char*>(sqlite3_column_blob(s, 0)),
                   static_cast<size_t>(sqlite3_column_bytes(s, 0)));
      }
    }
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return out;
}

// The lines a program of `version` prints for `books`, by id.
std::vector<std::string> linesOf(int version, const std::map<std::string, Book>& books) {
  std::vector<std::string> out;
  for (const auto& [id, b] : books) out.push_back(lineOf(version, id, b));
  return out;
}

// Each test on a fresh database of its engine.
class ProgramVersions : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override {
    db_ = std::make_unique<TestDatabase>(GetParam(), "versions");
    if (!db_->available()) GTEST_SKIP() << PgTestSchema::kSkipReason;
    ASSERT_TRUE(db_->ok());
    path_ = db_->location();
  }

  // What the database stores as the table's schema: the bytes on SQLite, their MD5 on
  // PostgreSQL; "" before a program used the table.
  std::string storedSchema() {
    if (db_->schema() == nullptr) return sqliteStoredSchema(path_);
    absl::StatusOr<std::string> md5 =
        db_->schema()->queryText(absl::StrCat("SELECT md5(schema) FROM ", db_->schema()->name(),
                                              ".flatstore_tables WHERE name = '", kTable, "'"));
    EXPECT_TRUE(md5.ok()) << md5.status();
    return md5.ok() ? *md5 : "";
  }

  // The database's integrity check: "ok" (SQLite's, which PostgreSQL has no counterpart
  // of that a test could run).
  std::string integrity() { return db_->schema() == nullptr ? integrityCheck(path_) : "ok"; }

  // Runs the program of `version` with `ops`; each ends as expected (expectResults).
  void write(int version, const std::vector<Op>& ops) {
    absl::StatusOr<ProgramRun> run = runProgram(version, path_, ops);
    ASSERT_OK(run);
    expectResults(ops, *run);
  }

  // A program of `version` reads exactly `books`, and each of its queries equals its
  // filter (before and after awaitIndexes).
  void expectRead(int version, const std::map<std::string, Book>& books) {
    SCOPED_TRACE(absl::StrCat("read by v", version));
    absl::StatusOr<ProgramRun> check = runProgram(version, path_, {});
    ASSERT_OK(check);
    EXPECT_THAT(check->mismatches, ::testing::IsEmpty());
    EXPECT_EQ(check->objects, linesOf(version, books));
  }

  std::unique_ptr<TestDatabase> db_;
  std::string path_;
};

TEST_P(ProgramVersions, TurnsOfThreeVersionsLoseNoFieldAndKeepEveryIndexExact) {
  const std::string& path = path_;
  Model model(20261207);
  const int kTurns[] = {1, 2, 3, 1, 2, 1, 3, 2, 1, 1};
  std::string newest;  // v3's schema, once v3 opened the file
  for (size_t turn = 0; turn < std::size(kTurns); ++turn) {
    int version = kTurns[turn];
    SCOPED_TRACE(absl::StrCat("turn ", turn, " by v", version));
    std::vector<Op> ops = model.turn(version, turn == 0 ? 40 : 5);
    absl::StatusOr<ProgramRun> run = runProgram(version, path, ops);
    ASSERT_OK(run);
    expectResults(ops, *run);
    // Every version reads the file after the turn, the newest first (v3's first read
    // adds its unique index on `code`).
    for (int reader = 3; reader >= 1; --reader) {
      absl::StatusOr<ProgramRun> check = runProgram(reader, path, {});
      ASSERT_OK(check);
      expectModel(reader, *check, model);
    }
    model.setCodeIndexExists();
    // An older program never replaces the newest schema in the file.
    if (newest.empty()) {
      absl::StatusOr<ProgramRun> newest_only = runProgram(3, path, {});
      ASSERT_OK(newest_only);
      newest = storedSchema();
    }
    EXPECT_TRUE(storedSchema() == newest) << "an older program replaced the stored schema";
  }
  EXPECT_EQ(integrity(), "ok");
}

// An older program that keeps its workspace open while a newer one opens the file for
// the first time (storing its schema, adding indexes, writing new fields) follows it at
// its next write.
TEST_P(ProgramVersions, RunningOlderProgramFollowsANewerOneThatOpensTheFile) {
  const std::string& path = path_;
  Model model(7);
  absl::StatusOr<std::unique_ptr<Child>> older = Child::spawn({kPrograms[0], path, "serve"});
  ASSERT_OK(older);
  absl::StatusOr<std::string> ready = (*older)->readLine();
  ASSERT_OK(ready);
  ASSERT_EQ(*ready, "ready");
  std::vector<Op> ops = model.turn(1, 30);
  absl::StatusOr<ProgramRun> first = askServed(**older, ops);
  ASSERT_OK(first);
  expectResults(ops, *first);
  expectModel(1, *first, model);

  ops = model.turn(3, 5);
  absl::StatusOr<ProgramRun> newer = runProgram(3, path, ops);
  ASSERT_OK(newer);
  expectResults(ops, *newer);
  model.setCodeIndexExists();

  ops = model.turn(1, 5);
  absl::StatusOr<ProgramRun> again = askServed(**older, ops);
  ASSERT_OK(again);
  expectResults(ops, *again);
  expectModel(1, *again, model);
  for (int reader = 3; reader >= 2; --reader) {
    absl::StatusOr<ProgramRun> check = runProgram(reader, path, {});
    ASSERT_OK(check);
    expectModel(reader, *check, model);
  }
  (*older)->closeInput();
  EXPECT_OK((*older)->waitSuccess());
}

// An older program's change touches only the fields it sets: the fields it does not
// know (a string, an indexed int, a nested table and a field added to it) keep what the
// newer program wrote.
TEST_P(ProgramVersions, OlderProgramsChangeKeepsTheFieldsItDoesNotKnow) {
  std::vector<Op> ops = {
      {"create:b1:views=1,rating=1.5,code=c1,title=t1,edition=2,likes=3,shares=4", false},
      {"create:b2:views=2,title=t2,edition=1", false}};
  ASSERT_NO_FATAL_FAILURE(write(3, ops));
  ops = {{"change:b1:views=7", false}, {"upsert:b2:rating=2.5", false}};
  ASSERT_NO_FATAL_FAILURE(write(1, ops));
  std::map<std::string, Book> books;
  books["b1"] = {7, 1.5f, "c1", "", "t1", 2, 3, 4};
  books["b2"] = {2, 2.5f, "", "", "t2", 1, 0, 0};
  for (int reader = 3; reader >= 1; --reader) expectRead(reader, books);
}

// The indexes a newer program added (on `rating`, `edition`, and the unique one on
// `code`) stay exact under an older program's creations, changes and deletions: every
// query of the newer program on them equals its brute-force filter, before any
// back-fill could have mended them.
TEST_P(ProgramVersions, OlderProgramsWritesKeepTheIndexesItDoesNotDeclare) {
  std::vector<Op> ops;
  for (int i = 0; i < 6; ++i) {
    ops.push_back({absl::StrCat("create:b", i, ":views=", i, ",rating=", i % 2 == 0 ? 1.5 : 3.5,
                                ",code=c", i, ",edition=", i % 3),
                   false});
  }
  ASSERT_NO_FATAL_FAILURE(write(3, ops));
  ops = {{"create:b6:views=3,rating=3.5,code=c9", false},
         {"create:b7:rating=1.5", false},
         {"change:b0:rating=3.5,code=c7", false},
         {"change:b1:rating=1.5", false},
         {"upsert:b2:rating=4.25,code=c8", false},
         {"delete:b3", false},
         {"delete:b5", false}};
  ASSERT_NO_FATAL_FAILURE(write(1, ops));
  // Read by the newer program: its queries on rating, edition and code equal their
  // filters (ProgramRun::mismatches), and the objects are as written.
  std::map<std::string, Book> books;
  books["b0"] = {0, 3.5f, "c7", "", "", 0, 0, 0};
  books["b1"] = {1, 1.5f, "c1", "", "", 1, 0, 0};
  books["b2"] = {2, 4.25f, "c8", "", "", 2, 0, 0};
  books["b4"] = {4, 1.5f, "c4", "", "", 1, 0, 0};
  books["b6"] = {3, 3.5f, "c9", "", "", 0, 0, 0};
  books["b7"] = {0, 1.5f, "", "", "", 0, 0, 0};
  expectRead(3, books);
}

// A unique index only the newer program declares refuses an older program's creation
// and change that would repeat a value, and takes a value the older program freed.
TEST_P(ProgramVersions, UniqueIndexOfANewerProgramHoldsForAnOlderOne) {
  std::vector<Op> ops = {{"create:b1:code=c1", false}, {"create:b2:code=c2", false}};
  ASSERT_NO_FATAL_FAILURE(write(3, ops));
  ops = {{"create:b3:code=c1", true},
         {"change:b2:views=1,code=c1", true},
         {"change:b2:code=c5", false},
         {"create:b4:code=c2", false}};
  ASSERT_NO_FATAL_FAILURE(write(1, ops));
  std::map<std::string, Book> books;
  books["b1"].code = "c1";
  books["b2"].code = "c5";
  books["b4"].code = "c2";
  expectRead(3, books);
}

// A program whose schema diverged from the stored one (each lacks a field of the
// other) is refused with FailedPrecondition naming the table and the field, and writes
// nothing: the stored schema and objects stay as they were.
TEST_P(ProgramVersions, DivergedSchemaIsRefused) {
  ASSERT_NO_FATAL_FAILURE(write(2, {{"create:b1:views=1,title=t1", false}}));
  const std::string stored = storedSchema();
  ASSERT_FALSE(stored.empty());
  absl::StatusOr<ProgramRun> diverged = runProgram(kDiverged, path_, {{"create:b2", false}});
  ASSERT_OK(diverged);
  ASSERT_EQ(diverged->results.size(), 1u);
  EXPECT_THAT(diverged->results[0], ::testing::StartsWith("FAILED_PRECONDITION"));
  EXPECT_THAT(diverged->results[0], ::testing::HasSubstr(kTable));
  EXPECT_THAT(diverged->results[0], ::testing::HasSubstr("Book.pages"));
  EXPECT_THAT(diverged->objects, ::testing::IsEmpty());
  EXPECT_TRUE(storedSchema() == stored) << "the diverged program replaced the stored schema";
  std::map<std::string, Book> books;
  books["b1"].views = 1;
  books["b1"].title = "t1";
  expectRead(2, books);
}

// The database keeps the newest schema: a newer program replaces an older one's, and an
// older program that opens it afterwards leaves it.
TEST_P(ProgramVersions, OlderProgramKeepsTheNewerStoredSchema) {
  ASSERT_NO_FATAL_FAILURE(write(1, {{"create:b1", false}}));
  const std::string v1 = storedSchema();
  ASSERT_NO_FATAL_FAILURE(write(3, {{"create:b2", false}}));
  const std::string v3 = storedSchema();
  EXPECT_FALSE(v3 == v1) << "the newer program did not store its schema";
  ASSERT_NO_FATAL_FAILURE(write(1, {{"create:b3", false}, {"change:b2:views=2", false}}));
  EXPECT_TRUE(storedSchema() == v3) << "the older program replaced the stored schema";
  ASSERT_NO_FATAL_FAILURE(write(2, {{"change:b1:views=3", false}}));
  EXPECT_TRUE(storedSchema() == v3) << "the older program replaced the stored schema";
}

// An older program that keeps changing objects while a newer one opens the database
// (storing its schema, adding three indexes to the table in use, one unique, and setting
// a field the older one does not know on the same objects) loses none of the newer
// program's fields and leaves every index exact, whatever the interleaving: its commits
// notice the newer catalog before they write, and a change encoded before runs again.
TEST_P(ProgramVersions, OlderProgramWritingWhileANewerOneOpens) {
  absl::StatusOr<std::unique_ptr<Child>> older = Child::spawn({kPrograms[0], path_, "serve"});
  ASSERT_OK(older);
  absl::StatusOr<std::string> ready = (*older)->readLine();
  ASSERT_OK(ready);
  ASSERT_EQ(*ready, "ready");
  constexpr int kObjects = 20;
  constexpr int kRounds = 5;
  std::map<std::string, Book> books;
  std::vector<Op> ops;
  for (int i = 0; i < kObjects; ++i) {
    ops.push_back({absl::StrCat("create:b", i, ":views=1,code=c", i), false});
  }
  absl::StatusOr<ProgramRun> created = askServed(**older, ops);
  ASSERT_OK(created);
  expectResults(ops, *created);
  // The older program's changes are all sent at once; it applies them one transaction
  // after the other while the newer program runs.
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kObjects; ++i) {
      std::string id = absl::StrCat("b", i);
      Book& b = books[id];
      b.views = (round + i) % 10;
      b.rating = round % 2 == 0 ? 1.5f : 3.5f;
      b.code = absl::StrCat("c", i, "r", round);
      ASSERT_OK((*older)->send(
          absl::StrCat("change:", id, ":views=", b.views, ",rating=", b.rating, ",code=", b.code)));
    }
  }
  ops.clear();
  for (int i = 0; i < kObjects; ++i) {
    std::string id = absl::StrCat("b", i);
    books[id].title = absl::StrCat("t", i);
    books[id].edition = i % 3;
    ops.push_back({absl::StrCat("change:", id, ":title=t", i, ",edition=", i % 3), false});
  }
  // Its queries may race the older program's commits; only its results count here.
  absl::StatusOr<ProgramRun> newer = runProgram(3, path_, ops);
  ASSERT_OK(newer);
  EXPECT_THAT(newer->results, ::testing::Each(::testing::Eq("OK "))) << "the newer program";
  for (int n = 0; n < kRounds * kObjects; ++n) {
    absl::StatusOr<std::string> answer = (*older)->readLine();
    ASSERT_OK(answer);
    EXPECT_EQ(*answer, "op 0 OK ") << "change " << n << " of the older program";
  }
  (*older)->closeInput();
  EXPECT_OK((*older)->waitSuccess());
  for (int reader = 3; reader >= 1; --reader) expectRead(reader, books);
}

// A newer program that adds indexes to a table in use waits for a write to it under
// way, and then sees the object it wrote: here an older program's first object, whose
// commit a lock on the change log holds back after its row was written. Had the newer
// program not waited, it would have found the table empty and taken its new indexes as
// complete without the object's values. (PostgreSQL only: SQLite's single write lock
// orders the two, so the suite runs on PostgreSQL alone.)
class ProgramVersionsOnPostgres : public ProgramVersions {};

TEST_P(ProgramVersionsOnPostgres, IndexAddedToATableInUseWaitsForAWriteUnderWay) {
  ASSERT_NE(db_->schema(), nullptr);
  PgTestSchema& admin = *db_->schema();
  absl::StatusOr<std::unique_ptr<Child>> older = Child::spawn({kPrograms[0], path_, "serve"});
  ASSERT_OK(older);
  absl::StatusOr<std::string> ready = (*older)->readLine();
  ASSERT_OK(ready);
  ASSERT_EQ(*ready, "ready");
  // The table exists and is empty.
  for (const char* op : {"create:bx", "delete:bx"}) {
    absl::StatusOr<std::string> answer = (*older)->ask(op);
    ASSERT_OK(answer);
    ASSERT_EQ(*answer, "op 0 OK ") << op;
  }
  // How many backends wait for a lock of this database now (a table of its schema, or
  // an advisory lock of its lock space): tests of other databases may wait meanwhile.
  const std::string ours = absl::StrCat(
      "SELECT count(*)::text FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid() AND "
      "((locktype = 'relation' AND relation IN (SELECT c.oid FROM pg_class c JOIN pg_namespace "
      "n ON n.oid = c.relnamespace WHERE n.nspname = '",
      admin.name(),
      "')) OR (locktype = 'advisory' AND classid = ", internal::pgLockSpace(admin.name()), "))");
  auto waiting = [&admin, &ours]() -> int {
    absl::StatusOr<std::string> n = admin.queryText(ours);
    EXPECT_OK(n);
    return n.ok() ? std::stoi(*n) : -1;
  };
  auto awaitWaiting = [&waiting](int n) {
    const absl::Time deadline = absl::Now() + kBoundedWait;
    while (waiting() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
    return waiting() >= n;
  };
  ASSERT_OK(admin.execute(
      absl::StrCat("BEGIN; LOCK TABLE ", admin.name(), ".flatstore_changes IN EXCLUSIVE MODE")));
  bool locked = true;
  absl::Cleanup unlock = [&] {
    if (locked) EXPECT_OK(admin.execute("ROLLBACK"));
  };
  ASSERT_OK((*older)->send("create:b0:code=c0"));
  ASSERT_TRUE(awaitWaiting(1)) << "the older program's commit never reached the change log";
  absl::StatusOr<std::unique_ptr<Child>> newer = Child::spawn({kPrograms[2], path_});
  ASSERT_OK(newer);
  ASSERT_TRUE(awaitWaiting(2)) << "the newer program did not wait for the write under way";
  locked = false;
  ASSERT_OK(admin.execute("COMMIT"));
  absl::StatusOr<std::string> answer = (*older)->readLine();
  ASSERT_OK(answer);
  EXPECT_EQ(*answer, "op 0 OK ");
  ProgramRun run;
  ASSERT_OK(readUntilEnd(**newer, &run));
  EXPECT_OK((*newer)->waitSuccess());
  // Its queries on the new indexes (code, edition, rating) equal their filters.
  EXPECT_THAT(run.mismatches, ::testing::IsEmpty());
  std::map<std::string, Book> books;
  books["b0"].code = "c0";
  EXPECT_EQ(run.objects, linesOf(3, books));
  (*older)->closeInput();
  EXPECT_OK((*older)->waitSuccess());
  expectRead(3, books);
}

INSTANTIATE_TEST_SUITE_P(Engines, ProgramVersions,
                         ::testing::Values(Engine::kSqlite, Engine::kPostgres), engineName);
INSTANTIATE_TEST_SUITE_P(Engines, ProgramVersionsOnPostgres, ::testing::Values(Engine::kPostgres),
                         engineName);

}  // namespace
}  // namespace flatstore::testing
