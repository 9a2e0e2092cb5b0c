// Histograms and the registry behind Workspace::metrics().
//
// Thread-safety: all methods are thread-safe; recording takes one short mutex.
#ifndef FLATSTORE_RUNTIME_METRICS_H_
#define FLATSTORE_RUNTIME_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/metrics.h"

namespace flatstore::internal {

// A log-linear histogram of non-negative integers: values below 32 exactly, larger ones
// in 16 buckets per power of two.
class Histogram {
 public:
  void record(int64_t v);
  Distribution summary() const;

 private:
  static constexpr int kBuckets = 16 * 64;
  static int bucketOf(int64_t v);
  static double valueOf(int bucket);

  std::array<int64_t, kBuckets> counts_{};
  int64_t count_ = 0;
  int64_t max_ = 0;
};

class MetricsRegistry {
 public:
  struct TransactionSample {
    int64_t queue_wait_us;
    int64_t run_us;
    int64_t lock_hold_us;  // -1: did not reach the writer
    int64_t total_us;
    bool failed;
    int retries;
  };
  void recordTransaction(const std::string& name, const TransactionSample& s);
  void recordGroup(int64_t size, int64_t commit_us, int64_t lock_wait_us);
  void recordReaderWait(int64_t us);
  void recordWal(int64_t size_bytes);
  // `error`: why a checkpoint that did not finish failed; OK when readers held it back.
  void recordCheckpoint(bool truncating, bool ok, const absl::Status& error = absl::OkStatus());
  void recordFailedCommit();
  // The error after which the writer stopped committing (see Writer::stoppedError).
  void recordStopped(const absl::Status& error);
  // A failed attempt of the commit watcher (OK: an attempt that succeeded).
  void recordWatcher(const absl::Status& status);

  Metrics snapshot() const;

 private:
  struct PerName {
    int64_t count = 0, failures = 0, retries = 0;
    Histogram queue_wait, run, lock_hold, total;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, PerName> transactions_ ABSL_GUARDED_BY(mu_);
  int64_t groups_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t grouped_ ABSL_GUARDED_BY(mu_) = 0;
  Histogram group_size_ ABSL_GUARDED_BY(mu_);
  Histogram commit_ ABSL_GUARDED_BY(mu_);
  Histogram lock_wait_ ABSL_GUARDED_BY(mu_);
  Histogram reader_wait_ ABSL_GUARDED_BY(mu_);
  WalMetrics wal_ ABSL_GUARDED_BY(mu_);
  int64_t failed_commits_ ABSL_GUARDED_BY(mu_) = 0;
  std::string stopped_error_ ABSL_GUARDED_BY(mu_);
  WatcherMetrics watcher_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_METRICS_H_
