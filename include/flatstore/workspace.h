// Workspace: one flatstore database file, opened.
//
//   auto ws = flatstore::Workspace::open("game.db", {.synchronous =
//   flatstore::Synchronous::kFull}); if (!ws.ok()) return ws.status();
//   (*ws)->performChanges<game::Monster>([](flatstore::TransactionContext& txn) {...});
//   auto strong = (*ws)->fetch<game::Monster>().where(F::hp > 10).all();
//
// Thread-safety: every method may be called from any thread at any time, except that
// shutdown() and the destructor must not race with other calls' returns being used.
#ifndef FLATSTORE_WORKSPACE_H_
#define FLATSTORE_WORKSPACE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flatstore/dictionary.h"
#include "flatstore/entity.h"
#include "flatstore/fetch.h"
#include "flatstore/metrics.h"
#include "flatstore/observe.h"
#include "flatstore/status.h"
#include "flatstore/transaction.h"

namespace flatstore {

// SQLite's `synchronous` setting for the writer. In WAL mode:
//   kNormal: a commit is durable once the WAL is synced at the next checkpoint; a power
//            loss may lose the last commits, never corrupt the file. The default.
//   kFull:   every group commit syncs the WAL before its handles complete.
enum class Synchronous { kNormal, kFull };

struct WorkspaceOptions {
  Synchronous synchronous = Synchronous::kNormal;
  // Threads that run closures (and closures running at a time). 0: on a file, the number
  // of cores, at least 2; on PostgreSQL, where closures mostly wait for the server's
  // replies, four per core, at least 8.
  int worker_threads = 0;
  // Read-only connections for fetches, snapshot() and subscriptions (the writer never
  // uses them). Closures read on connections of their own, one per closure running at a
  // time, so a write storm never holds up fetches by taking these; those beyond the
  // first are closed again after 30 s unused.
  int reader_connections = 4;
  // Transactions submitted and not yet completed; beyond it performChanges waits or
  // fails fast (TransactionOptions::when_full).
  int64_t max_pending_transactions = 100000;
  // A group commit takes at most this many transactions and this many bytes of objects.
  int max_group_transactions = 4096;
  int64_t max_group_bytes = 64 << 20;
  // Objects per background index back-fill step.
  int backfill_batch = 1000;
  // How long the writer waits for another process's write lock before failing a group
  // (with Unavailable); it retries with jittered back-off meanwhile.
  absl::Duration lock_timeout = absl::Seconds(30);
  // How often a transaction is run again when another process changed a table it read
  // before its commit; then it fails with Aborted naming the table. The first two runs
  // read a snapshot on a reader connection and do not hold the write lock; later runs
  // happen on the writer thread inside the write transaction, where no other process
  // can commit, so they cannot conflict (they hold up this workspace's other commits
  // for the closure's duration). On PostgreSQL later runs happen inside the closure's
  // own write transaction, under its tables' locks, with the same effect on those
  // tables only. 0 fails at the first conflict.
  int max_conflict_retries = 16;
  // Commits whose entries the change log keeps (for changesSince and other processes).
  // The log is pruned when a commit's sequence is a multiple of 256: that commit drops
  // every entry of commits sequence - change_log_retention and older. So the log always
  // holds at least the last change_log_retention commits, and up to 255 more between
  // prunes. Values below 1 count as 1.
  int64_t change_log_retention = 10000;
  // How often the workspace looks for commits of other processes (PRAGMA data_version).
  // On PostgreSQL other clients' commits wake it at once (LISTEN/NOTIFY); the interval
  // only bounds how long a lost notification delays them.
  absl::Duration watch_interval = absl::Milliseconds(20);
  // PostgreSQL: how long opening, and every new connection later, retries a server that
  // cannot be reached (with a growing back-off) before failing with Unavailable.
  absl::Duration reconnect_limit = absl::Seconds(10);

