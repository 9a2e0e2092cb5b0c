#include "tools/sqlite_check.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "tools/cli.h"

namespace flatstore::cli {

using internal::Connection;
using internal::Statement;

absl::StatusOr<std::unique_ptr<SqliteCheck>> SqliteCheck::start(Connection& c, bool quick,
                                                                int threads) {
  std::vector<std::string> pieces;
  if (quick) {
    pieces.push_back("PRAGMA quick_check");
  } else if (sqlite3_libversion_number() < 3033000) {
    pieces.push_back("PRAGMA integrity_check");
  } else {
    pieces.push_back("PRAGMA quick_check");
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement s,
        c.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rootpage",
                  c.path()));
    while (true) {
      FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(c.path()));
      if (!row) break;
      pieces.push_back(
          absl::StrCat("PRAGMA integrity_check(", internal::quoteIdentifier(s.columnText(0)), ")"));
    }
  }
  std::unique_ptr<SqliteCheck> check(new SqliteCheck(c.path(), std::move(pieces)));
  for (int i = 0; i < std::max(threads, 1); ++i) {
    check->workers_.emplace_back([p = check.get()] { p->work(); });
  }
  return check;
}

SqliteCheck::SqliteCheck(std::string path, std::vector<std::string> pieces)
    : path_(std::move(path)), pieces_(std::move(pieces)), lines_(pieces_.size()) {}

SqliteCheck::~SqliteCheck() {
  {
    // Pieces not yet taken are dropped (finish() was not called, e.g. after an error).
    absl::MutexLock lock(&mu_);
    next_ = pieces_.size();
  }
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
}

void SqliteCheck::work() {
  std::unique_ptr<Connection> c;
  while (true) {
    size_t piece;
    {
      absl::MutexLock lock(&mu_);
      if (next_ == pieces_.size() || !status_.ok()) return;
      piece = next_++;
    }
    absl::Status status;
    if (c == nullptr) {
      absl::StatusOr<std::unique_ptr<Connection>> opened = openReadOnly(path_);
      if (opened.ok()) {
        c = std::move(*opened);
      } else {
        status = opened.status();
      }
    }
    if (status.ok()) status = runPiece(*c, piece);
    if (!status.ok()) {
      absl::MutexLock lock(&mu_);
      if (status_.ok()) status_ = status;
      return;
    }
  }
}

absl::Status SqliteCheck::runPiece(Connection& c, size_t piece) {
  const std::string& sql = pieces_[piece];
  absl::StatusOr<Statement> s = c.prepare(sql, path_);
  if (!s.ok()) {
    // A table dropped by another process since the list was read: nothing to check.
    if (absl::StrContains(s.status().message(), "no such table")) return absl::OkStatus();
    return s.status();
  }
  std::vector<std::string> lines;
  while (true) {
    FLATSTORE_ASSIGN_OR_RETURN(bool row, s->step(path_));
    if (!row) break;
    std::string_view line = s->columnText(0);
    if (line != "ok") lines.emplace_back(line);
  }
  absl::MutexLock lock(&mu_);
  lines_[piece] = std::move(lines);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> SqliteCheck::finish() {
  work();
  for (std::thread& t : workers_) t.join();
  absl::MutexLock lock(&mu_);
  if (!status_.ok()) return status_;
  // A damaged page shows in quick_check and in its table's piece alike: print it once.
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (std::vector<std::string>& piece : lines_) {
    for (std::string& line : piece) {
      if (seen.insert(line).second) out.push_back(std::move(line));
    }
  }
  return out;
}

}  // namespace flatstore::cli
