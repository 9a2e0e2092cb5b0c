#include "runtime/pipeline.h"

#include <algorithm>
#include <functional>

#include "runtime/commit_request.h"
#include "runtime/query_exec.h"

namespace flatstore::internal {
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

// Closures on a table hold it until their commit for this many hand-offs after one of
// them read what a predecessor was writing.
constexpr int kPauseHandOffs = 16;

}  // namespace

KeyMark keyOfEncoded(int64_t table_id, std::string_view encoded) {
  return {table_id, std::hash<std::string_view>()(encoded)};
}

KeyMark keyOf(int64_t table_id, const std::vector<Value>& key) {
  return keyOfEncoded(table_id, PendingTable::encodeKey(key));
}

bool WriteSet::touches(const ReadSet& reads) const {
  for (int64_t table : wide) {
    if (reads.scanned.contains(table)) return true;
    for (const auto& [t, rowid] : reads.rowids) {
      if (t == table) return true;
    }
    for (const KeyMark& k : reads.keys) {
      if (k.first == table) return true;
    }
  }
  return intersect(reads.scanned, tables) || intersect(reads.rowids, rowids) ||
         intersect(reads.keys, keys);
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

absl::StatusOr<bool> overwrittenSince(const std::vector<std::shared_ptr<InFlight>>& predecessors,
                                      uint64_t snapshot_sequence, const ReadSet& reads) {
  return overwrittenSince(
      predecessors, [snapshot_sequence](uint64_t s) { return s <= snapshot_sequence; }, reads);
}

absl::StatusOr<bool> overwrittenSince(const std::vector<std::shared_ptr<InFlight>>& predecessors,
                                      absl::FunctionRef<bool(uint64_t)> seen,
                                      const ReadSet& reads) {
  for (const std::shared_ptr<InFlight>& p : predecessors) {
    if (p->failed) continue;  // the snapshot lacks it, and so does the database
    if (p->sequence == 0) {
      // Same-priority predecessors are queued ahead; others are waited for.
      return absl::InternalError("a pipelined request reached the writer before its predecessor");
    }
    if (seen(p->sequence)) continue;  // the snapshot has it
    if (p->applied.touches(reads)) return true;
  }
  return false;
}

std::vector<std::shared_ptr<InFlight>> InFlightRegistry::on(
    const std::vector<TableState*>& tables) {
  std::vector<std::shared_ptr<InFlight>> out;
  absl::MutexLock lock(&mu_);
  for (const TableState* t : tables) {
    auto it = by_table_.find(t);
    if (it == by_table_.end()) continue;
    for (const auto& record : it->second) {
      if (std::find(out.begin(), out.end(), record) == out.end()) out.push_back(record);
    }
  }
  return out;
}

void InFlightRegistry::add(const std::vector<TableState*>& tables,
                           const std::shared_ptr<InFlight>& record) {
  absl::MutexLock lock(&mu_);
  for (const TableState* t : tables) by_table_[t].push_back(record);
}

void InFlightRegistry::remove(const std::vector<TableState*>& tables,
                              const std::shared_ptr<InFlight>& record) {
  absl::MutexLock lock(&mu_);
  for (const TableState* t : tables) {
    auto it = by_table_.find(t);
    if (it == by_table_.end()) continue;
    // An emptied list is kept (there is one per table in use): the next record on the
    // table reuses its storage instead of allocating it again.
    std::erase(it->second, record);
  }
}

bool mayHandOn(const std::vector<TableState*>& tables) {
  bool paused = false;
  for (TableState* t : tables) {
    int left = t->pipeline_pause.load(std::memory_order_relaxed);
    if (left > 0) {
      t->pipeline_pause.store(left - 1, std::memory_order_relaxed);
      paused = true;
    }
  }
  return !paused;
}

void pauseHandOn(const std::vector<TableState*>& tables) {
  for (TableState* t : tables) t->pipeline_pause.store(kPauseHandOffs, std::memory_order_relaxed);
}

}  // namespace flatstore::internal
