// The PostgreSQL engine's read views (storage_engine.h's ReadView): snapshots on a
// connection of their own, and reads inside a write session's transaction; and the
// conflict check, which read views and write sessions both run.
//
// A snapshot is a REPEATABLE READ READ ONLY transaction. Its BEGIN and its mark (the
// pg_snapshot and its xmin) are queued on the connection and go out with its first read,
// in the same round trip; its ROLLBACK is not waited for (pg_engine.h, Round trips).
// changesSince and latestVersionstamp read only below the change feed's frontier
// (pg_change_feed.h).
//
// Thread-safety: a view is used by one thread at a time (storage_engine.h).
#ifndef FLATSTORE_RUNTIME_PG_READ_VIEW_H_
#define FLATSTORE_RUNTIME_PG_READ_VIEW_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/postgres.h"
#include "runtime/storage_engine.h"

namespace flatstore::internal {

class PgEngine;

// A snapshot on a connection of its own from `engine`'s pool.
absl::StatusOr<std::unique_ptr<ReadView>> pgOpenSnapshot(PgEngine* engine);
// Reads in the transaction open on `conn` (a write session's), which outlives the view.
// It has no mark: nothing asks what it saw.
std::unique_ptr<ReadView> pgReadsInTransaction(PgEngine* engine, PgConnection* conn);

// Whether the snapshot of `mark` (a pg_snapshot's text, "xmin:xmax:xip,...") sees the
// commit of transaction `xid`: true for one that had ended before it was taken, false
// for one still running then, begun later, or when the mark holds no snapshot.
bool pgSnapshotSees(const ReadMark& mark, uint64_t xid);

// The statement that finds the first change of `tables` by another origin that
// `mark`'s snapshot does not see, and how far the log was pruned (pgConflictOf reads its
// result).
struct PgConflictQuery {
  std::string sql;
  std::vector<PgParam> params;
  std::vector<int64_t> ids;  // of `tables`, in order
};

PgConflictQuery pgConflictQuery(PgEngine& engine, std::span<const TableState* const> tables,
                                const ReadMark& mark);
// The index in the query's tables of the first one changed, or -1; 0 when the log no
// longer covers `mark`.
absl::StatusOr<int> pgConflictOf(const PgResult& r, const PgConflictQuery& q, const ReadMark& mark);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PG_READ_VIEW_H_
