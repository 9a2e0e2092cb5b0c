#include "runtime/commit_watcher.h"

#include <pthread.h>

#include <algorithm>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/change_log.h"
#include "runtime/query_exec.h"
#include "runtime/reader_pool.h"

namespace flatstore::internal {

void CommitWatcher::start() {
  thread_ = std::thread([this] {
    // A name to tell the thread by in a debugger (and in tests that inject faults on it).
    pthread_setname_np(pthread_self(), "flatstore-watch");
    loop();
  });
}

void CommitWatcher::stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

uint64_t CommitWatcher::watchedSequence() {
  absl::MutexLock lock(&mu_);
  return watched_sequence_;
}

void CommitWatcher::noteSequence(uint64_t sequence) {
  absl::MutexLock lock(&mu_);
  watched_sequence_ = std::max(watched_sequence_, sequence);
}

bool CommitWatcher::stopRequested(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay);
}

void CommitWatcher::noteFailure(const absl::Status& error, int failures) {
  absl::Status reported(error.code(),
                        absl::StrCat("following other processes' commits to ", path_, " failed (",
                                     failures, " attempts in a row): ", error.message()));
  if (metrics_ != nullptr) metrics_->recordWatcher(reported);
  if (failures >= kFailuresToEndSubscriptions) hub_->failAll(reported);
}

void CommitWatcher::loop() {
  std::unique_ptr<Connection> c;
  int64_t data_version = -1;
  int failures = 0;
  absl::Duration delay = absl::ZeroDuration();  // the first connection at once
  while (!stopRequested(delay)) {
    absl::Status s;
    if (c == nullptr) {
      absl::StatusOr<std::unique_ptr<Connection>> opened =
          Connection::open(path_, /*read_only=*/true);
      s = opened.status();
      if (s.ok()) {
        c = std::move(*opened);
        c->setBusyTimeout(absl::Seconds(5));
        data_version = -1;  // the first look reads the log after the last one published
      }
    } else {
      s = publishForeignCommits(*c, &data_version);
      // A connection that failed may be what fails: the next attempt opens a new one.
      if (!s.ok()) c.reset();
    }
    if (s.ok()) {
      if (failures > 0 && metrics_ != nullptr) metrics_->recordWatcher(absl::OkStatus());
      failures = 0;
      delay = interval_;
      continue;
    }
    failures += 1;
    noteFailure(s, failures);
    // Back-off: twice the wait after each failure in a row, from one interval up to a
    // second (or the interval, if that is longer).
    delay = std::min(interval_ * (int64_t{1} << std::min(failures - 1, 16)),
                     std::max(interval_, absl::Seconds(1)));
  }
}

absl::StatusOr<CommitEvent> foreignCommitEvent(
    uint64_t sequence, std::span<const LogRecord> records,
    const std::map<int64_t, TableState*>& observed,
    const std::function<absl::StatusOr<std::optional<RawRow>>(const TableState&, int64_t)>&
        current) {
  CommitEvent event;
  event.sequence = sequence;
  std::map<TableState*, size_t> slot;
  for (const LogRecord& r : records) {
    auto t = observed.find(r.table_id);
    if (t == observed.end()) continue;
    ChangedObject changed;
    changed.rowid = r.rowid;
    changed.versionstamp = Versionstamp(sequence, r.position);
    if (r.deleted) {
      changed.deleted = true;
    } else {
      // The object as it is now; a later commit may have replaced it.
      FLATSTORE_ASSIGN_OR_RETURN(std::optional<RawRow> now, current(*t->second, r.rowid));
      if (!now.has_value()) continue;  // deleted since: a later commit says so
      changed.bytes = std::move(now->bytes);
      changed.versionstamp = now->versionstamp;
    }
    auto [it, inserted] = slot.emplace(t->second, event.tables.size());
    if (inserted) event.tables.emplace_back(t->second, std::vector<ChangedObject>());
    event.tables[it->second].second.push_back(std::move(changed));
  }
  return event;
}

absl::Status CommitWatcher::publishForeignCommits(Connection& c, int64_t* data_version) {
  // data_version changes when any other connection commits, this process's writer too.
  FLATSTORE_ASSIGN_OR_RETURN(Statement * dv, c.cached("PRAGMA data_version", "watcher"));
  absl::StatusOr<bool> row = dv->step("watcher");
  int64_t now = row.ok() && *row ? dv->columnInt(0) : *data_version;
  dv->reset();
  FLATSTORE_RETURN_IF_ERROR(row.status());
  if (now == *data_version) return absl::OkStatus();
  *data_version = now;
  uint64_t after = watchedSequence();
  std::map<int64_t, TableState*> observed;
  for (TableState* t : tables_->observed()) observed[t->id] = t;
  if (observed.empty()) {
    // Nobody to tell: only note how far the file has come.
    FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(c, "watcher"));
    noteSequence(head.sequence);
    return absl::OkStatus();
  }
  std::vector<CommitEvent> events;
  uint64_t last = after;
  FLATSTORE_RETURN_IF_ERROR(inReadTransaction(c, [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(c, "watcher"));
    last = std::max(last, head.sequence);
    FLATSTORE_ASSIGN_OR_RETURN(std::vector<LogEntry> entries, readLogAfter(c, after, origin_));
    for (LogEntry& e : entries) {
      FLATSTORE_ASSIGN_OR_RETURN(CommitEvent event,
                                 foreignCommitEvent(e.sequence, e.records, observed,
                                                    [&c](const TableState& t, int64_t rowid) {
                                                      return readRowByRowid(c, t, rowid);
                                                    }));
      if (!event.tables.empty()) events.push_back(std::move(event));
    }
    return absl::OkStatus();
  }));
  for (CommitEvent& e : events) hub_->publish(std::move(e));
  noteSequence(last);
  return absl::OkStatus();
}

}  // namespace flatstore::internal
