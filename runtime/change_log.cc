#include "runtime/change_log.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"

namespace flatstore::internal {
namespace {

template <class N>
void put(std::string* out, N v) {
  char buf[sizeof(N)];
  std::memcpy(buf, &v, sizeof(N));  // the platforms flatstore builds for are little-endian
  out->append(buf, sizeof(N));
}

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  template <class N>
  bool get(N* v) {
    if (b_.size() - pos_ < sizeof(N)) return false;
    std::memcpy(v, b_.data() + pos_, sizeof(N));
    pos_ += sizeof(N);
    return true;
  }
  bool bytes(size_t n, std::string* out) {
    if (b_.size() - pos_ < n) return false;
    out->assign(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == b_.size(); }

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

}  // namespace

void appendLogRecord(const LogRecord& r, std::string* out) {
  put<int64_t>(out, r.table_id);
  put<int64_t>(out, r.rowid);
  put<uint16_t>(out, r.position);
  put<uint8_t>(out, r.deleted ? 1 : 0);
  if (!r.deleted) return;
  put<uint8_t>(out, static_cast<uint8_t>(r.key.size()));
  for (const Value& v : r.key) {
    put<uint8_t>(out, static_cast<uint8_t>(v.kind()));
    switch (v.kind()) {
      case Value::Kind::kNull:
        break;
      case Value::Kind::kInteger:
        put<int64_t>(out, v.asInteger());
        break;
      case Value::Kind::kReal:
        put<double>(out, v.asReal());
        break;
      case Value::Kind::kText:
        put<uint32_t>(out, static_cast<uint32_t>(v.asText().size()));
        out->append(v.asText());
        break;
    }
  }
}

absl::StatusOr<std::vector<LogRecord>> decodeLogRecords(std::span<const uint8_t> bytes) {
  std::vector<LogRecord> out;
  // Every record takes at least its table id, rowid, position and op: one allocation
  // for a commit's records rather than one per doubling.
  constexpr size_t kMinRecordBytes = 8 + 8 + 2 + 1;
  out.reserve(bytes.size() / kMinRecordBytes);
  Reader r(bytes);
  auto malformed = [] { return absl::DataLossError("flatstore_changes: a malformed change list"); };
  while (!r.done()) {
    LogRecord rec;
    uint8_t op = 0;
    if (!r.get(&rec.table_id) || !r.get(&rec.rowid) || !r.get(&rec.position) || !r.get(&op) ||
        op > 1) {
      return malformed();
    }
    rec.deleted = op == 1;
    if (rec.deleted) {
      uint8_t n = 0;
      if (!r.get(&n)) return malformed();
      for (uint8_t i = 0; i < n; ++i) {
        uint8_t kind = 0;
        if (!r.get(&kind)) return malformed();
        switch (static_cast<Value::Kind>(kind)) {
          case Value::Kind::kNull:
            rec.key.emplace_back();
            break;
          case Value::Kind::kInteger: {
            int64_t v;
            if (!r.get(&v)) return malformed();
            rec.key.push_back(Value::integer(v));
            break;
          }
          case Value::Kind::kReal: {
            double v;
            if (!r.get(&v)) return malformed();
            rec.key.push_back(Value::real(v));
            break;
          }
          case Value::Kind::kText: {
            uint32_t len;
            std::string text;
            if (!r.get(&len) || !r.bytes(len, &text)) return malformed();
            rec.key.push_back(Value::text(std::move(text)));
            break;
          }
          default:
            return malformed();
        }
      }
    }
    out.push_back(std::move(rec));
  }
  return out;
}

absl::StatusOr<std::vector<LogEntry>> readLogAfter(Connection& c, uint64_t after,
                                                   std::optional<int64_t> skip_origin) {
  // The origin column precedes the changes, so skipped rows' lists are never read.
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement * s,
      c.cached(skip_origin.has_value() ? "SELECT seq, origin, changes FROM flatstore_changes "
                                         "WHERE seq > ? AND origin != ? ORDER BY seq"
                                       : "SELECT seq, origin, changes FROM flatstore_changes "
                                         "WHERE seq > ? ORDER BY seq",
               "change log"));
  s->bindInt(1, static_cast<int64_t>(after));
  if (skip_origin.has_value()) s->bindInt(2, *skip_origin);
  std::vector<LogEntry> out;
  absl::Status status;
  while (true) {
    absl::StatusOr<bool> row = s->step("change log");
    if (!row.ok()) {
      status = row.status();
      break;
    }
    if (!*row) break;
    LogEntry e;
    e.sequence = static_cast<uint64_t>(s->columnInt(0));
    e.origin = s->columnInt(1);
    absl::StatusOr<std::vector<LogRecord>> records = decodeLogRecords(s->columnBlob(2));
    if (!records.ok()) {
      status = records.status();
      break;
    }
    e.records = std::move(*records);
    out.push_back(std::move(e));
  }
  s->reset();
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<LogHead> readLogHead(Connection& c, std::string_view what) {
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement * s,
      c.cached("SELECT seq, last_vs FROM flatstore_changes ORDER BY seq DESC LIMIT 1", what));
  absl::StatusOr<bool> row = s->step(what);
  LogHead head;
  if (row.ok() && *row) {
    head.sequence = static_cast<uint64_t>(s->columnInt(0));
    head.last_change = Versionstamp::fromPacked(s->columnInt(1));
  }
  s->reset();
  FLATSTORE_RETURN_IF_ERROR(row.status());
  return head;
}

absl::StatusOr<int> firstChangedSince(Connection& c, uint64_t after, int64_t own_origin,
                                      std::span<const int64_t> table_ids) {
  const char* what = "conflict check";
  // The change list is loaded only for other origins' commits.
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement * s, c.cached("SELECT seq, CASE WHEN origin = ?2 THEN NULL ELSE changes END "
                              "FROM flatstore_changes WHERE seq > ?1 ORDER BY seq",
                              what));
  s->bindInt(1, static_cast<int64_t>(after));
  s->bindInt(2, own_origin);
  int found = -1;
  absl::Status status;
  uint64_t expected = after + 1;
  while (found < 0) {
    absl::StatusOr<bool> row = s->step(what);
    if (!row.ok()) {
      status = row.status();
      break;
    }
    if (!*row) break;
    if (static_cast<uint64_t>(s->columnInt(0)) != expected++) {
      found = 0;  // pruned past `after`
      break;
    }
    if (sqlite3_column_type(s->get(), 1) == SQLITE_NULL) continue;
    absl::StatusOr<std::vector<LogRecord>> records = decodeLogRecords(s->columnBlob(1));
    if (!records.ok()) {
      status = records.status();
      break;
    }
    for (const LogRecord& r : *records) {
      auto it = std::find(table_ids.begin(), table_ids.end(), r.table_id);
      if (it != table_ids.end()) {
        found = static_cast<int>(it - table_ids.begin());
        break;
      }
    }
  }
  s->reset();
  FLATSTORE_RETURN_IF_ERROR(status);
  return found;
}