  // WAL policy. SQLite's automatic checkpoints are off; the writer thread checkpoints.
  // When `checkpoint_pages` pages were appended to the WAL since the last checkpoint it
  // runs a passive checkpoint on a connection of its own (never waits; commits go on,
  // except background ones, which wait until it is done so that a bulk import does not
  // outrun it). Readers whose transactions overlap keep SQLite from ever reusing the
  // WAL from its beginning, so when the WAL holds more than `wal_size_limit` bytes the
  // writer runs a restarting checkpoint: it waits up to `checkpoint_wait` for readers
  // of older snapshots to finish (new readers are not blocked; commits wait
  // meanwhile), and the next commit writes from the WAL's beginning, so the WAL file
  // stays near the limit even when some read transaction is always open. When readers
  // outlast the wait, it tries again once the WAL grew by another quarter of the
  // limit. The WAL is truncated to nothing at open and at a clean shutdown. The default, 2000 pages
  // (8 MB at 4 KB pages), checkpoints after as many commits as SQLite's own automatic
  // checkpoint (1000 pages) would: each commit also appends its change-log page.
  int checkpoint_pages = 2000;
  int64_t wal_size_limit = 32 << 20;
  absl::Duration checkpoint_wait = absl::Milliseconds(200);

  // Abseil's Mutex checks the lock order on every acquire and release when Abseil was
  // built without NDEBUG, as Debian's libabsl is; on a one-object transaction that
  // check is about a sixth of flatstore's instructions. When true, open() switches it
  // off for the whole process (absl::SetMutexDeadlockDetectionMode(kIgnore)). Set it
  // false to keep the mode the application chose, for instance in a debug build that
  // wants Abseil to report lock-order cycles. (ThreadSanitizer reports lock-order
  // inversions either way.)
  bool disable_mutex_deadlock_detection = true;
};

// What changed in one table since a versionstamp (see Workspace::changesSince).
template <class T>
struct Changes {
  using Entity = typename EntityTraits<T>::Entity;
  // Objects inserted or updated since, in their current version, by rowid.
  std::vector<std::shared_ptr<const Entity>> changed;
  // Primary keys of objects deleted since ({rowid} for automatic ids).
  std::vector<std::vector<Value>> deleted;
  // The latest committed versionstamp when the changes were read: pass it to the next
  // changesSince call.
  Versionstamp through;
};

namespace internal {
class WorkspaceImpl;
class Reads;
}  // namespace internal

class Workspace {
 public:
  // Opens (creating if missing) the database at `path` in WAL mode. Errors:
  // NotFound when the directory does not exist; PermissionDenied when the file or its
  // directory cannot be written; FailedPrecondition when the file is not a SQLite
  // database, is a SQLite database that flatstore did not create, or was written by a
  // newer flatstore format; the I/O error of the checkpoint that opening runs (a full
  // disk is not one: the file opens). On error the file is left untouched.
  //
  // A libpq connection URI (postgresql://... or postgres://..., any parameters libpq
  // takes) opens the workspace on a PostgreSQL server instead, in the schema the
  // connection's search_path names (see the guide's PostgreSQL section): the same API
  // and generated code. Errors: Unavailable when the server cannot be reached within
  // WorkspaceOptions::reconnect_limit; FailedPrecondition when the schema holds tables
  // that are not a flatstore database's, or a newer format's; the server's error
  // otherwise. Messages show the URI without its user part and parameters. backup() is
  // Unimplemented there (use the server's tools). Switches Abseil's Mutex deadlock detection off
  // for the process unless told not to (see WorkspaceOptions::disable_mutex_deadlock_detection).
  static absl::StatusOr<std::unique_ptr<Workspace>> open(const std::string& path,
                                                         WorkspaceOptions options = {});

