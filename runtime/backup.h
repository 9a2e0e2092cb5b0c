// Online backup: a consistent copy of a database file taken while other connections and
// processes keep writing to it.
//
// The copy uses SQLite's online backup API inside one read transaction on the source:
// the source is read at a single snapshot (WAL mode lets writers go on meanwhile, and
// the held snapshot keeps checkpoints from overwriting pages it still needs), pages are
// copied in steps so that progress can be reported, and nothing restarts when other
// processes commit. VACUUM INTO would give the same consistency but rebuilds every
// table and index row by row, which costs far more than copying pages and cannot report
// progress. The copy is written to `dest` + ".partial" and renamed to `dest` once
// complete, so `dest` never holds half a copy.
//
// Thread-safety: stateless; each call opens connections of its own.
#ifndef FLATSTORE_RUNTIME_BACKUP_H_
#define FLATSTORE_RUNTIME_BACKUP_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"

namespace flatstore::internal {

// Called after each step with the pages copied so far and the total.
using BackupProgress = std::function<void(int64_t copied_pages, int64_t total_pages)>;

// Copies the database at `source` to the new file `dest`. AlreadyExists when `dest`
// exists; NotFound when `source` does not or `dest`'s directory is missing; the SQLite
// error (naming the file) otherwise. On error no `dest` is left behind.
absl::Status backupDatabase(const std::string& source, const std::string& dest,
                            const BackupProgress& progress = {});

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_BACKUP_H_
