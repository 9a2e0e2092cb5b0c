// Metrics: what a workspace has been doing, as percentiles rather than averages.
//
//   flatstore::Metrics m = ws->metrics();
//   std::puts(m.toText().c_str());
//
// Latencies are in microseconds. Percentiles come from log-linear histograms whose
// buckets are at most 1/16 (about 6%) wide; maxima are exact.
#ifndef FLATSTORE_METRICS_H_
#define FLATSTORE_METRICS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace flatstore {

struct Distribution {
  int64_t count = 0;
  double p50 = 0;
  double p99 = 0;
  double max = 0;
};

// Per transaction name (TransactionOptions::name; "" for unnamed).
struct TransactionMetrics {
  std::string name;
  int64_t count = 0;           // completed transactions, successful or not
  int64_t failures = 0;        // completed with an error
  int64_t retries = 0;         // runs repeated because another process changed a table
  Distribution queue_wait_us;  // submission until the closure starts
  Distribution run_us;         // the closure's run
  Distribution lock_hold_us;   // the write lock held by the group that committed it
  Distribution total_us;       // submission until the handle completes
};

struct WriterMetrics {
  int64_t groups = 0;          // group commits
  int64_t transactions = 0;    // transactions committed in them
  Distribution group_size;     // transactions per group
  Distribution commit_us;      // BEGIN IMMEDIATE to COMMIT done
  Distribution lock_wait_us;   // waiting for another process's write lock
  int64_t failed_commits = 0;  // groups whose COMMIT failed (a full disk, an I/O error)
  // Empty, or the error of a failed sync after which the workspace commits nothing
  // more until it is reopened (see docs/guide.md, "Errors").
  std::string stopped_error;
};

struct WalMetrics {
  int64_t size_bytes = 0;      // now
  int64_t max_size_bytes = 0;  // largest seen after a commit
  int64_t passive_checkpoints = 0;
  // Checkpoints that reset the WAL to its beginning: restarting ones past
  // wal_size_limit, the truncating one at shutdown.
  int64_t truncating_checkpoints = 0;
  // Checkpoints that did not finish: resets given up because readers held on, and
  // those that failed with an error (counted in checkpoint_errors too).
  int64_t failed_checkpoints = 0;
  int64_t checkpoint_errors = 0;      // failed with an error: a full disk, an I/O error
  std::string last_checkpoint_error;  // the newest of those, or empty
};

// The watcher that follows other processes' commits (for subscriptions).
struct WatcherMetrics {
  int64_t errors = 0;      // failed attempts to open its connection or read the log
  std::string last_error;  // the newest of those, or empty
  bool failing = false;    // the last attempt failed (it retries with back-off)
};

struct Metrics {
  std::vector<TransactionMetrics> transactions;
  WriterMetrics writer;
  WalMetrics wal;
  WatcherMetrics watcher;
  Distribution reader_wait_us;  // waiting for a pooled reader connection

  std::string toText() const;
  std::string toJson() const;
};

}  // namespace flatstore

#endif  // FLATSTORE_METRICS_H_
