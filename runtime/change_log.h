// The change log: what each commit changed, for other processes and for changesSince().
//
// One row per commit in flatstore_changes(seq, origin, changes): `origin` identifies the
// workspace instance that wrote it (so a process skips its own commits), and `changes`
// packs one record per changed object:
//   int64 table id | int64 rowid | uint16 position | uint8 op (0 upsert, 1 delete)
//   | for deletes: uint8 key count, then per value uint8 kind and its payload
//     (integer: int64, real: float64, text: uint32 length + bytes)
// all little-endian. The writer prunes rows older than a bounded number of commits and
// records the highest pruned sequence in flatstore_meta('log_pruned_through').
#ifndef FLATSTORE_RUNTIME_CHANGE_LOG_H_
#define FLATSTORE_RUNTIME_CHANGE_LOG_H_

#include <cstdint>
#include <span>
#include <string>
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
// transaction.
absl::StatusOr<std::vector<LogEntry>> readLogAfter(Connection& c, uint64_t after);

// The highest sequence whose log entry was pruned (0: none).
absl::StatusOr<uint64_t> logPrunedThrough(Connection& c);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_CHANGE_LOG_H_
