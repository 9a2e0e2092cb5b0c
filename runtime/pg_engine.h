// PgEngine: the StorageEngine (storage_engine.h) on a PostgreSQL server, for several
// clients, on several machines, sharing one database. The layout is pg_schema.h's.
//
// Locks. A write session takes pg_advisory_xact_lock(space, key) with the database's
// lock space and one key per declared table (pg_schema.h), in ascending key order: two
// sessions that share tables take the shared ones in the same order, so none waits for
// another that waits for it. The locks end with the transaction. Sessions on disjoint
// tables hold disjoint locks and run and commit in parallel on their own connections;
// sessions on one table are strictly serial across all clients.
//
// Round trips. Statements travel in pipelines (pg_pipeline.h), each prepared once per
// connection. A read view's BEGIN and mark go with its first read, and its ROLLBACK is
// not waited for (read-only, it holds no id and no lock). A write session's BEGIN, locks
// and transaction id go with its first statement: for a closure, one pipeline holds the
// conflict check, the session's start and the changes (applyUnlessChanged), and a second
// the change log, COMMIT and the notification. Rows compute their versionstamps from the
// transaction id on the server (pg_schema.h), so the changes need not wait for it.
//
// Versionstamps: the session's PostgreSQL transaction id, taken right after its locks
// (pg_current_xact_id(), which assigns it), is the commit sequence of its versionstamps;
// the position is the request's place in the session. Why this and not a sequence:
//   - Unique: every transaction has its own id.
//   - Ordered per table: a session that shares a table with another gets its lock only
//     after the other committed, and only then its id, which is therefore larger. (A
//     sequence value taken under the locks would order these too.)
//   - The change feed: a snapshot shows which transactions it saw running, so a reader
//     of the change log can tell below which id every commit has ended, the frontier
//     that pg_change_feed.h explains; a sequence value has no relation to what a
//     snapshot saw running.
//   - Conflict checks across clients: a closure's snapshot is a pg_snapshot, and a
//     change-log row it did not see is exactly one whose id is not visible in it
//     (pg_visible_in_snapshot), with no clock or counter to keep.
// Ids fit the 48 bits a versionstamp keeps for its sequence for as long as a server can
// run (2^47 transactions).
//
// The change log: one row per (transaction, changed table), holding that table's records
// (change_log.h's encoding), so that a reader of one table reads only its rows.
//
// Program versions: a write session reads the catalog generation (pg_schema.h) under its
// locks, in the statement that takes its transaction id (no round trip of its own), and
// refreshes the bridge and statements of each of its tables whose state is older
// (refreshStale); a change encoded with a replaced bridge is never committed
// (applyUnlessChanged reports it as a conflict). A program that stores a newer schema or
// adds an index bumps the generation; it adds an index to a table in use under the
// table's lock, so every write to the table either committed before (and the back-fill
// covers it) or reads the new generation. The writer runs a change encoded with a
// replaced bridge again (PgWriter). Statements made for an earlier bridge are kept, since
// readers may still hold them.
//
// Notifications: every commit that changed something sends pg_notify on the database's
// channel with a short payload ("<xid> <origin> <table ids>", or "*" when the list would
// pass the 8000-byte limit), right after its COMMIT, in a transaction of its own that
// does not wait for its flush, in the same round trip. Inside the writing transaction
// NOTIFY would hold PostgreSQL's database-wide notification lock through the commit's
// flush and make all committing writers wait for each other. A listener treats the
// payload as a hint and reads the change log (CommitFeed, pg_change_feed.h); a hint lost
// because a client died between the two only delays listeners until the next hint or
// their next read.
//
// Faults: a lost connection fails the session's calls with Unavailable, and PostgreSQL
// rolls the transaction back: nothing of it is written. When the connection is lost at
// COMMIT itself, the engine asks the server on a new connection whether the transaction
// committed (pg_xact_status) before answering. Connections are pooled; a broken one is
// dropped, and new ones are made with a bounded, growing back-off.
//
// Thread-safety: see storage_engine.h.
#ifndef FLATSTORE_RUNTIME_PG_ENGINE_H_
#define FLATSTORE_RUNTIME_PG_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/pg_schema.h"
#include "runtime/postgres.h"
#include "runtime/storage_engine.h"

namespace flatstore::internal {

struct PgEngineOptions {
  // The server: a postgresql:// URI or libpq's key=value form. Its search_path chooses
  // the schema the database lives in.
  std::string uri;
  // Marks this client's commits in the change log; 0: a random one.
  int64_t origin = 0;
  // How long getting a new connection may retry before it fails with Unavailable.
  absl::Duration reconnect_limit = absl::Seconds(10);
  // Change-log rows kept (one per changed table per commit).
  int64_t log_retention = 100000;
  // Idle connections kept for reuse.
  int max_idle_connections = 8;
};

// Statements of the engine's own tables, made once per engine.
struct PgEngineSql {
  explicit PgEngineSql(const std::string& schema);
  // The first change-log row of tables $1 (ids) by an origin other than $3, from
  // transaction $2 on, that snapshot $4 does not see; and how far the log was pruned.
  std::string conflict;
  std::string log_insert;  // xid, table id, origin, records
  std::string prune_mark;  // rows kept
  std::string prune_log;
  std::string notify;  // channel, payload; not waiting for its flush
};

class PgEngine : public StorageEngine {
 public:
  // Connects, checks the schema (FailedPrecondition for a foreign database or a newer
  // format) and creates the catalog there when it is empty. Unavailable when the server
  // cannot be reached within options.reconnect_limit.
  static absl::StatusOr<std::unique_ptr<PgEngine>> open(PgEngineOptions options);
  ~PgEngine() override;

