// A program built from one version of schemas/versions (FLATSTORE_BOOK_VERSION 1, 2 or
// 3), for versions_test: programs of different builds writing one database in turns.
//
//   versions_vN LOCATION [OP...]
//   versions_vN LOCATION serve
//
// LOCATION is what Workspace::open takes: a file's path or a postgresql:// URI.
//
// Applies each OP in a transaction of its own and prints "op I CODE MESSAGE" (CODE as
// absl::StatusCodeToString). An OP is KIND:ID[:FIELD=VALUE,...] with KIND create,
// change (changeOf the object as read), upsert or delete; FIELD is a field this version
// knows (views, rating, code, summary, title, edition; likes and shares set `stats`).
// Then checks every query on the indexed fields this version knows against a
// brute-force filter of all objects, before and after awaitIndexes(), printing
// "mismatch ..." for each difference, prints every object as
// "obj ID FIELD=VALUE ..." with the fields this version knows, and "end". With
// `serve` it prints "ready" and keeps its workspace open, reading one OP per line from
// stdin (answered by its "op" line), or "check" (answered as above), until EOF.
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "book_flatstore.h"
#include "flatstore/workspace.h"

namespace {

namespace v = flatstore::test::versions;
using F = v::BookFields;

#ifndef FLATSTORE_BOOK_VERSION
#error "FLATSTORE_BOOK_VERSION must be 1, 2 or 3"
#endif
constexpr int kVersion = FLATSTORE_BOOK_VERSION;

int intOf(const std::string& s) {
  int n = 0;
  if (!absl::SimpleAtoi(s, &n)) std::abort();
  return n;
}

// Applies FIELD=VALUE settings to a request; false for a field this version lacks.
bool apply(v::BookChangeRequest& r, const std::string& settings) {
  if (settings.empty()) return true;
  [[maybe_unused]] int likes = -1;
  [[maybe_unused]] int shares = -1;
  for (absl::string_view setting : absl::StrSplit(settings, ',')) {
    std::pair<std::string, std::string> kv = absl::StrSplit(setting, absl::MaxSplits('=', 1));
    const std::string& f = kv.first;
    const std::string& value = kv.second;
    if (f == "views") {
      r.setViews(intOf(value));
    } else if (f == "rating") {
      float x = 0;
      if (!absl::SimpleAtof(value, &x)) return false;
      r.setRating(x);
    } else if (f == "code") {
      r.setCode(value);
#if FLATSTORE_BOOK_VERSION < 3
    } else if (f == "summary") {
      r.setSummary(value);
#endif
#if FLATSTORE_BOOK_VERSION >= 2
    } else if (f == "title") {
      r.setTitle(value);
    } else if (f == "edition") {
      r.setEdition(intOf(value));
    } else if (f == "likes") {
      likes = intOf(value);
#endif
#if FLATSTORE_BOOK_VERSION >= 3
    } else if (f == "shares") {
      shares = intOf(value);
#endif
    } else {
      return false;
    }
  }
#if FLATSTORE_BOOK_VERSION >= 2
  if (likes >= 0 || shares >= 0) {
    v::StatsT stats;
    stats.likes = likes < 0 ? 0 : likes;
#if FLATSTORE_BOOK_VERSION >= 3
    stats.shares = shares < 0 ? 0 : shares;
#endif
    r.setStats(stats);
  }
#endif
  return true;
}

absl::Status runOp(flatstore::Workspace& ws, const std::string& op) {
  std::vector<std::string> parts = absl::StrSplit(op, absl::MaxSplits(':', 2));
  if (parts.size() < 2) return absl::InvalidArgumentError("bad op " + op);
  const std::string kind = parts[0];
  const std::string id = parts[1];
  const std::string settings = parts.size() > 2 ? parts[2] : "";
  auto done =
      ws.performChangesAndWait<v::Book>([&](flatstore::TransactionContext& txn) -> absl::Status {
        if (kind == "create" || kind == "upsert") {
          auto r =
              kind == "create" ? v::BookChangeRequest::creation() : v::BookChangeRequest::upsert();
          r.setId(id);
          if (!apply(r, settings)) return absl::InvalidArgumentError("unknown field in " + op);
          return txn.submit(r).status();
        }
        auto current = txn.get<v::Book>(id);
        if (!current.ok()) return current.status();
        if (*current == nullptr) return absl::NotFoundError("no book " + id);
        if (kind == "delete")
          return txn.submit(v::BookChangeRequest::deletionOf(**current)).status();
        auto r = v::BookChangeRequest::changeOf(**current);
        if (!apply(r, settings)) return absl::InvalidArgumentError("unknown field in " + op);
        return txn.submit(r).status();
      });
  return done.status();
}

using Book = std::shared_ptr<const v::BookEntity>;

// One query on an indexed field and the filter it must equal.
struct Check {
  std::string name;
  decltype(F::views == 0) where;
  std::function<bool(const v::BookEntity&)> matches;
};

std::vector<Check> checks() {
  std::vector<Check> out;
  for (int k : {0, 3, 7}) {
    out.push_back({absl::StrCat("views == ", k), F::views == k,
                   [k](const v::BookEntity& b) { return b.views() == k; }});
    out.push_back({absl::StrCat("views > ", k), F::views > k,
                   [k](const v::BookEntity& b) { return b.views() > k; }});
  }
#if FLATSTORE_BOOK_VERSION >= 2
  out.push_back(
      {"rating > 3.0", F::rating > 3.0, [](const v::BookEntity& b) { return b.rating() > 3.0; }});
  out.push_back({"rating == 1.5", F::rating == 1.5,
                 [](const v::BookEntity& b) { return b.rating() == 1.5; }});
  for (int k : {0, 1, 2}) {
    out.push_back({absl::StrCat("edition == ", k), F::edition == k,
                   [k](const v::BookEntity& b) { return b.edition() == k; }});
  }
  out.push_back(
      {"edition >= 2", F::edition >= 2, [](const v::BookEntity& b) { return b.edition() >= 2; }});
#endif
#if FLATSTORE_BOOK_VERSION >= 3
  for (const char* c : {"c1", "c5", "c9"}) {
    std::string code = c;
    out.push_back({absl::StrCat("code == ", code), F::code == code,
                   [code](const v::BookEntity& b) { return b.hasCode() && b.code() == code; }});
  }
  out.push_back({"code > c5", F::code > "c5",
                 [](const v::BookEntity& b) { return b.hasCode() && b.code() > "c5"; }});
  out.push_back(
      {"code is null", F::code.isNull(), [](const v::BookEntity& b) { return !b.hasCode(); }});
#endif
  return out;
}

// Prints a "mismatch" line for every query whose result differs from the filter.
bool checkQueries(flatstore::Workspace& ws, const char* when) {
  auto all = ws.fetch<v::Book>().all();
  if (!all.ok()) {
    std::cout << "mismatch " << when << ": fetching all: " << all.status() << "\n";
    return false;
  }
  bool ok = true;
  for (const Check& c : checks()) {
    std::vector<std::string> want;
    for (const Book& b : *all) {
      if (c.matches(*b)) want.emplace_back(b->id());
    }
    auto got = ws.fetch<v::Book>().where(c.where).orderBy(F::id.ascending()).all();
    if (!got.ok()) {
      std::cout << "mismatch " << when << " " << c.name << ": " << got.status() << "\n";
      ok = false;
      continue;
    }
    std::vector<std::string> ids;
    for (const Book& b : *got) ids.emplace_back(b->id());
    std::sort(want.begin(), want.end());
    auto count = ws.fetch<v::Book>().where(c.where).count();
    if (ids != want || !count.ok() || *count != static_cast<int64_t>(want.size())) {
      std::cout << "mismatch " << when << " " << c.name << ": " << ids.size() << " of "
                << want.size() << " objects\n";
      ok = false;
    }
  }
  return ok;
}

void printObjects(flatstore::Workspace& ws) {
  auto all = ws.fetch<v::Book>().orderBy(F::id.ascending()).all();
  if (!all.ok()) {
    std::cout << "mismatch listing: " << all.status() << "\n";
    return;
  }
  for (const Book& b : *all) {
    std::cout << "obj " << b->id() << " views=" << b->views() << " rating=" << b->rating()
              << " code=" << b->code();
#if FLATSTORE_BOOK_VERSION < 3
    std::cout << " summary=" << b->summary();
#endif
#if FLATSTORE_BOOK_VERSION >= 2
    const auto* stats = b->view().stats();
    std::cout << " title=" << b->title() << " edition=" << b->edition()
              << " likes=" << (stats == nullptr ? 0 : stats->likes());
#endif
#if FLATSTORE_BOOK_VERSION >= 3
    std::cout << " shares=" << (stats == nullptr ? 0 : stats->shares());
#endif
    std::cout << "\n";
  }
}

void printResult(int i, const absl::Status& s) {
  std::cout << "op " << i << " " << absl::StatusCodeToString(s.code()) << " " << s.message()
            << "\n";
}

// Checks the queries, lists the objects and ends with "end".
void report(flatstore::Workspace& ws) {
  checkQueries(ws, "before awaitIndexes");
  ws.awaitIndexes();
  checkQueries(ws, "after awaitIndexes");
  printObjects(ws);
  std::cout << "end" << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  alarm(120);
  if (argc < 2) {
    std::fprintf(stderr, "usage: versions_v%d LOCATION [OP...]\n", kVersion);
    return 2;
  }
  auto ws = flatstore::Workspace::open(argv[1]);
  if (!ws.ok()) {
    std::cout << "mismatch open: " << ws.status() << "\nend" << std::endl;
    return 1;
  }
  if (argc == 3 && std::string(argv[2]) == "serve") {
    // A long-running program: it keeps its workspace while other programs come and go.
    std::cout << "ready" << std::endl;
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line == "check") {
        report(**ws);
      } else {
        printResult(0, runOp(**ws, line));
        std::cout.flush();
      }
    }
    return 0;
  }
  for (int i = 2; i < argc; ++i) printResult(i - 2, runOp(**ws, argv[i]));
  report(**ws);
  return 0;
}
