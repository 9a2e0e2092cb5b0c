#include "runtime/metrics.h"

#include <algorithm>
#include <bit>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flatstore {
namespace internal {

int Histogram::bucketOf(int64_t v) {
  if (v < 32) return static_cast<int>(std::max<int64_t>(v, 0));
  int msb = 63 - std::countl_zero(static_cast<uint64_t>(v));  // >= 5
  int sub = static_cast<int>((v >> (msb - 4)) & 15);
  return std::min(kBuckets - 1, 32 + (msb - 5) * 16 + sub);
}

double Histogram::valueOf(int bucket) {
  if (bucket < 32) return bucket;
  int msb = (bucket - 32) / 16 + 5;
  int sub = (bucket - 32) % 16;
  // The middle of the bucket [ (16+sub) << (msb-4), (17+sub) << (msb-4) ).
  double low = static_cast<double>(int64_t{16 + sub} << (msb - 4));
  double width = static_cast<double>(int64_t{1} << (msb - 4));
  return low + width / 2;
}

void Histogram::record(int64_t v) {
  counts_[static_cast<size_t>(bucketOf(v))] += 1;
  count_ += 1;
  max_ = std::max(max_, v);
}

Distribution Histogram::summary() const {
  Distribution d;
  d.count = count_;
  d.max = static_cast<double>(max_);
  if (count_ == 0) return d;
  auto quantile = [&](double q) {
    int64_t rank = static_cast<int64_t>(q * static_cast<double>(count_ - 1)) + 1;
    int64_t seen = 0;
    for (int b = 0; b < kBuckets; ++b) {
      seen += counts_[static_cast<size_t>(b)];
      if (seen >= rank) return std::min(valueOf(b), d.max);
    }
    return d.max;
  };
  d.p50 = quantile(0.50);
  d.p99 = quantile(0.99);
  return d;
}

void MetricsRegistry::recordTransaction(const std::string& name, const TransactionSample& s) {
  absl::MutexLock lock(&mu_);
  PerName& p = transactions_[name];
  p.count += 1;
  p.failures += s.failed ? 1 : 0;
  p.retries += s.retries;
  p.queue_wait.record(s.queue_wait_us);
  p.run.record(s.run_us);
  if (s.lock_hold_us >= 0) p.lock_hold.record(s.lock_hold_us);
  p.total.record(s.total_us);
}

void MetricsRegistry::recordGroup(int64_t size, int64_t commit_us, int64_t lock_wait_us) {
  absl::MutexLock lock(&mu_);
  groups_ += 1;
  grouped_ += size;
  group_size_.record(size);
  commit_.record(commit_us);
  lock_wait_.record(lock_wait_us);
}

void MetricsRegistry::recordReaderWait(int64_t us) {
  absl::MutexLock lock(&mu_);
  reader_wait_.record(us);
}

void MetricsRegistry::recordWal(int64_t size_bytes) {
  absl::MutexLock lock(&mu_);
  wal_.size_bytes = size_bytes;
  wal_.max_size_bytes = std::max(wal_.max_size_bytes, size_bytes);
}

void MetricsRegistry::recordCheckpoint(bool truncating, bool ok, const absl::Status& error) {
  absl::MutexLock lock(&mu_);
  if (!ok) {
    wal_.failed_checkpoints += 1;
    if (!error.ok()) {
      wal_.checkpoint_errors += 1;
      wal_.last_checkpoint_error = error.ToString();
    }
  } else if (truncating) {
    wal_.truncating_checkpoints += 1;
  } else {
    wal_.passive_checkpoints += 1;
  }
}

void MetricsRegistry::recordFailedCommit() {
  absl::MutexLock lock(&mu_);
  failed_commits_ += 1;
}

void MetricsRegistry::recordStopped(const absl::Status& error) {
  absl::MutexLock lock(&mu_);
  if (stopped_error_.empty()) stopped_error_ = error.ToString();
}

void MetricsRegistry::recordWatcher(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  watcher_.failing = !status.ok();
  if (status.ok()) return;
  watcher_.errors += 1;
  watcher_.last_error = status.ToString();
}

Metrics MetricsRegistry::snapshot() const {
  absl::MutexLock lock(&mu_);
  Metrics m;
  for (const auto& [name, p] : transactions_) {
    TransactionMetrics t;
    t.name = name;
    t.count = p.count;
    t.failures = p.failures;
    t.retries = p.retries;
    t.queue_wait_us = p.queue_wait.summary();
    t.run_us = p.run.summary();
    t.lock_hold_us = p.lock_hold.summary();
    t.total_us = p.total.summary();
    m.transactions.push_back(std::move(t));
  }
  m.writer.groups = groups_;
  m.writer.transactions = grouped_;
  m.writer.group_size = group_size_.summary();
  m.writer.commit_us = commit_.summary();
  m.writer.lock_wait_us = lock_wait_.summary();
  m.writer.failed_commits = failed_commits_;
  m.writer.stopped_error = stopped_error_;
  m.wal = wal_;
  m.watcher = watcher_;
  m.reader_wait_us = reader_wait_.summary();
  return m;
}

}  // namespace internal

