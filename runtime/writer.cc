#include "runtime/writer.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/change_log.h"
#include "runtime/query_exec.h"

namespace flatstore::internal {
namespace {

std::string keyText(const std::vector<Value>& key) {
  std::string out = "(";
  for (size_t i = 0; i < key.size(); ++i) {
    if (i > 0) out += ", ";
    out += key[i].toString();
  }
  return out + ")";
}

constexpr char kConflictPayload[] = "flatstore.dev/conflict";

int pageSize(Connection& c) {
  int size = 4096;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(c.db(), "PRAGMA page_size", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    size = sqlite3_column_int(st, 0);
  }
  sqlite3_finalize(st);
  return size;
}

}  // namespace

absl::Status conflictError(const TableState& table) {
  absl::Status s = absl::AbortedError(
      absl::StrCat("table ", av(table.desc.table_name),
                   " was changed by another process since the transaction read it"));
  s.SetPayload(kConflictPayload, absl::Cord("1"));
  return s;
}

bool isConflict(const absl::Status& status) {
  return status.GetPayload(kConflictPayload).has_value();
}

Writer::Writer(std::unique_ptr<Connection> connection, WriterOptions options,
               std::function<void(CommitEvent)> publish, MetricsRegistry* metrics)
    : options_(options),
      publish_(std::move(publish)),
      metrics_(metrics),
      db_(std::move(connection)),
      page_size_(pageSize(*db_)) {
  // Passive checkpoints run on a connection of their own. Without it (the file could
  // not be opened twice) they are skipped and restarts keep the WAL bounded.
  // A connection learns that the file is in WAL mode at its first read; until then it
  // would checkpoint nothing.
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::open(db_->path(), false);
  if (c.ok() && (*c)->exec("SELECT count(*) FROM sqlite_master", "checkpointer").ok()) {
    checkpointer_ = std::move(*c);
  }
  // Replaces SQLite's automatic checkpoints: checkpoints are the writer's decision.
  sqlite3_wal_hook(db_->db(), &Writer::onWalCommit, this);
  thread_ = std::thread([this] { loop(); });
}

Writer::~Writer() { stop(); }

void Writer::submit(std::unique_ptr<CommitRequest> request) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_[queueOf(request->priority)].push_back(std::move(request));
      return;
    }
  }
  request->complete(absl::FailedPreconditionError("the workspace is shut down"));
}

namespace {
thread_local const Writer* current_writer = nullptr;
}  // namespace

bool onWriterThread() { return current_writer != nullptr; }

namespace {

// Marks the current thread as holding the writer role for a scope.
class WriterScope {
 public:
  explicit WriterScope(const Writer* w) : previous_(current_writer) { current_writer = w; }
  ~WriterScope() { current_writer = previous_; }
  WriterScope(const WriterScope&) = delete;
  WriterScope& operator=(const WriterScope&) = delete;

 private:
  const Writer* previous_;
};

}  // namespace

void Writer::submitOrCommit(std::unique_ptr<CommitRequest> request) {
  // Under the role already (a completion callback), or a group is being committed:
  // the mailbox.
  if (current_writer != nullptr || !role_.TryLock()) {
    submit(std::move(request));
    return;
  }
  std::vector<std::unique_ptr<CommitRequest>> group;
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      // Into the mailbox and out again with whatever waits there, without releasing
      // mu_: the writer thread never sees it queued.
      queue_[queueOf(request->priority)].push_back(std::move(request));
      takeGroup(&group);
      if (!group.empty()) leaders_ += 1;
    }
  }
  if (request != nullptr) {  // stopped
    role_.Unlock();
    request->complete(absl::FailedPreconditionError("the workspace is shut down"));
    return;
  }
  if (group.empty()) {  // a background request, queued while background work is paused
    role_.Unlock();
    return;
  }
  leadGroup(group);
}

void Writer::leadGroup(std::vector<std::unique_ptr<CommitRequest>>& group) {
  {
    WriterScope scope(this);
    commitAndNote(group);
  }
  role_.Unlock();
  absl::MutexLock lock(&mu_);
  leaders_ -= 1;
}

void Writer::commitQueued() {
  if (current_writer != nullptr || !role_.TryLock()) return;
  std::vector<std::unique_ptr<CommitRequest>> group;
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) takeGroup(&group);
    if (!group.empty()) leaders_ += 1;
  }
  if (group.empty()) {
    role_.Unlock();
    return;
  }
  leadGroup(group);
}