  // Shuts down (see shutdown()) and closes the file.
  ~Workspace();

  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // Runs `closure(TransactionContext&)` -> absl::Status on a worker thread once the
  // tables Ts... are free, then commits what it submitted. Closures on one table run in
  // submission order, closures on disjoint tables in parallel. The handle completes with
  // the commit's result, the closure's error (nothing written), or the commit's error.
  // A closure that throws fails with Aborted carrying the exception's text. After a
  // sync failed, every transaction fails with FailedPrecondition until the workspace
  // is reopened (docs/guide.md, "Errors"); the closure does not run then.
  template <class... Ts, class Fn>
  TransactionHandle performChanges(Fn&& closure, TransactionOptions options = {}) {
    static_assert(sizeof...(Ts) > 0, "performChanges<Ts...> names the tables it touches");
    std::vector<const TableDescription*> tables = {&EntityTraits<Ts>::description()...};
    return performChangesErased(
        std::move(tables),
        std::function<absl::Status(TransactionContext&)>(std::forward<Fn>(closure)),
        std::move(options));
  }

  // Bulk work in chunks, each its own transaction, so the write lock is released between
  // chunks. `chunk(txn, cursor)` does one chunk and returns whether more remain; it
  // keeps its progress in `cursor`, which is saved in the file in the same transaction
  // as the chunk's changes. After a crash, calling performChunked with the same `name`
  // resumes from the last committed chunk. The handle completes after the last chunk
  // (or the first failure) with the total counts. Default priority: background. A
  // chunk should end when txn.chunkFull() turns true: then it holds the write lock for
  // about options.chunk_budget (1 ms by default), and transactions of any priority that
  // arrive meanwhile wait no longer than that for it.
  template <class... Ts>
  TransactionHandle performChunked(
      std::string name,
      std::function<absl::StatusOr<bool>(TransactionContext&, std::string& cursor)> chunk,
      TransactionOptions options = TransactionOptions::withPriority(Priority::kBackground)) {
    static_assert(sizeof...(Ts) > 0, "performChunked<Ts...> names the tables it touches");
    return performChunkedErased({&EntityTraits<Ts>::description()...}, std::move(name),
                                std::move(chunk), std::move(options));
  }

  // performChanges and wait: the result of the transaction. When the tables are free
  // and a worker slot is idle, the closure runs on the calling thread (which would only
  // wait otherwise); the rules are the same as on a worker. When the writer is idle as
  // well, the closure runs inside a write transaction of its own, as hand-written
  // SQLite code would: it sees the latest state, cannot conflict with other processes,
  // and commits of other tables wait for it meanwhile.
  template <class... Ts, class Fn>
  absl::StatusOr<TransactionResult> performChangesAndWait(Fn&& closure,
                                                          TransactionOptions options = {}) {
    static_assert(sizeof...(Ts) > 0, "performChangesAndWait<Ts...> names the tables it touches");
    return performChangesErased(
               {&EntityTraits<Ts>::description()...},
               std::function<absl::Status(TransactionContext&)>(std::forward<Fn>(closure)),
               std::move(options), /*caller_waits=*/true)
        .wait();
  }

  // A query over T, run in its own read transaction on a pooled reader connection.
  template <class T>
  Query<T> fetch() {
    return Query<T>(querySource());
  }
  // Looks up one object by primary key (or automatic id); null when absent. Compiles
  // only with the key's fields in order, each of a type a query could compare with it
  // (see PrimaryKeyOf in fetch.h): get<Monster>("orc", 1), never get<Monster>("orc").
  template <class T, class... K>
  requires PrimaryKeyOf<T, K...>
      absl::StatusOr<std::shared_ptr<const typename EntityTraits<T>::Entity>> get(const K&... key) {
    return getByKey<T>(querySource(), key...);
  }

