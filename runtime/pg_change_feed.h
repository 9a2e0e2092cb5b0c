// The PostgreSQL change feed: following commits through the change log that PgEngine's
// write sessions fill (pg_engine.h), one row per (transaction, changed table). It owns
// the frontier of change-log reads, which PgEngine's read views use for changesSince and
// latestVersionstamp, and the engine's CommitFeed (storage_engine.h), which reads other
// clients' commits for subscriptions.
//
// The frontier. A commit's versionstamp sequence is its transaction id (pg_engine.h,
// Versionstamps). Ids are taken in start order but transactions on disjoint tables
// commit in any order, so a reader that has seen stamp 101 cannot assume that 100 is
// done; neither can it with a sequence. What PostgreSQL does know is which transactions
// a snapshot saw running (pg_snapshot_xip): every id below the oldest of them is over,
// committed (and then visible) or rolled back. A reader therefore reads the change log
// only below that frontier and reports `through` just below it; a transaction that
// started first and commits last is still running at the snapshot, so it holds the
// frontier below its id and is read by the next call rather than skipped. Only the
// transaction id gives this: a sequence value has no relation to what a snapshot saw
// running.
// The frontier passes over running transactions that are plainly not flatstore writers
// of this database: pg_locks shows them holding their id on a backend that does not
// hold the client mark, a session lock every connection of every client takes when it
// connects and keeps until it closes (pg_locks is one consistent picture of the lock
// table). So an unrelated long transaction on the server does not hold the feed back; a
// writer's does, for as long as it runs, which is short: closures run outside the
// transaction, and the id is taken only once the locks are held. (The table locks
// themselves cannot tell: a committing writer may release them a moment before its id's
// lock.)
//
// The commit feed listens on the database's channel on a connection of its own and
// treats each notification as a hint (pg_engine.h, Notifications; the payload's second
// word tells its own commits from other clients'); it reads the log from a cursor up to
// the frontier, and answers OutOfRange once the log was pruned past the cursor.
//
// What it needs from the engine (pg_engine.h): connections from its pool (acquire,
// release, giveBack) and a new one for listening (connect), each holding the client mark
// (markClient) that the frontier relies on; the schema, whose lock space (pg_schema.h)
// the client mark is taken in; the channel; this client's origin.
//
// Thread-safety: the functions use only the connection they are given, which belongs to
// the caller's thread; the commit feed as storage_engine.h says.
#ifndef FLATSTORE_RUNTIME_PG_CHANGE_FEED_H_
#define FLATSTORE_RUNTIME_PG_CHANGE_FEED_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "flatstore/entity.h"
#include "runtime/pg_engine.h"
#include "runtime/postgres.h"

namespace flatstore::internal {

// In a REPEATABLE READ transaction (any statement of it, the first one included), or as
// a statement of its own: the frontier of change-log reads in its snapshot, the oldest
// transaction the snapshot saw running that may be a flatstore writer of the lock space
// `space` (every writer below it had ended). Only transactions that pg_locks shows
// holding their id on a backend that is not a client of this database are passed over.
// Every connection of a client holds the client mark (PgEngine::markClient) for as long as it is
// open, a session lock that no commit releases, and pg_locks is one consistent picture
// of the lock table, read once and after the snapshot was taken: a writer that still ran
// at the snapshot either shows on a marked backend or has ended since; either way it
// holds the frontier. (Telling writers by their transaction-level table locks does not
// do: a committing transaction may drop those before its id's lock, and then looks like
// a stranger for a moment; a test caught a change skipped so.) pg_locks reports the 32
// low bits of a transaction id.
absl::StatusOr<uint64_t> frontierOf(PgConnection& c, int32_t space);

// The versionstamp just below `frontier`: it covers every transaction below it.
Versionstamp belowFrontier(uint64_t frontier);

// The transaction id through which the change log of `schema` was pruned (0: never):
// changes of that transaction and older ones are gone.
absl::StatusOr<uint64_t> prunedThrough(PgConnection& c, const std::string& schema);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PG_CHANGE_FEED_H_
