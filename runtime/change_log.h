// The change log: what each commit changed, for other processes and for changesSince().
//
// One row per commit in flatstore_changes(seq, origin, changes, last_vs), written by
// every commit, so the newest row carries the commit sequence (sequences are contiguous
// from the first commit of format 2 on). `origin` identifies the workspace instance that
// wrote it (so a process skips its own commits), `last_vs` is the versionstamp of the
// newest change committed so far (carried over by commits that changed nothing), and
// `changes` packs one record per changed object:
//   int64 table id | int64 rowid | uint16 position | uint8 op (0 upsert, 1 delete)
//   | for deletes: uint8 key count, then per value uint8 kind and its payload
//     (integer: int64, real: float64, text: uint32 length + bytes)
// all little-endian. The writer prunes rows older than a bounded number of commits and
// records the highest pruned sequence in flatstore_meta('log_pruned_through').
#ifndef FLATSTORE_RUNTIME_CHANGE_LOG_H_
#define FLATSTORE_RUNTIME_CHANGE_LOG_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "flatstore/entity.h"
#include "flatstore/value.h"
#include "runtime/sqlite.h"

namespace flatstore::internal {

struct LogRecord {
  int64_t table_id = 0;
  int64_t rowid = 0;
  uint16_t position = 0;
  bool deleted = false;
  std::vector<Value> key;  // deletes only: the primary key (empty for automatic ids)
};

struct LogEntry {
  uint64_t sequence = 0;
  int64_t origin = 0;
  std::vector<LogRecord> records;
};

void appendLogRecord(const LogRecord& record, std::string* out);
// DataLoss when `bytes` is not a well-formed change list.
absl::StatusOr<std::vector<LogRecord>> decodeLogRecords(std::span<const uint8_t> bytes);

// Reads the log entries with sequence > `after`, in order, inside the caller's read
// transaction; those written by `skip_origin` are left out, unread.
absl::StatusOr<std::vector<LogEntry>> readLogAfter(Connection& c, uint64_t after,
                                                   std::optional<int64_t> skip_origin = {});

// The newest commit as the caller's transaction sees it (the log always keeps its row).
struct LogHead {
  uint64_t sequence = 0;
  Versionstamp last_change;
};
absl::StatusOr<LogHead> readLogHead(Connection& c, std::string_view what);

// Whether a commit after `after` by an origin other than `own_origin` changed a table
// whose id is in `table_ids`: returns the index of the first such id, or -1. Commits
// of `own_origin` are skipped: inside one workspace, the table queues keep other
// closures off a transaction's tables. When the log no longer holds every commit after
// `after` (it was pruned), answers 0: assume a change rather than miss one.
absl::StatusOr<int> firstChangedSince(Connection& c, uint64_t after, int64_t own_origin,
                                      std::span<const int64_t> table_ids);

// Inside the writer's transaction: appends the row of commit `seq`, written by `origin`,
// with `changes` (records from appendLogRecord) and `last_change`, the newest change
// committed so far. Every 256 commits it also drops the rows more than `retention`
// commits old (the newest row always stays) and records how far in
// flatstore_meta('log_pruned_through').
absl::Status writeLogRow(Connection& c, uint64_t seq, int64_t origin, std::string_view changes,
                         Versionstamp last_change, int64_t retention);

// The highest sequence whose log entry was pruned (0: none).
absl::StatusOr<uint64_t> logPrunedThrough(Connection& c);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_CHANGE_LOG_H_