  // Keeps `result` live: after each commit that changes T, `callback` gets the new
  // result and the changeset from the result it saw last (at first: `result`). A stale
  // `result` is brought up to date at once. Callbacks run on `executor` (default: the
  // workspace's notification thread). Cancel with the token. FailedPrecondition after
  // shutdown.
  template <class T>
  absl::StatusOr<SubscriptionToken> subscribe(
      const FetchedResult<T>& result,
      std::type_identity_t<std::function<void(const FetchedResult<T>&, const Changeset&)>> callback,
      Executor* executor = nullptr) {
    using Entity = typename EntityTraits<T>::Entity;
    std::vector<std::shared_ptr<const EntityBase>> initial(result.begin(), result.end());
    auto deliver = [callback = std::move(callback), spec = result.spec()](
                       const std::vector<std::shared_ptr<const EntityBase>>& rows,
                       const Changeset& changes) {
      std::vector<std::shared_ptr<const Entity>> typed;
      typed.reserve(rows.size());
      for (const auto& r : rows) typed.push_back(std::static_pointer_cast<const Entity>(r));
      callback(FetchedResult<T>(std::move(typed), spec, changes.commit_sequence), changes);
    };
    return subscribeErased(Entity::description(), result.spec(), &makeEntity<Entity>,
                           std::move(initial), result.observedSequence(), std::move(deliver),
                           executor);
  }

  // Follows one object: `callback` gets each new version, and null once it is deleted
  // (which ends the subscription). A stale `object` is brought up to date at once.
  template <class E>
  absl::StatusOr<SubscriptionToken> subscribe(
      const std::shared_ptr<const E>& object,
      std::type_identity_t<std::function<void(std::shared_ptr<const E>)>> callback,
      Executor* executor = nullptr) {
    auto deliver = [callback =
                        std::move(callback)](const std::shared_ptr<const EntityBase>& latest) {
      callback(std::static_pointer_cast<const E>(latest));
    };
    return subscribeObjectErased(E::description(), object, &makeEntity<E>, std::move(deliver),
                                 executor);
  }

  // Blocks until every commit made so far has been applied to the subscriptions and
  // their deliveries handed to their executors.
  void awaitObservers();

  // A read snapshot: every query through it sees the same committed state.
  class Snapshot {
   public:
    template <class T>
    Query<T> fetch() {
      return Query<T>(source_);
    }
    template <class T, class... K>
    requires PrimaryKeyOf<T, K...>
        absl::StatusOr<std::shared_ptr<const typename EntityTraits<T>::Entity>> get(
            const K&... key) {
      return getByKey<T>(source_, key...);
    }

   private:
    // Made by the runtime for the length of one snapshot() call.
    friend class internal::Reads;
    explicit Snapshot(internal::QuerySource* source) : source_(source) {}

    internal::QuerySource* source_;
  };
  // Runs `fn(Snapshot&)` -> absl::Status with one read transaction for all its fetches.
  absl::Status snapshot(const std::function<absl::Status(Snapshot&)>& fn);

  // The key-value dictionary stored in the same file.
  Dictionary& dictionary();

  // What changed in T after `since` (by any process), from the change log. OutOfRange
  // when the log no longer reaches back to `since`, which can happen once `since` is
  // change_log_retention commits old (see WorkspaceOptions::change_log_retention):
  // fetch everything instead.
  template <class T>
  absl::StatusOr<Changes<T>> changesSince(Versionstamp since) {
    using Entity = typename EntityTraits<T>::Entity;
    Changes<T> out;
    std::vector<internal::RawRow> rows;
    FLATSTORE_RETURN_IF_ERROR(
        changesSinceErased(Entity::description(), since, &rows, &out.deleted, &out.through));
    for (auto& r : rows) {
      out.changed.push_back(Entity::fromVerified(std::move(r.bytes), r.rowid, r.versionstamp));
    }
    return out;
  }

  // Counts and latency percentiles of transactions, the writer, the WAL and readers,
  // and the errors of background work (checkpoints, the watcher of other processes'
  // commits, a failed sync that stopped the commits).
  Metrics metrics() const;