absl::StatusOr<uint64_t> logPrunedThrough(Connection& c) {
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement * s,
      c.cached("SELECT value FROM flatstore_meta WHERE key = 'log_pruned_through'", "change log"));
  absl::StatusOr<bool> row = s->step("change log");
  uint64_t v = row.ok() && *row ? static_cast<uint64_t>(s->columnInt(0)) : 0;
  s->reset();
  if (!row.ok()) return row.status();
  return v;
}

absl::Status writeLogRow(Connection& c, uint64_t seq, int64_t origin, std::string_view changes,
                         Versionstamp last_change, int64_t retention) {
  const char* what = "change log";
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement * s,
      c.cached("INSERT INTO flatstore_changes(seq, origin, changes, last_vs) VALUES(?, ?, ?, ?)",
               what));
  s->bindInt(1, static_cast<int64_t>(seq));
  s->bindInt(2, origin);
  s->bindBlobStatic(3, {reinterpret_cast<const uint8_t*>(changes.data()), changes.size()});
  s->bindInt(4, last_change.packed());
  FLATSTORE_RETURN_IF_ERROR(s->run(what));
  // Keep the log bounded: every 256 commits, drop entries older than the retention
  // (at least the newest row stays).
  int64_t horizon = static_cast<int64_t>(seq) - std::max<int64_t>(1, retention);
  if (seq % 256 == 0 && horizon > 0) {
    FLATSTORE_ASSIGN_OR_RETURN(Statement * prune,
                               c.cached("DELETE FROM flatstore_changes WHERE seq <= ?", what));
    prune->bindInt(1, horizon);
    FLATSTORE_RETURN_IF_ERROR(prune->run(what));
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement * mark, c.cached("UPDATE flatstore_meta SET value = max(value, ?) WHERE key = "
                                   "'log_pruned_through'",
                                   what));
    mark->bindInt(1, horizon);
    FLATSTORE_RETURN_IF_ERROR(mark->run(what));
  }
  return absl::OkStatus();
}

}  // namespace flatstore::internal