std::unique_ptr<CommitRequest> Writer::commitIfIdle(std::unique_ptr<CommitRequest> request) {
  if (current_writer != nullptr || !role_.TryLock()) return request;
  bool idle;
  {
    absl::MutexLock lock(&mu_);
    idle =
        !stopping_ && !queued() && !(background_paused_ && request->priority == kBackgroundLevel);
    if (idle) leaders_ += 1;
  }
  if (!idle) {
    role_.Unlock();
    return request;
  }
  std::vector<std::unique_ptr<CommitRequest>> group;
  group.push_back(std::move(request));
  leadGroup(group);
  return nullptr;
}

void Writer::takeGroup(std::vector<std::unique_ptr<CommitRequest>>* group) {
  int64_t bytes = 0;
  for (int priority = 0; priority < kPriorityLevels; ++priority) {
    // User-initiated transactions commit without background work (a bulk chunk would
    // make their commit as slow as its own); the background goes in the next group.
    if (priority == kBackgroundLevel && !group->empty() &&
        group->front()->priority == kUserInitiatedLevel) {
      break;
    }
    if (priority == kBackgroundLevel && background_paused_ && !stopping_) break;
    auto& queue = queue_[priority];
    while (!queue.empty() && static_cast<int>(group->size()) < options_.max_group_transactions &&
           (group->empty() || bytes + queue.front()->bytes <= options_.max_group_bytes)) {
      bytes += queue.front()->bytes;
      group->push_back(std::move(queue.front()));
      queue.pop_front();
    }
  }
}

absl::Status Writer::runSync(std::function<absl::Status(Connection&)> fn, bool may_join) {
  if (current_writer == this) {
    role_.AssertHeld();
    if (!db_->autocommit() && may_join) {
      FLATSTORE_RETURN_IF_ERROR(db_->exec("SAVEPOINT joined", "closure"));
      absl::Status s = fn(*db_);
      if (!s.ok()) FLATSTORE_RETURN_IF_ERROR(db_->exec("ROLLBACK TO joined", "closure"));
      FLATSTORE_RETURN_IF_ERROR(db_->exec("RELEASE joined", "closure"));
      return s;
    }
    if (!db_->autocommit()) {
      return absl::FailedPreconditionError(
          "a closure running under the write lock cannot create tables or indexes; use "
          "the tables before, or from outside the closure");
    }
    FLATSTORE_RETURN_IF_ERROR(db_->exec("BEGIN IMMEDIATE", "catalog"));
    absl::Status s = fn(*db_);
    if (s.ok()) s = db_->exec("COMMIT", "catalog");
    if (!s.ok()) db_->rollbackQuietly();
    return s;
  }
  struct Done {
    absl::Mutex mu;
    bool done ABSL_GUARDED_BY(mu) = false;
    absl::Status status ABSL_GUARDED_BY(mu);
  };
  auto done = std::make_shared<Done>();
  auto request = std::make_unique<CommitRequest>();
  request->apply = std::move(fn);
  request->complete = [done](absl::StatusOr<TransactionResult> r) {
    absl::MutexLock lock(&done->mu);
    done->status = r.status();
    done->done = true;
  };
  submit(std::move(request));
  absl::MutexLock lock(&done->mu);
  done->mu.Await(absl::Condition(&done->done));
  return done->status;
}

void Writer::addBackfill(TableState* table) {
  absl::MutexLock lock(&mu_);
  backfills_.push_back(table);
}

void Writer::awaitBackfills() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return backfills_.empty() || stopping_; };
  mu_.Await(absl::Condition(&idle));
}

uint64_t Writer::lastCommitSequence() const {
  absl::MutexLock lock(&mu_);
  return last_sequence_;
}

void Writer::stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // A thread that took the role before stopping_ was set finishes its group.
  absl::MutexLock lock(&mu_);
  auto no_leaders = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return leaders_ == 0; };
  mu_.Await(absl::Condition(&no_leaders));
}

// Runs inside COMMIT, under the role.
int Writer::onWalCommit(void* self, sqlite3*, const char*,
                        int pages) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  auto* w = static_cast<Writer*>(self);
  w->wal_pages_ = pages;
  w->wal_high_pages_ = std::max(w->wal_high_pages_, pages);
  return SQLITE_OK;
}

