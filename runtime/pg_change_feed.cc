#include "runtime/pg_change_feed.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/change_log.h"
#include "runtime/pg_schema.h"

namespace flatstore::internal {

Versionstamp belowFrontier(uint64_t frontier) {
  return frontier == 0 ? Versionstamp() : Versionstamp(frontier - 1, 0xffff);
}

namespace {

// The transactions that pg_locks, read once (one consistent picture of the lock table),
// shows holding their id on a backend without the client mark of lock space $1: the
// low 32 bits of their ids, as x.
constexpr char kForeignIdsSql[] =
    "l AS MATERIALIZED (SELECT locktype, mode, granted, transactionid, pid, "
    "  classid, objid, objsubid FROM pg_locks), "
    "foreign_ids AS (SELECT t.transactionid::text::bigint AS x FROM l t "
    "  WHERE t.locktype = 'transactionid' AND t.mode = 'ExclusiveLock' AND t.granted "
    "  AND NOT EXISTS (SELECT 1 FROM l a WHERE a.pid = t.pid AND "
    "    a.locktype = 'advisory' AND a.granted AND a.objsubid = 1 AND "
    "    a.classid = $1::bigint::oid AND a.objid = 0)) ";

}  // namespace

void queueLocksBefore(PgConnection& c, int32_t space) {
  // First the backends that have taken a transaction id (published before it is locked),
  // then, after it, the lock table: the transactions it shows as foreign, and the
  // backends holding the client mark.
  c.queue(
      "SELECT pid, backend_xid::text::bigint FROM pg_stat_get_activity(NULL) "
      "WHERE backend_xid IS NOT NULL",
      {}, "change-log frontier");
  c.queue(absl::StrCat("WITH ", kForeignIdsSql,
                       "SELECT x, NULL::integer FROM foreign_ids "
                       "UNION ALL SELECT NULL, pid FROM l WHERE locktype = 'advisory' AND granted "
                       "  AND objsubid = 1 AND classid = $1::bigint::oid AND objid = 0"),
          {PgParam::int64(space)}, "change-log frontier");
  // Ends the implicit transaction the reads ran in (a warning, which is ignored, when
  // there is none), so that the BEGIN after it still chooses its isolation level.
  c.queue("COMMIT", {}, "change-log frontier");
}

namespace {

// The low 32 bits of the ids of the transactions that the reads queueLocksBefore queued
// show as foreign, sorted: those pg_locks shows holding their id on a backend without
// the client mark, and those on a backend that had taken its id when
// pg_stat_get_activity was read and held no client mark when pg_locks was read next.
absl::StatusOr<std::vector<uint32_t>> foreignBefore(const PgResult& ids, const PgResult& locks) {
  std::vector<uint32_t> out;
  std::vector<int64_t> marked;
  for (int i = 0; i < locks.rows(); ++i) {
    if (!locks.isNull(i, 0)) {
      FLATSTORE_ASSIGN_OR_RETURN(int64_t x, locks.getInt64(i, 0));
      out.push_back(static_cast<uint32_t>(x));
    } else {
      FLATSTORE_ASSIGN_OR_RETURN(int64_t pid, locks.getInt64(i, 1));
      marked.push_back(pid);
    }
  }
  std::sort(marked.begin(), marked.end());
  for (int i = 0; i < ids.rows(); ++i) {
    FLATSTORE_ASSIGN_OR_RETURN(int64_t pid, ids.getInt64(i, 0));
    FLATSTORE_ASSIGN_OR_RETURN(int64_t x, ids.getInt64(i, 1));
    if (!std::binary_search(marked.begin(), marked.end(), pid)) {
      out.push_back(static_cast<uint32_t>(x));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

absl::StatusOr<uint64_t> frontierOf(PgConnection& c, int32_t space, std::vector<PgResult>* queued) {
  // The snapshot's running transactions that the lock read after it does not show as
  // foreign, oldest first, each with whether it rolled back; then the snapshot's xmax.
  FLATSTORE_ASSIGN_OR_RETURN(
      PgResult r,
      c.query(absl::StrCat(
                  "WITH s AS MATERIALIZED (SELECT pg_current_snapshot() AS snap), ", kForeignIdsSql,
                  "SELECT x::text::bigint, pg_xact_status(x) = 'aborted' "
                  "  FROM s, pg_snapshot_xip(snap) AS x "
                  "  WHERE x::text::bigint % 4294967296 NOT IN (SELECT x FROM foreign_ids) "
                  "UNION ALL SELECT pg_snapshot_xmax(snap)::text::bigint, NULL FROM s "
                  "ORDER BY 1"),
              {PgParam::int64(space)}, "change-log frontier"));
  // The reads before the snapshot, when queueLocksBefore queued them.
  std::vector<uint32_t> before;
  if (queued != nullptr) {
    *queued = c.takeQueuedResults();
    if (queued->size() < kLocksBeforeStatements) {
      return absl::InternalError("the change-log frontier's reads before the snapshot did not run");
    }
    FLATSTORE_ASSIGN_OR_RETURN(before, foreignBefore((*queued)[0], (*queued)[1]));
    queued->erase(queued->begin(), queued->begin() + kLocksBeforeStatements);
  }
  for (int i = 0; i < r.rows(); ++i) {
    FLATSTORE_ASSIGN_OR_RETURN(int64_t x, r.getInt64(i, 0));
    if (r.isNull(i, 1)) return static_cast<uint64_t>(x);  // the xmax, last
    FLATSTORE_ASSIGN_OR_RETURN(bool aborted, r.getBool(i, 1));
    if (aborted) continue;  // wrote nothing
    if (std::binary_search(before.begin(), before.end(), static_cast<uint32_t>(x))) continue;
    return static_cast<uint64_t>(x);
  }
  return absl::InternalError("the change-log frontier's snapshot has no xmax");
}

absl::StatusOr<uint64_t> prunedThrough(PgConnection& c, const std::string& schema) {
  FLATSTORE_ASSIGN_OR_RETURN(
      PgResult r, c.query(absl::StrCat("SELECT value FROM ", pgQuote(schema),
                                       ".flatstore_meta WHERE key = 'log_pruned_through'"),
                          {}, "change log"));
  if (r.rows() == 0) return 0;
  FLATSTORE_ASSIGN_OR_RETURN(int64_t v, r.getInt64(0, 0));
  return static_cast<uint64_t>(v);
}

// ---------------------------------------------------------------------------------------
// Other clients' commits

namespace {

class PgCommitFeed : public CommitFeed {
 public:
  static absl::StatusOr<std::unique_ptr<PgCommitFeed>> open(PgEngine* engine) {
    int wake = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake < 0) return absl::ResourceExhaustedError("eventfd failed for the commit feed");
    std::unique_ptr<PgCommitFeed> feed(new PgCommitFeed(engine, wake));
    FLATSTORE_RETURN_IF_ERROR(feed->listen());
    // Start after what has ended now.
    FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> c, engine->acquire());
    const int32_t space = pgLockSpace(engine->schema());
    queueLocksBefore(*c, space);
    std::vector<PgResult> queued;
    absl::StatusOr<uint64_t> now = frontierOf(*c, space, &queued);
    engine->release(std::move(c));
    FLATSTORE_RETURN_IF_ERROR(now.status());
    feed->cursor_ = *now;
    return feed;
  }
  ~PgCommitFeed() override { ::close(wake_); }

  absl::StatusOr<bool> wait(absl::Duration timeout) override {
    if (listener_ == nullptr || listener_->broken()) {
      FLATSTORE_RETURN_IF_ERROR(listen());
      return true;  // notifications may have been lost meanwhile: read the log
    }
    if (drain()) return true;
    pollfd fds[2] = {{PQsocket(listener_->get()), POLLIN, 0}, {wake_, POLLIN, 0}};
    int ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(timeout)));
    int n = ::poll(fds, 2, ms);
    if (n <= 0) return false;
    if ((fds[1].revents & POLLIN) != 0) {
      uint64_t count;
      (void)!::read(wake_, &count, sizeof count);
      return false;
    }
    if (PQconsumeInput(listener_->get()) == 0) {
      listener_.reset();
      return true;
    }
    return drain();
  }

  void interrupt() override {
    uint64_t one = 1;
    (void)!::write(wake_, &one, sizeof one);
  }

  absl::StatusOr<std::vector<ForeignCommit>> read() override {
    std::vector<ForeignCommit> out;
    FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> c, engine_->acquire());
    absl::Status st = readInto(*c, &out);
    giveBack(engine_, std::move(c));
    FLATSTORE_RETURN_IF_ERROR(st);
    return out;
  }

