// Checkpointer: the WAL policy. SQLite's automatic checkpoints are off; the writer
// decides when the WAL is copied back into the database and when it starts over.
//
//   - After each commit (noteCommit, from SQLite's WAL hook) it tells whether a
//     checkpoint is due: every `checkpoint_pages` new frames, or the WAL past its size
//     limit.
//   - runDue(), under the writer role: past the size limit, a restarting checkpoint
//     that waits briefly for readers, so that the next commit writes from the WAL's
//     beginning. It returns whether passive rounds are due as well.
//   - passiveRounds(), on a connection of its own and without the role: copies frames
//     back while commits go on; copyTail(), under the role, copies the few frames the
//     last round left, so that the WAL can start over under a steady stream of commits.
//   - truncate(): a clean shutdown leaves an empty WAL.
//
// Thread-safety: the methods that take the writer's connection run under the writer
// role; passiveRounds() runs on the writer thread only (it holds passive_mu_ for its
// whole run, uncontended); the counters are guarded by mu_, held briefly, so the WAL hook
// inside a commit never waits for a passive round.
#ifndef FLATSTORE_RUNTIME_CHECKPOINTER_H_
#define FLATSTORE_RUNTIME_CHECKPOINTER_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/metrics.h"
#include "runtime/sqlite.h"

namespace flatstore::internal {

struct CheckpointOptions {
  int checkpoint_pages = 2000;
  int64_t wal_size_limit = 32 << 20;
  absl::Duration checkpoint_wait = absl::Milliseconds(200);
  // The writer connection's busy timeout, restored after a checkpoint's shorter wait.
  absl::Duration lock_timeout = absl::Seconds(30);
};

class Checkpointer {
 public:
  // Installs the WAL hook on `writer` (the writer's connection) and opens a connection
  // of its own for passive rounds. Without it (the file could not be opened twice)
  // passive rounds are skipped and restarts keep the WAL bounded.
  Checkpointer(Connection& writer, CheckpointOptions options, MetricsRegistry* metrics);

  // After a commit of the writer's: whether a checkpoint is due now.
  bool noteCommit() ABSL_LOCKS_EXCLUDED(mu_);
  // Under the writer role, when a checkpoint was due: restarts the WAL if it is past its
  // size limit. Returns whether passive rounds are due, which the caller runs after
  // giving up the role.
  bool runDue(Connection& writer) ABSL_LOCKS_EXCLUDED(mu_);
  // What passive rounds did: the frames the WAL held after the last round, and whether
  // every frame but those committed during that round was copied back.
  struct Rounds {
    int log_frames = 0;
    bool all_copied = false;
  };
  // Passive rounds on the checkpointer's own connection, without the role (commits go
  // on). Nullopt when a round failed with an error other than SQLITE_BUSY. Writer thread
  // only.
  std::optional<Rounds> passiveRounds() ABSL_LOCKS_EXCLUDED(mu_, passive_mu_);
  // Under the writer role, after passiveRounds(): copies the tail of frames committed
  // during the last round when all before it were copied, and notes how far the WAL was
  // copied.
  void copyTail(Connection& writer, Rounds rounds) ABSL_LOCKS_EXCLUDED(mu_);
  // Under the writer role: a checkpoint that copies everything back and empties the WAL
  // file, waiting up to checkpoint_wait for readers. Its error (a full disk, an I/O
  // error); OK too when readers (of other processes) kept it from finishing.
  absl::Status truncate(Connection& writer) ABSL_LOCKS_EXCLUDED(mu_);

  // OK, or the first error of a checkpoint that leaves the written pages in doubt (see
  // writesInDoubt: a failed sync, an I/O error). The writer stops committing then.
  // Other failures (readers holding frames, a full disk) only count in the metrics.
  absl::Status writesInDoubtError() ABSL_LOCKS_EXCLUDED(mu_);

  // The bytes of a WAL of `frames` frames: the WAL header, then per frame a header and a
  // page. With the most frames since the last truncation, the file's size (no system
  // call per commit).
  int64_t walBytes(int frames) const;

 private:
  static int onWalCommit(void* self, sqlite3* db, const char* name, int pages);
  bool restartDue() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A checkpoint in `mode` (RESTART or TRUNCATE) on the writer's connection that waits
  // up to checkpoint_wait for readers. Returns SQLite's result code.
  int resetWal(Connection& writer, int mode) ABSL_LOCKS_EXCLUDED(mu_);
  // Counts the result `rc` of a checkpoint on `c` in the metrics, with its error when it
  // failed with one (not SQLITE_BUSY: readers held it back), and keeps an error that
  // puts the written pages in doubt.
  void noteResult(Connection& c, int rc, bool truncating) ABSL_LOCKS_EXCLUDED(mu_);

  const CheckpointOptions options_;
  MetricsRegistry* const metrics_;
  const int page_size_;

  absl::Mutex passive_mu_;
  std::unique_ptr<Connection> passive_ ABSL_PT_GUARDED_BY(passive_mu_);

  absl::Mutex mu_;
  // Frames in the WAL, from the WAL hook during COMMIT.
  int wal_pages_ ABSL_GUARDED_BY(mu_) = 0;
  // The most frames the WAL held since it was last truncated: its file size.
  int wal_high_pages_ ABSL_GUARDED_BY(mu_) = 0;
  // Frames in the WAL when the last passive checkpoint ran.
  int checkpointed_pages_ ABSL_GUARDED_BY(mu_) = 0;
  // After a restart gave up, the next try waits until the WAL grew by a quarter of its
  // limit (each try stops commits for up to checkpoint_wait).
  int64_t next_restart_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status in_doubt_ ABSL_GUARDED_BY(mu_);  // see writesInDoubtError()
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_CHECKPOINTER_H_