bool Writer::resetWal(int mode) {
  // Waits for readers on older snapshots, but only briefly: meanwhile no group commits.
  // Such a reader may end at any moment, so the wait looks every millisecond: the
  // back-off meant for other processes' write locks pauses up to 96 ms and, with readers
  // that overlap, overshot the budget in about a third of the tries.
  db_->setBusyTimeout(options_.checkpoint_wait, absl::Milliseconds(1));
  int rc = sqlite3_wal_checkpoint_v2(db_->db(), nullptr, mode, nullptr, nullptr);
  db_->setBusyTimeout(options_.lock_timeout);
  bool ok = rc == SQLITE_OK;
  if (ok) {
    // The next commit writes from the WAL's beginning.
    wal_pages_ = checkpointed_pages_ = 0;
    if (mode == SQLITE_CHECKPOINT_TRUNCATE) wal_high_pages_ = 0;
  }
  if (metrics_ != nullptr) metrics_->recordCheckpoint(/*truncating=*/true, ok);
  return ok;
}

void Writer::pauseBackground(bool paused) {
  absl::MutexLock lock(&mu_);
  background_paused_ = paused;
}

void Writer::passiveCheckpoint() {
  // On a connection of its own, without the role: group commits go on meanwhile
  // (SQLite lets one checkpointer copy frames while a writer appends new ones). Each
  // round copies back what the commits during the previous round appended, until a
  // round finds only a short tail of new frames (or after three rounds).
  //
  // Background commits wait until the tail below is copied. A bulk import appends
  // frames as fast as the rounds copy them back: the tail stayed long (commits waited
  // milliseconds for it), or the WAL outgrew its limit and the restarting checkpoint
  // stopped every commit for tens of milliseconds. User-initiated and default commits
  // go on, and their few frames make a short tail.
  pauseBackground(true);
  absl::Cleanup resume = [this] { pauseBackground(false); };
  const int short_tail = std::max(64, options_.checkpoint_pages / 16);
  constexpr int kMaxRounds = 3;
  int log_frames = 0;
  int done_frames = 0;
  int rc = SQLITE_MISUSE;
  for (int round = 0; round < kMaxRounds && checkpointer_ != nullptr; ++round) {
    int before = log_frames;
    rc = sqlite3_wal_checkpoint_v2(checkpointer_->db(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                   &log_frames, &done_frames);
    if (metrics_ != nullptr) metrics_->recordCheckpoint(/*truncating=*/false, rc == SQLITE_OK);
    // The WAL started over, or the round found little new. Or the WAL grew past half
    // its bound: commits go on during the rounds, and the tail below (which they wait
    // for) is what lets the WAL start over, so more rounds would trade a shorter wait
    // for a larger WAL. A reader of older frames that held the rest back (a closure's
    // snapshot, mostly short) gets another round.
    if (rc != SQLITE_OK || log_frames < before) break;
    if (round > 0 && log_frames - before <= short_tail && done_frames == log_frames) break;
    if (walBytes(log_frames) > options_.wal_size_limit / 2) break;
  }
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) return;
  absl::MutexLock role(&role_);
  if (rc == SQLITE_OK && done_frames == log_frames) {
    // Everything was copied back but the frames committed during the last round. SQLite
    // starts the WAL over only when a write transaction begins with every frame copied
    // back and no reader on its frames, which under a steady stream of commits never
    // happens by itself; the WAL would grow to wal_size_limit, and with read
    // transactions that overlap (each starting while frames remain to copy) past it. So
    // copy that tail too, with the role (no commit in between): the next commit then
    // writes from the WAL's beginning, unless a reader of older frames is still open.
    // Commits wait for this tail and its two syncs; the rounds keep it short.
    int tail_log = 0;
    int tail_done = 0;
    if (sqlite3_wal_checkpoint_v2(db_->db(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &tail_log,
                                  &tail_done) == SQLITE_OK) {
      log_frames = tail_log;
    }
  }
  // The next one is due when as many frames again were appended (readers holding back
  // older frames must not make every group checkpoint again).
  checkpointed_pages_ = std::max(0, log_frames);
}

int64_t Writer::walBytes(int frames) const {
  // The WAL header, then per frame a header and a page.
  return frames == 0 ? 0 : 32 + static_cast<int64_t>(frames) * (page_size_ + 24);
}

bool Writer::busy() const {
  if (committing_.load(std::memory_order_relaxed)) return true;
  absl::MutexLock lock(&mu_);
  return queued();
}

void Writer::commitAndNote(std::vector<std::unique_ptr<CommitRequest>>& group) {
  committing_.store(true, std::memory_order_relaxed);
  commitGroup(group);
  committing_.store(false, std::memory_order_relaxed);
  // The WAL restarted from its beginning.
  if (wal_pages_ < checkpointed_pages_) checkpointed_pages_ = 0;
  if (metrics_ != nullptr) metrics_->recordWal(walBytes(wal_high_pages_));
  bool due = restartDue() || wal_pages_ - checkpointed_pages_ >= options_.checkpoint_pages;
  if (due) {
    absl::MutexLock lock(&mu_);
    checkpoint_due_ = true;
  }
}

bool Writer::restartDue() const {
  int64_t used = walBytes(wal_pages_);
  return used > options_.wal_size_limit && used >= next_restart_bytes_;
}

bool Writer::runCheckpoints() {
  if (restartDue()) {
    // Readers that overlap keep the WAL from ever restarting by itself: a restarting
    // checkpoint waits for them, so the next commit writes from the WAL's beginning
    // and the file stops growing (it keeps its size; reusing it costs no allocation).
    if (resetWal(SQLITE_CHECKPOINT_RESTART)) {
      next_restart_bytes_ = 0;
      return false;
    }
    // Some reader held on to an old snapshot; commits go on, and the next try comes
    // when the WAL grew by another quarter of its limit (passive checkpoints continue
    // meanwhile).
    next_restart_bytes_ =
        32 + static_cast<int64_t>(wal_pages_) * (page_size_ + 24) + options_.wal_size_limit / 4;
  }
  return wal_pages_ - checkpointed_pages_ >= options_.checkpoint_pages;
}

void Writer::loop() {
  current_writer = this;
  while (true) {
    std::vector<std::unique_ptr<CommitRequest>> group;
    bool exiting = false;
    bool checkpoint_due = false;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return queued() || stopping_ || !backfills_.empty() || checkpoint_due_;
      };
      mu_.Await(absl::Condition(&ready));
    }
    bool passive = false;
    {
      // Another thread may hold the role; what it leaves queued is the next group.
      absl::MutexLock role(&role_);
      {
        absl::MutexLock lock(&mu_);
        exiting = !queued() && stopping_;
        checkpoint_due = std::exchange(checkpoint_due_, false);
        takeGroup(&group);
      }
      if (exiting) {
        // A clean shutdown leaves an empty WAL behind.
        resetWal(SQLITE_CHECKPOINT_TRUNCATE);
        return;
      }
      if (!group.empty()) {
        commitAndNote(group);
      } else if (!checkpoint_due) {
        // Idle: one bounded back-fill step, then look at the mailbox again.
        backfillOnce();
      }
      if (checkpoint_due) passive = runCheckpoints();
    }
    if (passive) passiveCheckpoint();
  }
}

