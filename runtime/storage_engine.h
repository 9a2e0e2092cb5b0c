// StorageEngine: the interface between the transaction model (scheduling, closures,
// observers) and the store that keeps the objects. Two engines stand behind it: SQLite
// (one file, one write lock, the runtime's original path) and PostgreSQL (a server
// shared by several clients, pg_engine.h).
//
// What stays above the seam, shared by both engines: the per-table queues and workers,
// closures and their read-your-writes view (PendingTable), encoding a change on the
// closure's thread (EncodedChange: FlatBuffers bytes, key and index values), observers
// and their in-memory evaluation, metrics.
//
// Where each engine stands today. Reads go through the seam on both: the workspace's
// fetches, snapshots, changesSince and closures' snapshots take their views from a
// ReadViews (SQLite's is the reader pool, reader_pool.h; PostgreSQL's the engine).
// Commits go through CommitPath (commit_path.h) on both: on PostgreSQL, PgWriter
// commits groups of requests that share tables in WriteSessions of this interface (a
// savepoint per request: beginRequest, endRequest); on SQLite the Writer
// (writer.h) is that commit path and its own write session at once: it groups every
// queued request into one transaction under the file's one write lock, which is where
// SQLite's speed comes from and which no session per table set would give it. The
// SQLite column of the operations below says what its writer does at each step.
//
// What goes below it is everything that touches the store. For each operation, what
// each engine does and why the operation has its shape:
//
// Opening (StorageEngine's factory, per engine)
//   SQLite: opens the file, refuses a foreign or newer-format file before writing,
//     sets WAL mode, creates or upgrades the catalog tables (catalog.h).
//   PostgreSQL: connects, works in the connection's current schema, refuses a schema
//     that holds other tables and no flatstore_meta, or a newer format, then creates the
//     catalog under a catalog-wide advisory lock so that clients opening at once do not
//     race on DDL.
//   Both refuse before writing anything, so the checks live in the factory, not in a
//   separate validate() call that a caller could forget.
//
// registerTable
//   SQLite: the table and one index table per index, named after the entity
//     (TableDescription's DDL).
//   PostgreSQL: one table per entity named by its catalog id (PostgreSQL truncates
//     names at 63 bytes; entity names are fully qualified), the key columns, bytea
//     object, versionstamp, and one column per index in the same row, with a B-tree
//     (unique for `unique`) on it: one row write per object and no joins in queries,
//     where SQLite's separate index tables exist because its single writer appends rows
//     cheaply and its ALTER TABLE is weak.
//   Both check the stored layout hash and report which indexes need a back-fill; the
//   call therefore takes the TableState the runtime already keeps (index readiness,
//   catalog id) and fills it. backfillStep fills one bounded batch.
//
// beginWrite(tables) -> WriteSession
//   SQLite: BEGIN IMMEDIATE; `tables` is ignored, the file's one write lock covers
//     them all, and the group's commit sequence comes from the change log's head.
//   PostgreSQL: BEGIN, then pg_advisory_xact_lock on one key per declared table (in the
//     database's lock space), in ascending key order (no two sessions wait on each other in a
//     cycle), then the transaction id (pg_current_xact_id) is taken: it is the group's versionstamp
//     sequence (see pg_engine.h for why). These statements go out with the session's
//     first one, in its round trip.
//   Locks are per session, not per request: a session is one database transaction, and
//   a client groups closures that share a table set into one session (one commit), as
//   the SQLite writer groups everything queued. The versionstamp is known as soon as
//   the session holds its locks, so apply() can write it into rows without a second
//   pass (on PostgreSQL the rows compute it from the transaction id themselves, so the
//   first request's statements travel with the session's start).
//
// WriteSession::applyUnlessChanged(read tables, ReadMark)
//   Detects that another client (SQLite: process) changed a table a closure read since
//   its snapshot, and applies the closure's changes only if not. SQLite: the change log
//   after the snapshot's commit sequence. PostgreSQL: change-log rows of those tables
//   that are not visible in the closure's snapshot (pg_visible_in_snapshot), checked in
//   the round trip that applies (and starts the session): after a conflict, which is
//   rare, the session is rolled back. A ReadMark carries what each engine needs.
//
// WriteSession::apply(position, changes)
//   Both: removals first (deletions, key changes, freed unique values), then writes,
//   so a closure may swap keys; AlreadyExists naming table and key or unique field.
//   SQLite: statements on the writer's connection, each closure in a savepoint when the
//   group holds several (a failing closure rolls back alone).
//   PostgreSQL: the same, with the closure's statements sent as one libpq pipeline (one
//   round trip per closure rather than one per statement).
//   A request's changes go in as a span of EncodedChange and come back with their
//   rowids (an insert's rowid is assigned by the engine); the engine remembers what it
//   wrote for the change log, so commit() needs nothing more.
//
// WriteSession::putEntry/eraseEntry: the dictionary, inside the session's transaction
//   (a closure's dictionary writes commit with its objects).
//
// WriteSession::commit
//   SQLite: one change-log row for the group (it carries the commit sequence), COMMIT:
//     one WAL append and one fsync.
//   PostgreSQL: one change-log row per changed table (so readers of one table read only
//     its rows), COMMIT, then a NOTIFY hint in a small transaction of its own, in the
//     same round trip (a hint lost with the client only delays listeners until the
//     next hint or read). A connection lost at COMMIT leaves the outcome unknown to
//     the client; the engine asks the server (pg_xact_status) on a new connection before
//     answering.
//   A failed commit fails every request of the session, and nothing of it is visible.
//
// snapshot() -> ReadView
//   SQLite: a read transaction on a pooled read-only connection.
//   PostgreSQL: a REPEATABLE READ, READ ONLY transaction on a pooled connection.
//   Reads by rowid, by key, by QuerySpec (compiled to the engine's SQL dialect, the rest
//   evaluated in memory, optionally merged with a closure's pending changes), counts,
//   the dictionary, the change log since a versionstamp and the newest versionstamp.
//   A ReadView is one snapshot: a closure's reads, a Workspace::snapshot, a re-query.
//   read() -> ReadView is the same for one statement (a fetch, a count, a get): SQLite
//   runs it in its implicit read transaction (no BEGIN and COMMIT); PostgreSQL takes a
//   snapshot as above, whose BEGIN travels in one round trip with its first statement.
//   The SQLite views are ReaderPool's (reader_pool.h): its connections stay on the
//   pool, and a view is a lease of one.
//
// ReadView::changesSince(table, since)
//   SQLite: log rows after the commit sequence of `since`; `through` is the log head.
//   PostgreSQL: log rows with a transaction id at or above `since`'s but below the
//   oldest flatstore writer the snapshot saw running: a transaction that took its id
//   earlier and commits later is still running, so its id is at or above that frontier
//   and it is read by the next call instead of being skipped. `through` is just below
//   the frontier.
//   Both answer OutOfRange when the log was pruned past `since`.
//
// openCommitFeed() -> CommitFeed: other clients' commits, for subscriptions.
//   SQLite: polls PRAGMA data_version on a connection of its own, reads the log.
//   PostgreSQL: LISTEN on the schema's channel, whose payload is only a hint (NOTIFY
//     payloads stop at 8000 bytes), then reads the log as changesSince does.
//
// Cost to the SQLite path: a read takes its view through one virtual call and one
// allocation (about 190 instructions of a `get`'s 12,000); EncodedChange and
// PendingTable pass through unchanged, so nothing is copied or converted for the
// seam.
//
// Thread-safety: a StorageEngine is thread-safe. A WriteSession, a ReadView and a
// CommitFeed belong to one thread at a time (each holds a connection), except
// CommitFeed::interrupt, which any thread may call.
#ifndef FLATSTORE_RUNTIME_STORAGE_ENGINE_H_
#define FLATSTORE_RUNTIME_STORAGE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flatstore/dictionary.h"
#include "flatstore/entity.h"
#include "flatstore/fetch.h"
#include "flatstore/status.h"
#include "flatstore/value.h"
#include "runtime/catalog.h"
#include "runtime/change_log.h"
#include "runtime/commit_request.h"
#include "runtime/query_exec.h"