  const std::string& location() const override { return location_; }
  int64_t origin() const override { return origin_; }
  const std::string& schema() const { return schema_; }
  // The LISTEN/NOTIFY channel of this database.
  const std::string& channel() const { return channel_; }

  absl::Status registerTable(TableState& table) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<bool> backfillStep(TableState& table, int batch) override;
  absl::StatusOr<std::unique_ptr<WriteSession>> beginWrite(
      std::span<const TableState* const> tables) override;
  // The same as snapshot(): its BEGIN travels with the first statement.
  absl::StatusOr<std::unique_ptr<ReadView>> read() override { return snapshot(); }
  absl::StatusOr<std::unique_ptr<ReadView>> snapshot() override;
  bool snapshotsBatchKeyLookups() const override { return true; }
  // Other clients' commits: the change feed (pg_change_feed.h).
  absl::StatusOr<std::unique_ptr<CommitFeed>> openCommitFeed() override;

  // For the engine's parts (pg_read_view.cc, pg_write_session.cc, pg_change_feed.cc).
  // A connection from the pool, or a new one (with back-off).
  absl::StatusOr<std::unique_ptr<PgConnection>> acquire() ABSL_LOCKS_EXCLUDED(mu_);
  // Gives `conn` back; a broken one, or one left inside a transaction, is dropped.
  void release(std::unique_ptr<PgConnection> conn) ABSL_LOCKS_EXCLUDED(mu_);
  // A new connection, retried with back-off up to the reconnect limit, with the client
  // mark taken (see markClient).
  absl::StatusOr<std::unique_ptr<PgConnection>> connect();
  // Takes the client mark on `c`: a shared session-level advisory lock (lock space,
  // key 0, in the one-bigint form) that tells the change feed's frontier that the
  // backend's transactions may be this database's writers (pg_change_feed.h, frontierOf).
  absl::Status markClient(PgConnection& c);
  // The statements of a registered table as its current bridge writes it;
  // FailedPrecondition for one not registered. Valid as long as the engine.
  absl::StatusOr<const PgTableSql*> sqlOf(const TableState& table) ABSL_LOCKS_EXCLUDED(mu_);
  // Inside a write session holding the locks of `tables`, which read catalog generation
  // `generation`: makes the bridge and statements of each table whose state is older
  // current (pgRefreshTable), on the session's connection `c`.
  absl::Status refreshStale(PgConnection& c, std::span<const TableState* const> tables,
                            int64_t generation) ABSL_LOCKS_EXCLUDED(mu_, refresh_mu_);
  const PgEngineOptions& options() const { return options_; }
  const PgEngineSql& sql() const { return sql_; }
  // Whether a commit whose transaction id lies in `span` (id / a fixed width) prunes the
  // change log: true for this client's first commit in each span.
  bool pruneDue(uint64_t span);

 private:
  PgEngine(PgEngineOptions options, std::string schema, int64_t origin, std::string location);

  const PgEngineOptions options_;
  const std::string schema_;
  const int64_t origin_;
  const std::string location_;
  const std::string channel_;
  const PgEngineSql sql_;
  std::atomic<uint64_t> pruned_span_{0};

  // A registered table.
  struct Registered {
    TableState* state = nullptr;
    // Its statements per bridge it had, the current one last: a reader may still use
    // an earlier one (they differ only in the indexes written).
    std::vector<std::unique_ptr<PgTableSql>> sql;
    // The catalog generation its bridge and statements are current with.
    int64_t catalog_seen = 0;
  };

  // Serializes refreshes, which replace a table's bridge (TableState::setBridge).
  absl::Mutex refresh_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  std::vector<std::unique_ptr<PgConnection>> idle_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<const TableState*, Registered> tables_ ABSL_GUARDED_BY(mu_);
};

// How giveBack ends a transaction left open on the connection.
enum class EndTransaction {
  // Waits for the ROLLBACK: a write session's, which holds a transaction id that the
  // change feed's frontier waits for, ends before the caller learns the outcome.
  kAndWait,
  // Leaves the reply to the connection's next user (PgConnection::rollbackWithoutWaiting):
  // a read-only snapshot's, which holds no transaction id and no lock.
  kWithoutWaiting,
};

// Rolls back what is open on `conn` and gives it back to `engine`. Statements queued on
// it that never went out are dropped.
void giveBack(PgEngine* engine, std::unique_ptr<PgConnection> conn,
              EndTransaction end = EndTransaction::kAndWait);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PG_ENGINE_H_