bool Writer::backfillOnce() {
  TableState* table = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (backfills_.empty()) return false;
    table = backfills_.front();
  }
  bool more = false;
  absl::Status s = db_->exec("BEGIN IMMEDIATE", "index back-fill");
  if (s.ok()) {
    absl::StatusOr<bool> step = backfillStep(*db_, *table, options_.backfill_batch);
    if (step.ok()) {
      more = *step;
      s = db_->exec("COMMIT", "index back-fill");
    } else {
      s = step.status();
    }
  }
  if (!s.ok()) db_->rollbackQuietly();
  // A failed back-fill (for example duplicates under a new unique index) leaves the
  // index incomplete; queries keep reading past it.
  if (!s.ok() || !more) {
    absl::MutexLock lock(&mu_);
    backfills_.erase(backfills_.begin());
  }
  return more;
}

namespace {

bool indexChanged(const EncodedChange& c, size_t x) {
  return c.op == EncodedChange::Op::kInsert || x >= c.old_index_values.size() ||
         !(c.old_index_values[x] == c.index_values[x]);
}

}  // namespace

// The first pass of a request: removes what its deletions and key or unique-value
// changes free, so that the second pass can take over freed keys and values in any
// order (a closure may delete b and give a b's key, or swap two keys).
absl::Status Writer::applyRemovals(const EncodedChange& c) {
  TableState& t = *c.table;
  const TableDescription& d = t.desc;
  std::string_view what = d.table_name;
  bool remove_row =
      c.op == EncodedChange::Op::kDelete || (c.op == EncodedChange::Op::kUpdate && c.key_changed);
  if (remove_row) {
    FLATSTORE_ASSIGN_OR_RETURN(Statement * s, db_->cached(t.delete_sql, what));
    s->bindInt(1, c.rowid);
    FLATSTORE_RETURN_IF_ERROR(s->run(what));
  }
  for (size_t x = 0; x < d.indexes.size(); ++x) {
    bool remove_entry =
        c.op == EncodedChange::Op::kDelete ||
        (c.op == EncodedChange::Op::kUpdate && d.indexes[x].unique && indexChanged(c, x));
    if (!remove_entry) continue;
    FLATSTORE_ASSIGN_OR_RETURN(Statement * is, db_->cached(t.index_delete_sql[x], what));
    is->bindInt(1, c.rowid);
    FLATSTORE_RETURN_IF_ERROR(is->run(what));
  }
  return absl::OkStatus();
}