namespace flatstore::internal {

// The change log of one table since a versionstamp (ReadView::changesSince).
struct LogChanges {
  std::vector<RawRow> changed;              // objects as the snapshot has them now
  std::vector<std::vector<Value>> deleted;  // primary keys ({rowid} for automatic ids)
  // Every change with a versionstamp at or below `through` is reported or older than
  // `since`; asking again with `through` continues without a gap.
  Versionstamp through;
};

// One commit of another client, from the change log.
struct ForeignCommit {
  Versionstamp versionstamp;  // of the commit (position 0)
  int64_t origin = 0;
  std::vector<LogRecord> records;
};

class ReadView {
 public:
  virtual ~ReadView() = default;

  // What this view saw, for a later changedSince (here or in a WriteSession). SQLite
  // reads the change log's head for it (once per view); PostgreSQL took it with the
  // snapshot.
  virtual absl::StatusOr<ReadMark> mark() = 0;
  // As WriteSession::changedSince, seen from this view: the index in `tables` of the
  // first table that a commit by another client changed after `since` and before this
  // view, or -1 (0 when the log no longer covers `since`). A subscription uses it to
  // tell that its result changed only by this client's own commits.
  virtual absl::StatusOr<int> changedSince(std::span<const TableState* const> tables,
                                           const ReadMark& since) = 0;
  virtual absl::StatusOr<std::optional<RawRow>> rowByRowid(const TableState& table,
                                                           int64_t rowid) = 0;
  virtual absl::StatusOr<std::optional<RawRow>> rowByKey(const TableState& table,
                                                         const std::vector<Value>& key) = 0;
  // Whether looking up many keys at once is much cheaper than one by one (PostgreSQL:
  // one round trip rather than one per key), so that a closure's creations may take
  // their keys as free and have them checked in one batch (TransactionState).
  virtual bool batchesKeyLookups() const { return false; }
  // Whether any of `keys` has an object in `table`.
  virtual absl::StatusOr<bool> anyKeyExists(const TableState& table,
                                            std::span<const std::vector<Value>> keys) {
    for (const std::vector<Value>& key : keys) {
      FLATSTORE_ASSIGN_OR_RETURN(std::optional<RawRow> row, rowByKey(table, key));
      if (row.has_value()) return true;
    }
    return false;
  }
  // `spec` compiled to SQL where its fields allow, the rest in memory, merged with
  // `pending` (a closure's own changes) when it is not null.
  virtual absl::StatusOr<std::vector<RawRow>> query(const TableState& table, const QuerySpec& spec,
                                                    const PendingTable* pending) = 0;
  virtual absl::StatusOr<int64_t> count(const TableState& table, const QuerySpec& spec,
                                        const PendingTable* pending) = 0;
  // See the file comment. OutOfRange when the log was pruned past `since`.
  virtual absl::StatusOr<LogChanges> changesSince(const TableState& table, Versionstamp since) = 0;
  // The versionstamp of the newest commit (the null one when none is logged). On
  // PostgreSQL, the newest below the change feed's frontier (see pg_change_feed.h): a commit
  // of a transaction that started earlier and still runs is not the latest yet.
  virtual absl::StatusOr<Versionstamp> latestVersionstamp() = 0;
  virtual absl::StatusOr<std::optional<Dictionary::Record>> entry(std::string_view key) = 0;
};

// Dictionary records written inside a write transaction: a closure's dictionary work
// (a chunk's cursor) commits with its objects. Both engines' write sessions are one.
class EntryWriter {
 public:
  virtual ~EntryWriter() = default;
  virtual absl::Status putEntry(std::string_view key, Dictionary::Kind kind, std::string_view type,
                                std::span<const uint8_t> value) = 0;
  virtual absl::Status eraseEntry(std::string_view key) = 0;
};

class WriteSession : public EntryWriter {
 public:
  // Rolls back unless commit() ended the session.
  virtual ~WriteSession() = default;

