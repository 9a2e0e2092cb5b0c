#include "runtime/commit_watcher.h"

#include <algorithm>
#include <map>
#include <vector>

#include "flatstore/status.h"
#include "runtime/change_log.h"
#include "runtime/query_exec.h"
#include "runtime/reader_pool.h"

namespace flatstore::internal {

void CommitWatcher::start() {
  thread_ = std::thread([this] { loop(); });
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

void CommitWatcher::loop() {
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::open(path_, /*read_only=*/true);
  if (!c.ok()) return;
  (*c)->setBusyTimeout(absl::Seconds(5));
  int64_t data_version = -1;
  {
    // Start after the last commit that exists now.
    absl::Status s = inReadTransaction(**c, [&]() -> absl::Status {
      FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(**c, "watcher"));
      noteSequence(head.sequence);
      return absl::OkStatus();
    });
    (void)s;
  }
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_)) return;
    }
    // A failed look is retried at the next interval.
    publishForeignCommits(**c, &data_version).IgnoreError();
  }
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
      CommitEvent event;
      event.sequence = e.sequence;
      std::map<TableState*, size_t> slot;
      for (const LogRecord& r : e.records) {
        auto t = observed.find(r.table_id);
        if (t == observed.end()) continue;
        ChangedObject changed;
        changed.rowid = r.rowid;
        changed.versionstamp = Versionstamp(e.sequence, r.position);
        if (r.deleted) {
          changed.deleted = true;
        } else {
          // The object as it is now; a later commit in this batch may have replaced it.
          FLATSTORE_ASSIGN_OR_RETURN(auto current, readRowByRowid(c, *t->second, r.rowid));
          if (!current.has_value()) continue;  // deleted since: a later entry says so
          changed.bytes = std::move(current->bytes);
          changed.versionstamp = current->versionstamp;
        }
        auto [it, inserted] = slot.emplace(t->second, event.tables.size());
        if (inserted) event.tables.emplace_back(t->second, std::vector<ChangedObject>());
        event.tables[it->second].second.push_back(std::move(changed));
      }
      if (!event.tables.empty()) events.push_back(std::move(event));
    }
    return absl::OkStatus();
  }));
  for (CommitEvent& e : events) hub_->publish(std::move(e));
  noteSequence(last);
  return absl::OkStatus();
}

}  // namespace flatstore::internal