// The second pass: writes inserted and updated objects and their index entries.
absl::Status Writer::applyWrites(EncodedChange& c, int64_t vs) {
  if (c.op != EncodedChange::Op::kInsert && c.op != EncodedChange::Op::kUpdate) {
    return absl::OkStatus();
  }
  TableState& t = *c.table;
  const TableDescription& d = t.desc;
  std::string_view what = d.table_name;
  bool insert = c.op == EncodedChange::Op::kInsert;
  // An update keeps its row in place unless its key changed (then the first pass
  // removed it and it is inserted again with the same rowid).
  const std::string& sql = insert          ? t.insert_sql
                           : c.key_changed ? t.reinsert_sql
                                           : t.update_bytes_sql;
  FLATSTORE_ASSIGN_OR_RETURN(Statement * s, db_->cached(sql, what));
  int i = 1;
  if (!insert && c.key_changed) s->bindInt(i++, c.rowid);
  if (insert || c.key_changed) {
    for (const Value& k : c.key) s->bind(i++, k);
  }
  s->bindBlobStatic(i++, c.bytes.span());
  s->bindInt(i++, vs);
  if (!insert && !c.key_changed) s->bindInt(i++, c.rowid);
  absl::Status st = s->run(what);
  if (absl::IsAlreadyExists(st)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "table ", av(what), ": an object with primary key ", keyText(c.key), " already exists"));
  }
  FLATSTORE_RETURN_IF_ERROR(st);
  if (insert) c.rowid = db_->lastInsertRowid();
  for (size_t x = 0; x < d.indexes.size(); ++x) {
    if (!indexChanged(c, x)) continue;
    // Entries of new objects and unique entries removed by the first pass are inserted;
    // other changed entries are updated in place.
    bool fresh = insert || d.indexes[x].unique;
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement * is, db_->cached(fresh ? t.index_insert_sql[x] : t.index_upsert_sql[x], what));
    is->bindInt(1, c.rowid);
    is->bind(2, c.index_values[x]);
    absl::Status ist = is->run(what);
    if (absl::IsAlreadyExists(ist)) {
      return absl::AlreadyExistsError(
          absl::StrCat("table ", av(what), ": unique field '", av(d.indexes[x].field_path),
                       "' already has value ", c.index_values[x].toString()));
    }
    FLATSTORE_RETURN_IF_ERROR(ist);
  }
  return absl::OkStatus();
}

absl::Status Writer::applyRequest(CommitRequest& request, Versionstamp vs,
                                  TransactionResult* result) {
  if (request.produce) {
    FLATSTORE_RETURN_IF_ERROR(request.produce(*db_, request));
  }
  // Whether the closure's run is stale and runs again here, inside the transaction.
  bool stale = false;
  if (!request.predecessors.empty()) {
    FLATSTORE_ASSIGN_OR_RETURN(stale, readsOverwritten(request));
  }
  if (!stale && !request.read_tables.empty()) {
    std::vector<int64_t> ids;
    ids.reserve(request.read_tables.size());
    for (const TableState* t : request.read_tables) ids.push_back(t->id);
    FLATSTORE_ASSIGN_OR_RETURN(
        int changed, firstChangedSince(*db_, request.snapshot_sequence, options_.origin, ids));
    if (changed >= 0) {
      // Another process changed a table. A request that still holds its tables runs
      // again on a fresh snapshot; one that gave them to the next closures already runs
      // again here, so that it stays ahead of them.
      if (!request.released) {
        return conflictError(*request.read_tables[static_cast<size_t>(changed)]);
      }
      stale = true;
    }
  }
  if (stale) {
    if (!request.rerun) return absl::InternalError("a stale request without a re-run");
    request.changes.clear();
    request.apply = nullptr;
    FLATSTORE_RETURN_IF_ERROR(request.rerun(*db_, request));
  }
  if (request.apply) FLATSTORE_RETURN_IF_ERROR(request.apply(*db_));
  for (const EncodedChange& c : request.changes) FLATSTORE_RETURN_IF_ERROR(applyRemovals(c));
  for (EncodedChange& c : request.changes) {
    FLATSTORE_RETURN_IF_ERROR(applyWrites(c, vs.packed()));
    switch (c.op) {
      case EncodedChange::Op::kInsert:
        result->inserted += 1;
        break;
      case EncodedChange::Op::kUpdate:
        result->updated += 1;
        break;
      case EncodedChange::Op::kDelete:
        result->deleted += 1;
        break;
      case EncodedChange::Op::kNone:
        break;
    }
  }
  if (!request.changes.empty()) result->versionstamp = vs;
  return absl::OkStatus();
}