  // The versionstamp of the request at `position` in this session.
  virtual Versionstamp versionstamp(uint16_t position) const = 0;
  // Reads inside the session's transaction: every commit before it, and under its
  // tables' locks (a closure run after conflicts reads here). Valid while the session
  // lasts.
  virtual ReadView& reads() = 0;
  // Applies one request's changes (of the declared tables only) with the versionstamp
  // of `position`, and sets the rowids of inserts. All or nothing: on error none of
  // them stays and the session may go on with the next request.
  virtual absl::Status apply(uint16_t position, std::span<EncodedChange> changes) = 0;
  // apply(), unless a commit by an origin other than this client's changed one of
  // `read` after `mark` (checked in the same round trip; no check without a mark), or
  // the changes were encoded with a table's bridge that another program's catalog
  // change replaced: then the index in `read` of the first such table; -1 once
  // applied. When the log no longer covers `mark`, 0: assume a change rather than miss
  // one. `read` holds every table the changes write.
  // Outside beginRequest()/endRequest(), for the only request of a session: no
  // savepoint, and after a change or a failure the session can only be rolled back
  // (commit() fails with FailedPrecondition). Inside them, endRequest(false) undoes it.
  virtual absl::StatusOr<int> applyUnlessChanged(uint16_t position,
                                                 std::span<EncodedChange> changes,
                                                 std::span<const TableState* const> read,
                                                 const ReadMark* mark) = 0;
  // Brackets one request of a session that holds several: what happens between the two
  // (applyUnlessChanged, dictionary writes, reads) stays with endRequest(true) and is
  // undone alone with endRequest(false), after which the session goes on. On
  // PostgreSQL a savepoint whose statements travel with the next round trip.
  virtual void beginRequest() = 0;
  virtual void endRequest(bool keep) = 0;
  // Writes the change log and commits. Unavailable when the connection was lost and
  // the server does not confirm the commit; the session is over either way.
  virtual absl::Status commit() = 0;
};

class CommitFeed {
 public:
  virtual ~CommitFeed() = default;
  // Waits up to `timeout` for a hint that another client committed. True on a hint,
  // false on timeout, on interrupt(), or when only this client's own commits were
  // announced (it may then return before `timeout`). A hint may be spurious (after a
  // reconnect, for instance); read() tells.
  virtual absl::StatusOr<bool> wait(absl::Duration timeout) = 0;
  // Ends a wait() early. Any thread.
  virtual void interrupt() = 0;
  // Commits by other origins after the feed's position, in versionstamp order, and
  // moves the position past them (never past a commit still running).
  virtual absl::StatusOr<std::vector<ForeignCommit>> read() = 0;
};

// The reading half of an engine: views of committed state. Reads (reads.h) and closures'
// snapshots get their views here, whichever engine stands behind.
class ReadViews {
 public:
  virtual ~ReadViews() = default;
  // A view for one statement (a fetch, a count, a lookup): the engine may read without
  // an explicit transaction, since one statement reads one consistent state (SQLite's
  // implicit read transaction; a PostgreSQL statement's own snapshot).
  virtual absl::StatusOr<std::unique_ptr<ReadView>> read() = 0;
  // One snapshot for several statements, held until the view is destroyed.
  virtual absl::StatusOr<std::unique_ptr<ReadView>> snapshot() = 0;
  // What ReadView::batchesKeyLookups answers for the views snapshot() gives, asked
  // before one is opened (a closure's snapshot is opened at its first read).
  virtual bool snapshotsBatchKeyLookups() const = 0;
};

class StorageEngine : public ReadViews {
 public:
  ~StorageEngine() override = default;

  // For messages: the file, or the server, database and schema.
  virtual const std::string& location() const = 0;
  // This client's mark in the change log.
  virtual int64_t origin() const = 0;

  // Creates `table` (its entity table, indexes, catalog row) if missing, checks its
  // stored layout hash (FailedPrecondition when the primary key changed), stores the
  // newest binary schema, and sets table.id and which indexes are complete.
  virtual absl::Status registerTable(TableState& table) = 0;
  // Fills up to `batch` objects into the first incomplete index of `table`; true while
  // more remains.
  virtual absl::StatusOr<bool> backfillStep(TableState& table, int batch) = 0;

  // A write session holding the locks of `tables` (see the file comment).
  virtual absl::StatusOr<std::unique_ptr<WriteSession>> beginWrite(
      std::span<const TableState* const> tables) = 0;
  // A feed of other clients' commits, starting after the newest commit now.
  virtual absl::StatusOr<std::unique_ptr<CommitFeed>> openCommitFeed() = 0;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_STORAGE_ENGINE_H_