 private:
  PgCommitFeed(PgEngine* engine, int wake) : engine_(engine), wake_(wake) {}

  absl::Status listen() {
    FLATSTORE_ASSIGN_OR_RETURN(listener_, engine_->connect());
    return listener_->execute(absl::StrCat("LISTEN ", pgQuote(engine_->channel())), "listen");
  }

  // Takes the notifications libpq has read; true if one came from another client (the
  // payload's second word is the committing origin; see pg_engine.h).
  bool drain() {
    PQconsumeInput(listener_->get());
    const std::string own = absl::StrCat(" ", engine_->origin(), " ");
    bool foreign = false;
    while (PGnotify* n = PQnotifies(listener_->get())) {
      foreign = foreign || std::string_view(n->extra).find(own) == std::string_view::npos;
      PQfreemem(n);
    }
    return foreign;
  }

  absl::Status readInto(PgConnection& c, std::vector<ForeignCommit>* out) {
    // The locks read before the snapshot, the transaction and the frontier in one round
    // trip.
    const int32_t space = pgLockSpace(engine_->schema());
    queueLocksBefore(c, space);
    c.queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", {}, "commit feed");
    std::vector<PgResult> queued;
    FLATSTORE_ASSIGN_OR_RETURN(uint64_t below, frontierOf(c, space, &queued));
    FLATSTORE_ASSIGN_OR_RETURN(uint64_t pruned, prunedThrough(c, engine_->schema()));
    if (pruned > 0 && cursor_ <= pruned) {
      cursor_ = std::max(cursor_, below);
      return absl::OutOfRangeError(
          absl::StrCat("the change log no longer holds the commits after transaction ", cursor_,
                       " that the commit feed had not read; subscriptions must fetch again"));
    }
    FLATSTORE_ASSIGN_OR_RETURN(
        PgResult r,
        c.query(absl::StrCat("SELECT xid, origin, changes FROM ", pgQuote(engine_->schema()),
                             ".flatstore_changes WHERE xid >= $1 AND xid < $2 AND origin <> $3 "
                             "ORDER BY xid, table_id"),
                {PgParam::int64(static_cast<int64_t>(cursor_)),
                 PgParam::int64(static_cast<int64_t>(below)), PgParam::int64(engine_->origin())},
                "commit feed"));
    for (int i = 0; i < r.rows(); ++i) {
      FLATSTORE_ASSIGN_OR_RETURN(int64_t xid, r.getInt64(i, 0));
      FLATSTORE_ASSIGN_OR_RETURN(int64_t origin, r.getInt64(i, 1));
      FLATSTORE_ASSIGN_OR_RETURN(std::span<const uint8_t> blob, r.getBytes(i, 2));
      FLATSTORE_ASSIGN_OR_RETURN(std::vector<LogRecord> records, decodeLogRecords(blob));
      Versionstamp vs(static_cast<uint64_t>(xid), 0);
      if (out->empty() || out->back().versionstamp != vs) {
        out->push_back(ForeignCommit{vs, origin, {}});
      }
      auto& into = out->back().records;
      into.insert(into.end(), std::make_move_iterator(records.begin()),
                  std::make_move_iterator(records.end()));
    }
    // The commits are read: the cursor moves past them only now, so that an error above
    // leaves them to the next read. The transaction only read; a connection that fails
    // to end it is dropped when given back.
    c.execute("ROLLBACK", "commit feed").IgnoreError();
    cursor_ = std::max(cursor_, below);
    return absl::OkStatus();
  }

  PgEngine* const engine_;
  const int wake_;
  std::unique_ptr<PgConnection> listener_;
  uint64_t cursor_ = 0;  // the feed has read every commit below this transaction id
};

}  // namespace

absl::StatusOr<std::unique_ptr<CommitFeed>> PgEngine::openCommitFeed() {
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<PgCommitFeed> f, PgCommitFeed::open(this));
  return std::unique_ptr<CommitFeed>(std::move(f));
}

}  // namespace flatstore::internal