namespace {

std::string text(const Distribution& d) {
  return absl::StrFormat("n=%d p50=%.0f p99=%.0f max=%.0f", d.count, d.p50, d.p99, d.max);
}

std::string json(const Distribution& d) {
  return absl::StrFormat(R"({"count":%d,"p50":%.1f,"p99":%.1f,"max":%.1f})", d.count, d.p50, d.p99,
                         d.max);
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

std::string Metrics::toText() const {
  std::string out = "transactions (latencies in us):\n";
  for (const TransactionMetrics& t : transactions) {
    absl::StrAppend(&out, "  ", t.name.empty() ? "(unnamed)" : t.name, ": count=", t.count,
                    " failures=", t.failures, " retries=", t.retries, "\n    queue wait ",
                    text(t.queue_wait_us), "\n    run        ", text(t.run_us), "\n    lock hold  ",
                    text(t.lock_hold_us), "\n    total      ", text(t.total_us), "\n");
  }
  absl::StrAppend(&out, "writer: groups=", writer.groups, " transactions=", writer.transactions,
                  "\n  group size ", text(writer.group_size), "\n  commit     ",
                  text(writer.commit_us), "\n  lock wait  ", text(writer.lock_wait_us),
                  "\n  failed commits=", writer.failed_commits, "\n");
  if (!writer.stopped_error.empty()) {
    absl::StrAppend(&out, "  stopped: ", writer.stopped_error, "\n");
  }
  absl::StrAppend(&out, "wal: size=", wal.size_bytes, " max=", wal.max_size_bytes,
                  " passive checkpoints=", wal.passive_checkpoints,
                  " truncating=", wal.truncating_checkpoints, " failed=", wal.failed_checkpoints,
                  " errors=", wal.checkpoint_errors, "\n");
  if (!wal.last_checkpoint_error.empty()) {
    absl::StrAppend(&out, "  last checkpoint error: ", wal.last_checkpoint_error, "\n");
  }
  absl::StrAppend(&out, "watcher: errors=", watcher.errors, watcher.failing ? " (failing)" : "",
                  "\n");
  if (!watcher.last_error.empty()) {
    absl::StrAppend(&out, "  last error: ", watcher.last_error, "\n");
  }
  absl::StrAppend(&out, "reader pool wait ", text(reader_wait_us), "\n");
  return out;
}

std::string Metrics::toJson() const {
  std::string out = R"({"transactions":[)";
  for (size_t i = 0; i < transactions.size(); ++i) {
    const TransactionMetrics& t = transactions[i];
    absl::StrAppend(&out, i > 0 ? "," : "", R"({"name":)", jsonString(t.name), R"(,"count":)",
                    t.count, R"(,"failures":)", t.failures, R"(,"retries":)", t.retries,
                    R"(,"queue_wait_us":)", json(t.queue_wait_us), R"(,"run_us":)", json(t.run_us),
                    R"(,"lock_hold_us":)", json(t.lock_hold_us), R"(,"total_us":)",
                    json(t.total_us), "}");
  }
  absl::StrAppend(&out, R"(],"writer":{"groups":)", writer.groups, R"(,"transactions":)",
                  writer.transactions, R"(,"group_size":)", json(writer.group_size),
                  R"(,"commit_us":)", json(writer.commit_us), R"(,"lock_wait_us":)",
                  json(writer.lock_wait_us), R"(,"failed_commits":)", writer.failed_commits,
                  R"(,"stopped_error":)", jsonString(writer.stopped_error), "}");
  absl::StrAppend(&out, R"(,"wal":{"size_bytes":)", wal.size_bytes, R"(,"max_size_bytes":)",
                  wal.max_size_bytes, R"(,"passive_checkpoints":)", wal.passive_checkpoints,
                  R"(,"truncating_checkpoints":)", wal.truncating_checkpoints,
                  R"(,"failed_checkpoints":)", wal.failed_checkpoints, R"(,"checkpoint_errors":)",
                  wal.checkpoint_errors, R"(,"last_checkpoint_error":)",
                  jsonString(wal.last_checkpoint_error), "}");
  absl::StrAppend(&out, R"(,"watcher":{"errors":)", watcher.errors, R"(,"last_error":)",
                  jsonString(watcher.last_error), R"(,"failing":)",
                  watcher.failing ? "true" : "false", "}");
  absl::StrAppend(&out, R"(,"reader_wait_us":)", json(reader_wait_us), "}");
  return out;
}

}  // namespace flatstore
