#include "runtime/checkpointer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace flatstore::internal {
namespace {

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

Checkpointer::Checkpointer(Connection& writer, CheckpointOptions options, MetricsRegistry* metrics)
    : options_(options), metrics_(metrics), page_size_(pageSize(writer)) {
  // A connection learns that the file is in WAL mode at its first read; until then it
  // would checkpoint nothing.
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::open(writer.path(), false);
  if (c.ok() && (*c)->exec("SELECT count(*) FROM sqlite_master", "checkpointer").ok()) {
    absl::MutexLock lock(&passive_mu_);
    passive_ = std::move(*c);
  }
  // Replaces SQLite's automatic checkpoints: checkpoints are the writer's decision.
  sqlite3_wal_hook(writer.db(), &Checkpointer::onWalCommit, this);
}

// Runs inside COMMIT, under the writer role.
int Checkpointer::onWalCommit(void* self, sqlite3*, const char*, int pages) {
  auto* c = static_cast<Checkpointer*>(self);
  absl::MutexLock lock(&c->mu_);
  c->wal_pages_ = pages;
  c->wal_high_pages_ = std::max(c->wal_high_pages_, pages);
  return SQLITE_OK;
}

int64_t Checkpointer::walBytes(int frames) const {
  return frames == 0 ? 0 : 32 + static_cast<int64_t>(frames) * (page_size_ + 24);
}

bool Checkpointer::noteCommit() {
  absl::MutexLock lock(&mu_);
  // The WAL restarted from its beginning.
  if (wal_pages_ < checkpointed_pages_) checkpointed_pages_ = 0;
  if (metrics_ != nullptr) metrics_->recordWal(walBytes(wal_high_pages_));
  return restartDue() || wal_pages_ - checkpointed_pages_ >= options_.checkpoint_pages;
}

bool Checkpointer::restartDue() const {
  int64_t used = walBytes(wal_pages_);
  return used > options_.wal_size_limit && used >= next_restart_bytes_;
}

bool Checkpointer::runDue(Connection& writer) {
  bool restart;
  {
    absl::MutexLock lock(&mu_);
    restart = restartDue();
  }
  if (restart) {
    // Readers that overlap keep the WAL from ever restarting by itself: a restarting
    // checkpoint waits for them, so the next commit writes from the WAL's beginning
    // and the file stops growing (it keeps its size; reusing it costs no allocation).
    if (resetWal(writer, SQLITE_CHECKPOINT_RESTART) == SQLITE_OK) {
      absl::MutexLock lock(&mu_);
      next_restart_bytes_ = 0;
      return false;
    }
    // Some reader held on to an old snapshot; commits go on, and the next try comes
    // when the WAL grew by another quarter of its limit (passive checkpoints continue
    // meanwhile).
    absl::MutexLock lock(&mu_);
    next_restart_bytes_ = walBytes(wal_pages_) + options_.wal_size_limit / 4;
  }
  absl::MutexLock lock(&mu_);
  return wal_pages_ - checkpointed_pages_ >= options_.checkpoint_pages;
}

absl::Status Checkpointer::truncate(Connection& writer) {
  int rc = resetWal(writer, SQLITE_CHECKPOINT_TRUNCATE);
  // Another process reading the file keeps its frames: not an error of this one.
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return absl::OkStatus();
  return sqliteStatus(rc == SQLITE_OK ? rc : sqlite3_extended_errcode(writer.db()), writer.db(), {},
                      absl::StrCat("truncating checkpoint of ", writer.path()));
}

int Checkpointer::resetWal(Connection& writer, int mode) {
  // Waits for readers on older snapshots, but only briefly: meanwhile no group commits.
  // Such a reader may end at any moment, so the wait looks every millisecond: the
  // back-off meant for other processes' write locks pauses up to 96 ms and, with readers
  // that overlap, overshot the budget in about a third of the tries.
  writer.setBusyTimeout(options_.checkpoint_wait, absl::Milliseconds(1));
  int rc = sqlite3_wal_checkpoint_v2(writer.db(), nullptr, mode, nullptr, nullptr);
  writer.setBusyTimeout(options_.lock_timeout);
  if (rc == SQLITE_OK) {
    // The next commit writes from the WAL's beginning.
    absl::MutexLock lock(&mu_);
    wal_pages_ = checkpointed_pages_ = 0;
    if (mode == SQLITE_CHECKPOINT_TRUNCATE) wal_high_pages_ = 0;
  }
  noteResult(writer, rc, /*truncating=*/true);
  return rc;
}

void Checkpointer::noteResult(Connection& c, int rc, bool truncating) {
  absl::Status error;
  bool in_doubt = false;
  if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
    error = sqliteStatus(sqlite3_extended_errcode(c.db()), c.db(), {},
                         absl::StrCat("checkpoint of ", c.path()));
    in_doubt = writesInDoubt(c.db());
  }
  if (metrics_ != nullptr) metrics_->recordCheckpoint(truncating, rc == SQLITE_OK, error);
  if (!in_doubt) return;
  absl::MutexLock lock(&mu_);
  if (in_doubt_.ok()) in_doubt_ = error;
}

absl::Status Checkpointer::writesInDoubtError() {
  absl::MutexLock lock(&mu_);
  return in_doubt_;
}

std::optional<Checkpointer::Rounds> Checkpointer::passiveRounds() {
  // On a connection of its own, without the role: group commits go on meanwhile
  // (SQLite lets one checkpointer copy frames while a writer appends new ones). Each
  // round copies back what the commits during the previous round appended, until a
  // round finds only a short tail of new frames (or after three rounds).
  const int short_tail = std::max(64, options_.checkpoint_pages / 16);
  constexpr int kMaxRounds = 3;
  int log_frames = 0;
  int done_frames = 0;
  int rc = SQLITE_MISUSE;
  absl::MutexLock lock(&passive_mu_);
  for (int round = 0; round < kMaxRounds && passive_ != nullptr; ++round) {
    int before = log_frames;
    rc = sqlite3_wal_checkpoint_v2(passive_->db(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                   &done_frames);
    noteResult(*passive_, rc, /*truncating=*/false);
    // The WAL started over, or the round found little new. Or the WAL grew past half
    // its bound: commits go on during the rounds, and the tail (which they wait for) is
    // what lets the WAL start over, so more rounds would trade a shorter wait for a
    // larger WAL. A reader of older frames that held the rest back (a closure's
    // snapshot, mostly short) gets another round.
    if (rc != SQLITE_OK || log_frames < before) break;
    if (round > 0 && log_frames - before <= short_tail && done_frames == log_frames) break;
    if (walBytes(log_frames) > options_.wal_size_limit / 2) break;
  }
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) return std::nullopt;
  return Rounds{log_frames, rc == SQLITE_OK && done_frames == log_frames};
}

void Checkpointer::copyTail(Connection& writer, Rounds rounds) {
  int log_frames = rounds.log_frames;
  if (rounds.all_copied) {
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
    int rc = sqlite3_wal_checkpoint_v2(writer.db(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &tail_log,
                                       &tail_done);
    noteResult(writer, rc, /*truncating=*/false);
    if (rc == SQLITE_OK) log_frames = tail_log;
  }
  // The next one is due when as many frames again were appended (readers holding back
  // older frames must not make every group checkpoint again).
  absl::MutexLock lock(&mu_);
  checkpointed_pages_ = std::max(0, log_frames);
}

}  // namespace flatstore::internal