namespace {

template <class Set>
bool intersect(const Set& a, const Set& b) {
  const Set& small = a.size() <= b.size() ? a : b;
  const Set& large = a.size() <= b.size() ? b : a;
  for (const auto& x : small) {
    if (large.contains(x)) return true;
  }
  return false;
}

}  // namespace

std::string keyOf(int64_t table_id, const std::vector<Value>& key) {
  return absl::StrCat(table_id, ":", PendingTable::encodeKey(key));
}

bool WriteSet::touches(const ReadSet& reads) const {
  for (int64_t table : wide) {
    if (reads.scanned.contains(table)) return true;
    for (const auto& [t, rowid] : reads.rowids) {
      if (t == table) return true;
    }
    std::string prefix = absl::StrCat(table, ":");
    for (const std::string& k : reads.keys) {
      if (k.starts_with(prefix)) return true;
    }
  }
  return intersect(reads.scanned, tables) || intersect(reads.rowids, rowids) ||
         intersect(reads.keys, keys);
}

absl::StatusOr<bool> Writer::readsOverwritten(const CommitRequest& request) const {
  for (const std::shared_ptr<InFlight>& p : request.predecessors) {
    if (p->failed) continue;  // the snapshot lacks it, and so does the database
    if (p->sequence == 0) {
      // Same-priority predecessors are queued ahead; others are waited for.
      return absl::InternalError("a pipelined request reached the writer before its predecessor");
    }
    if (p->sequence <= request.snapshot_sequence) continue;  // the snapshot has it
    if (p->applied.touches(request.reads)) return true;
  }
  return false;
}

void Writer::noteApplied(CommitRequest& request, uint64_t seq) {
  request.in_flight->sequence = seq;
  request.in_flight->applied = writesOf(request.changes);
}

WriteSet writesOf(const std::vector<EncodedChange>& changes) {
  WriteSet w;
  for (const EncodedChange& c : changes) {
    if (c.op == EncodedChange::Op::kNone) continue;
    w.tables.insert(c.table->id);
    // An insert not yet applied has no rowid; with an automatic id, no key either.
    if (c.rowid != 0) {
      w.rowids.emplace(c.table->id, c.rowid);
    } else if (c.key.empty()) {
      w.wide.insert(c.table->id);
    }
    if (!c.key.empty()) w.keys.insert(keyOf(c.table->id, c.key));
    if (c.key_changed) w.wide.insert(c.table->id);
  }
  return w;
}

