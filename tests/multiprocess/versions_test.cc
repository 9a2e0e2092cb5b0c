// Programs built from different versions of one schema share a file (design: "Program
// versions sharing a file"). Three real programs, built from schemas/versions/v1..v3
// (an added field and nested table, an added index, an added unique index, a
// deprecated field, a field added to a nested table), write one file in turns:
// creations, changes, upserts, deletions, and unique violations on an index the
// writing program may not know. After each turn every version lists all objects and
// runs its queries: each query equals a brute-force filter, and each object holds what
// a model of all turns says, in every field the version knows (so no version's write
// lost a field of another).
#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/multiprocess/process_util.h"

namespace flatstore::testing {
namespace {

const char* const kPrograms[] = {FLATSTORE_VERSIONS_V1, FLATSTORE_VERSIONS_V2,
                                 FLATSTORE_VERSIONS_V3};
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

// Runs the program of `version` with `ops` to its end.
absl::StatusOr<ProgramRun> runProgram(int version, const std::string& path,
                                      const std::vector<Op>& ops) {
  std::vector<std::string> args = {kPrograms[version - 1], path};
  for (const Op& op : ops) args.push_back(op.text);
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<Child> child, Child::spawn(args));
  ProgramRun run;
  FLATSTORE_RETURN_IF_ERROR(readUntilEnd(*child, &run));
  FLATSTORE_RETURN_IF_ERROR(child->waitSuccess());
  return run;
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

// The binary schema the file stores for the table.
std::string storedSchema(const std::string& path) {
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

TEST(ProgramVersions, TurnsOfThreeVersionsLoseNoFieldAndKeepEveryIndexExact) {
  TempDir dir;
  std::string path = dir.file("books.db");
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
      newest = storedSchema(path);
    }
    EXPECT_TRUE(storedSchema(path) == newest) << "an older program replaced the stored schema";
  }
  EXPECT_EQ(integrityCheck(path), "ok");
}

// An older program that keeps its workspace open while a newer one opens the file for
// the first time (storing its schema, adding indexes, writing new fields) follows it at
// its next write.
TEST(ProgramVersions, RunningOlderProgramFollowsANewerOneThatOpensTheFile) {
  TempDir dir;
  std::string path = dir.file("books.db");
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

}  // namespace
}  // namespace flatstore::testing
