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
// of this database, so that other applications on the server, and flatstore clients of
// other schemas (other lock spaces), do not hold the feed back. What tells them: the
// client mark, a session lock that every connection of every client of this database
// takes when it connects, before any transaction, and keeps until it closes. A
// transaction runs on one backend from the moment it takes its id until it ends, so a
// backend seen running it without the mark, at any moment of its life, is no client's.
// Three reads tell, all in the round trip that takes the snapshot:
//   - Before the snapshot, in statements of their own (ended by a COMMIT, so that the
//     BEGIN after them still chooses its isolation level): first the backends that
//     have taken a transaction id (pg_stat_get_activity's backend_xid, set when the id
//     is assigned, at the same moment it becomes visible to snapshots as running), then
//     pg_locks, one consistent picture of the lock table: which backends hold the
//     mark, and which transactions hold their id's lock on a backend without it. A
//     transaction that the snapshot then sees running was running at both reads, on
//     the same backend; if that backend held no mark at the second read, it is
//     foreign.
//   - After the snapshot, in its first statement: pg_locks again, for the transactions
//     that took their id meanwhile; and pg_xact_status, for those that rolled back
//     (they wrote nothing).
// The read after the snapshot alone missed every transaction that ended between the
// snapshot and that read (it shows nowhere in pg_locks any more), and a transaction
// takes the lock on its id a moment after the id is visible as running; under unrelated
// load on the server the frontier often stopped below a commit acknowledged just
// before. Now a foreign transaction holds the frontier only if it took its id after
// the reads before the snapshot began and committed before the read after it: its id
// is larger than that of every commit acknowledged before the call, so `through` and
// latestVersionstamp reach each of those unless a writer of this database with a
// smaller id still runs. It holds only that call; the next one no longer sees it
// running.
// A writer's transaction does hold the frontier, for as long as it runs, which is
// short: closures run outside the transaction, and the id is taken only once the locks
// are held. (The table locks themselves cannot tell writers apart: a committing writer
// may release them a moment before its id's lock, and would look like a stranger.)
// The frontier is computed only for what needs it (changesSince, latestVersionstamp,
// the commit feed), whose read views take it with their first read; a view that read
// before it reads pg_locks after its snapshot only.
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
#include <vector>

#include "absl/status/statusor.h"
#include "flatstore/entity.h"
#include "runtime/pg_engine.h"
#include "runtime/postgres.h"

namespace flatstore::internal {

// Queues on `c` the reads that go before a snapshot (kLocksBeforeStatements statements:
// the backends' transaction ids, then pg_locks, then a COMMIT that ends the implicit
// transaction they ran in, so that a BEGIN queued after them still chooses its
// isolation level). Only on a connection with no transaction open, ahead of the BEGIN
// of the transaction whose frontier is wanted (or of frontierOf as a statement of its
// own); frontierOf reads their results.
void queueLocksBefore(PgConnection& c, int32_t space);
inline constexpr size_t kLocksBeforeStatements = 3;

// In a REPEATABLE READ transaction (any statement of it, the first one included), or as
// a statement of its own: the frontier of change-log reads in its snapshot, the oldest
// transaction the snapshot saw running that may be a flatstore writer of the lock space
// `space` (every writer below it had ended). A running transaction is passed over when
// it had rolled back by the time of this read (it wrote nothing), or when a read shows
// it running on a backend without the client mark: the read of pg_locks after the
// snapshot, which this statement takes, and the reads before it that queueLocksBefore
// queued on `c`, if any. Statements queued on `c` go out with this one, in its round
// trip; when `queued` is given, queueLocksBefore's statements must be the first of
// them, and the results of those after them are moved to `*queued`. Why a transaction
// seen so is no writer, and what may still hold the frontier: see the file comment.
absl::StatusOr<uint64_t> frontierOf(PgConnection& c, int32_t space,
                                    std::vector<PgResult>* queued = nullptr);

// The versionstamp just below `frontier`: it covers every transaction below it.
Versionstamp belowFrontier(uint64_t frontier);

// The transaction id through which the change log of `schema` was pruned (0: never):
// changes of that transaction and older ones are gone.
absl::StatusOr<uint64_t> prunedThrough(PgConnection& c, const std::string& schema);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PG_CHANGE_FEED_H_