  // The versionstamp of the latest commit to the file, by any process.
  absl::StatusOr<Versionstamp> latestVersionstamp();

  // Blocks until the background back-fill of every index added to a table in use has
  // finished (queries are correct meanwhile; they read past incomplete indexes).
  void awaitIndexes();

  // The commit sequence of the last commit this workspace made or saw.
  uint64_t lastCommitSequence() const;

  // Stops taking transactions (every later call fails with FailedPrecondition: commits,
  // fetches, get, snapshot, changesSince, latestVersionstamp, subscribe and the
  // dictionary's reads and writes), lets the ones already submitted run and commit,
  // waits for them, and closes the connections. Idempotent: a call overlapping another
  // returns when that one is done. Called inside a closure, an onComplete callback or a
  // subscription callback it would wait for itself, so it fails there with
  // FailedPrecondition. Returns the first error met while closing: the error that
  // stopped the commits after a failed sync (FailedPrecondition), or that of the last
  // checkpoint (ResourceExhausted on a full disk). The destructor cannot return it;
  // metrics() keeps it.
  absl::Status shutdown();

  // The path the workspace was opened with.
  const std::string& path() const;

  // Writes a consistent copy of the file, as committed when the call starts, to the new
  // file `dest`, while this and other processes keep reading and writing. The copy
  // opens as a flatstore file. Uses SQLite's online backup API inside one read
  // transaction: the pages of one snapshot are copied as they are (VACUUM INTO would
  // rebuild every row and index), and WAL mode lets every writer go on meanwhile. The
  // copy is written beside `dest` and renamed into place once complete. Errors:
  // AlreadyExists when `dest` exists (it is never overwritten); NotFound when its
  // directory does not exist; the SQLite error naming the files otherwise, with no
  // `dest` left behind. Thread-safe; it uses a connection of its own and holds no lock
  // of the workspace.
  absl::Status backup(const std::string& dest);

 private:
  explicit Workspace(std::unique_ptr<internal::WorkspaceImpl> impl);
  TransactionHandle performChangesErased(std::vector<const TableDescription*> tables,
                                         std::function<absl::Status(TransactionContext&)> closure,
                                         TransactionOptions options, bool caller_waits = false);
  internal::QuerySource* querySource();
  TransactionHandle performChunkedErased(
      std::vector<const TableDescription*> tables, std::string name,
      std::function<absl::StatusOr<bool>(TransactionContext&, std::string&)> chunk,
      TransactionOptions options);
  absl::Status changesSinceErased(const TableDescription& table, Versionstamp since,
                                  std::vector<internal::RawRow>* changed,
                                  std::vector<std::vector<Value>>* deleted, Versionstamp* through);
  template <class E>
  static std::shared_ptr<const EntityBase> makeEntity(ObjectBuffer buffer, int64_t rowid,
                                                      Versionstamp versionstamp) {
    return E::fromVerified(std::move(buffer), rowid, versionstamp);
  }
  using EntityFactory = std::shared_ptr<const EntityBase> (*)(ObjectBuffer, int64_t, Versionstamp);
  absl::StatusOr<SubscriptionToken> subscribeErased(
      const TableDescription& table, const internal::QuerySpec& spec, EntityFactory factory,
      std::vector<std::shared_ptr<const EntityBase>> initial, uint64_t seen,
      std::function<void(const std::vector<std::shared_ptr<const EntityBase>>&, const Changeset&)>
          deliver,
      Executor* executor);
  absl::StatusOr<SubscriptionToken> subscribeObjectErased(
      const TableDescription& table, std::shared_ptr<const EntityBase> object,
      EntityFactory factory, std::function<void(const std::shared_ptr<const EntityBase>&)> deliver,
      Executor* executor);

  std::unique_ptr<internal::WorkspaceImpl> impl_;
};

}  // namespace flatstore

#endif  // FLATSTORE_WORKSPACE_H_
