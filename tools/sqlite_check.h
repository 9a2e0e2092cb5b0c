// SQLite's integrity check for `flatstore check`, cut into pieces that run on several
// threads, each on a read-only connection of its own, beside the tool's object scan.
//
// PRAGMA integrity_check is two kinds of work: a walk of every B-tree of the file (cell
// and page structure, every page used exactly once, the freelist, the NOT NULL and
// column type rules, the entry count of every SQL index) and, per row of every table, a
// look-up in each of the table's SQL indexes (which is most of its time on a large
// file). The pieces are PRAGMA quick_check, which is the first kind for the whole file,
// and PRAGMA integrity_check(TABLE) for every table, which is both kinds for that
// table's B-trees alone. Together they check everything integrity_check checks: the
// whole-file accounting in quick_check, every index look-up in the table's piece.
//
// With --quick the one piece is PRAGMA quick_check. SQLite before 3.33 reads
// integrity_check(TABLE) as a full check; there the one piece is PRAGMA integrity_check.
//
// Thread-safety: the object is created, finished and destroyed by one thread; its
// workers share the piece queue and the results under mu_.
#ifndef FLATSTORE_TOOLS_SQLITE_CHECK_H_
#define FLATSTORE_TOOLS_SQLITE_CHECK_H_

#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "runtime/sqlite.h"

namespace flatstore::cli {

class SqliteCheck {
 public:
  // The pieces for the file on `c` (whose table list it reads), started at once on
  // `threads` worker threads (at least one).
  static absl::StatusOr<std::unique_ptr<SqliteCheck>> start(internal::Connection& c, bool quick,
                                                            int threads);
  ~SqliteCheck();
  SqliteCheck(const SqliteCheck&) = delete;
  SqliteCheck& operator=(const SqliteCheck&) = delete;

  // Runs the pieces no worker has taken yet on the calling thread too, then waits for
  // the workers. The problem lines SQLite reported ("ok" left out), each distinct line
  // once, in piece order; or the first error that stopped a piece.
  absl::StatusOr<std::vector<std::string>> finish();

  // The SQL of each piece, in the order they are taken.
  const std::vector<std::string>& pieces() const { return pieces_; }

 private:
  SqliteCheck(std::string path, std::vector<std::string> pieces);
  // Takes pieces until none is left, on a connection of its own.
  void work() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status runPiece(internal::Connection& c, size_t piece);

  const std::string path_;
  const std::vector<std::string> pieces_;
  absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  // Per piece, its problem lines.
  std::vector<std::vector<std::string>> lines_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_;
};

}  // namespace flatstore::cli

#endif  // FLATSTORE_TOOLS_SQLITE_CHECK_H_