absl::Status Writer::writeLog(const std::vector<std::unique_ptr<CommitRequest>>& group,
                              const std::vector<absl::StatusOr<TransactionResult>>& results,
                              uint64_t seq, Versionstamp* last_change) {
  std::string blob;
  Versionstamp& last = *last_change;
  for (size_t i = 0; i < group.size(); ++i) {
    if (!results[i].ok() || group[i]->changes.empty()) continue;
    bool changed = false;
    for (const EncodedChange& c : group[i]->changes) {
      if (c.op == EncodedChange::Op::kNone) continue;
      changed = true;
      LogRecord r;
      r.table_id = c.table->id;
      r.rowid = c.rowid;
      r.position = static_cast<uint16_t>(i);
      r.deleted = c.op == EncodedChange::Op::kDelete;
      if (r.deleted) r.key = c.key;
      appendLogRecord(r, &blob);
    }
    if (changed) last = results[i]->versionstamp;
  }
  // Every commit writes its row, even with nothing changed: the newest row carries the
  // commit sequence.
  const char* what = "change log";
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement * s,
      db_->cached("INSERT INTO flatstore_changes(seq, origin, changes, last_vs) VALUES(?, ?, ?, ?)",
                  what));
  s->bindInt(1, static_cast<int64_t>(seq));
  s->bindInt(2, options_.origin);
  s->bindBlobStatic(3, {reinterpret_cast<const uint8_t*>(blob.data()), blob.size()});
  s->bindInt(4, last.packed());
  FLATSTORE_RETURN_IF_ERROR(s->run(what));
  // Keep the log bounded: every 256 commits, drop entries older than the retention
  // (at least the newest row stays).
  int64_t horizon = static_cast<int64_t>(seq) - std::max<int64_t>(1, options_.log_retention);
  if (seq % 256 == 0 && horizon > 0) {
    FLATSTORE_ASSIGN_OR_RETURN(Statement * prune,
                               db_->cached("DELETE FROM flatstore_changes WHERE seq <= ?", what));
    prune->bindInt(1, horizon);
    FLATSTORE_RETURN_IF_ERROR(prune->run(what));
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement * mark, db_->cached("UPDATE flatstore_meta SET value = max(value, ?) WHERE key = "
                                      "'log_pruned_through'",
                                      what));
    mark->bindInt(1, horizon);
    FLATSTORE_RETURN_IF_ERROR(mark->run(what));
  }
  return absl::OkStatus();
}

absl::StatusOr<LogHead> Writer::logHead() {
  // Inside the write transaction: the data version moved unless the last thing to
  // change the file was this writer's own group commit, which left head_ behind.
  std::optional<uint32_t> version = db_->dataVersion();
  if (head_.has_value() && version.has_value() && version == head_data_version_) return *head_;
  FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(*db_, "group commit"));
  head_ = head;
  head_data_version_ = version;
  return head;
}

CommitEvent Writer::observedChanges(std::vector<std::unique_ptr<CommitRequest>>& group,
                                    const std::vector<absl::StatusOr<TransactionResult>>& results,
                                    uint64_t seq) {
  CommitEvent event;
  event.sequence = seq;
  std::map<TableState*, size_t> slot;
  for (size_t i = 0; i < group.size(); ++i) {
    if (!results[i].ok()) continue;
    Versionstamp vs = results[i]->versionstamp;
    for (EncodedChange& c : group[i]->changes) {
      if (c.op == EncodedChange::Op::kNone ||
          c.table->subscriptions.load(std::memory_order_acquire) == 0) {
        continue;
      }
      auto [it, inserted] = slot.emplace(c.table, event.tables.size());
      if (inserted) event.tables.emplace_back(c.table, std::vector<ChangedObject>());
      ChangedObject changed;
      changed.rowid = c.rowid;
      changed.deleted = c.op == EncodedChange::Op::kDelete;
      changed.bytes = std::move(c.bytes);  // the request is done with them
      changed.versionstamp = vs;
      if (c.op == EncodedChange::Op::kUpdate) {
        changed.base_version = c.base_version;
        changed.changed_fields = c.changed_fields;
      }
      event.tables[it->second].second.push_back(std::move(changed));
    }
  }
  return event;
}

void Writer::notePace(const CommitRequest& request, absl::Duration hold) {
  // Only requests with many changes: in small ones fixed costs dominate.
  if (request.changes.size() < kPaceMinChanges) return;
  int64_t sample = absl::ToInt64Nanoseconds(hold) / static_cast<int64_t>(request.changes.size());
  int64_t old = nanos_per_change_.load(std::memory_order_relaxed);
  // A moving average over the last few such requests; one sample moves it by at most
  // half or double, so a request that waited out a stalled write does not shrink every
  // chunk after it.
  sample = std::clamp(sample, old / 2, old * 2);
  nanos_per_change_.store(std::max<int64_t>(1, old + (sample - old) / 4),
                          std::memory_order_relaxed);
}

void Writer::commitGroup(std::vector<std::unique_ptr<CommitRequest>>& group) {
  std::vector<absl::StatusOr<TransactionResult>> results(group.size(), TransactionResult{});
  absl::Time begin = absl::Now();
  absl::Status group_status = db_->exec("BEGIN IMMEDIATE", "group commit");
  absl::Time locked = absl::Now();
  uint64_t seq = 0;
  Versionstamp last_change;
  if (group_status.ok()) {
    absl::StatusOr<LogHead> head = logHead();
    group_status = head.status();
    if (head.ok()) {
      seq = head->sequence + 1;
      last_change = head->last_change;
    }
  }
  const bool use_savepoints = group.size() > 1;
  bool lone_failure = false;
  // Large requests are timed for the chunk pace (see notePace): how long each took to
  // apply, and how many changes the group applied in all.
  std::vector<std::pair<size_t, absl::Duration>> timed_applies;
  size_t group_changes = 0;
  if (group_status.ok()) {
    for (size_t i = 0; i < group.size(); ++i) {
      // Each request in its own savepoint when several share the group; a lone
      // request that fails rolls back the whole transaction instead.
      if (use_savepoints) group_status = db_->exec("SAVEPOINT request", "group commit");
      if (!group_status.ok()) break;
      TransactionResult result;
      const bool timed = group[i]->changes.size() >= kPaceMinChanges;
      absl::Time applying = timed ? absl::Now() : absl::Time();
      absl::Status s =
          applyRequest(*group[i], Versionstamp(seq, static_cast<uint16_t>(i)), &result);
      if (s.ok()) {
        if (timed) timed_applies.emplace_back(i, absl::Now() - applying);
        group_changes += group[i]->changes.size();
        results[i] = result;
        if (use_savepoints) group_status = db_->exec("RELEASE request", "group commit");
        if (group[i]->in_flight != nullptr) noteApplied(*group[i], seq);
      } else {
        if (group[i]->in_flight != nullptr) group[i]->in_flight->failed = true;
        results[i] = s;
        if (use_savepoints) {
          group_status = db_->exec("ROLLBACK TO request", "group commit");
          if (group_status.ok()) group_status = db_->exec("RELEASE request", "group commit");
        } else {
          lone_failure = true;
        }
      }
      if (!group_status.ok()) break;
    }
  }
  // A lone request that produced nothing to write (a closure run inside the write
  // transaction that changed nothing) commits nothing either.
  bool lone_nothing = group_status.ok() && !use_savepoints && results[0].ok() &&
                      group[0]->changes.empty() && !group[0]->apply;
  if (lone_failure || lone_nothing) {
    // Nothing of the group remains to commit: the only request failed or wrote nothing.
    db_->rollbackQuietly();
    int64_t hold_us = absl::ToInt64Microseconds(absl::Now() - locked);
    group[0]->lock_hold_us = hold_us;
    group[0]->complete(std::move(results[0]));
    return;
  }
  absl::Time committing = absl::Now();
  if (group_status.ok()) group_status = writeLog(group, results, seq, &last_change);
  if (group_status.ok()) group_status = db_->exec("COMMIT", "group commit");
  if (group_status.ok() && !timed_applies.empty()) {
    // A chunk holds the write lock for its apply and its share of the commit (the log
    // row and the WAL frames), in proportion to its changes.
    absl::Duration commit = absl::Now() - committing;
    for (const auto& [i, apply] : timed_applies) {
      double share = static_cast<double>(group[i]->changes.size()) /
                     static_cast<double>(std::max<size_t>(1, group_changes));
      notePace(*group[i], apply + commit * share);
    }
  }
  if (!group_status.ok()) {
    // Nothing of the group is visible: every request fails with the group's error.
    db_->rollbackQuietly();
    for (auto& r : results) r = group_status;
    for (auto& r : group) {
      if (r->in_flight != nullptr) r->in_flight->failed = true;
    }
  } else {
    head_ = LogHead{seq, last_change};
    head_data_version_ = db_->dataVersion();
    {
      absl::MutexLock lock(&mu_);
      last_sequence_ = seq;
    }
    if (publish_) publish_(observedChanges(group, results, seq));
  }
  int64_t hold_us = absl::ToInt64Microseconds(absl::Now() - locked);
  if (metrics_ != nullptr) {
    int64_t transactions = 0;
    for (const auto& r : group) transactions += r->changes.empty() ? 0 : 1;
    metrics_->recordGroup(transactions, hold_us, absl::ToInt64Microseconds(locked - begin));
  }
  for (size_t i = 0; i < group.size(); ++i) {
    group[i]->lock_hold_us = hold_us;
    group[i]->complete(std::move(results[i]));
  }
}

}  // namespace flatstore::internal
