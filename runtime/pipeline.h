// Pipelining: a closure's tables handed on before its commit.
//
// When closures queue up on one table, a closure does not hold its tables until its
// changes are committed: it gives them to the next closure as soon as its request has
// its place in the writer's mailbox (Scheduler::release(job, true)). The next closure
// then runs on a snapshot that may lack its predecessor's changes. This file holds what
// makes that safe:
//   - ReadSet: what a closure read through its snapshot (TransactionState records it);
//   - WriteSet: what a request writes, and whether that touches a ReadSet;
//   - InFlight: the record of a request that handed its tables on, which the next
//     closures name as predecessors;
//   - InFlightRegistry: the records still in flight, by table;
//   - the pause: after a closure read what a predecessor was writing, closures on those
//     tables hold them until their commit for a while (they touch the same objects).
// The closure's thread compares its reads with each predecessor's intended writes before
// it hands its own request on; the writer compares them with what was applied
// (overwrittenSince) and runs the closure again under the write lock on a match.
//
// Thread-safety: InFlightRegistry is thread-safe; an InFlight's `intended` is fixed
// before it is published, its other fields are the writer role's; ReadSet and WriteSet
// are values used by one thread at a time.
#ifndef FLATSTORE_RUNTIME_PIPELINE_H_
#define FLATSTORE_RUNTIME_PIPELINE_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "flatstore/transaction.h"
#include "flatstore/value.h"
#include "runtime/catalog.h"

namespace flatstore::internal {

struct EncodedChange;

// A primary key of a table as ReadSet and WriteSet hold it: the table's id and a hash
// of the key's encoding (PendingTable::encodeKey). Two keys of one table with the same
// hash count as one: a closure may then run again when it need not, never the other way
// round.
using KeyMark = std::pair<int64_t, uint64_t>;
KeyMark keyOf(int64_t table_id, const std::vector<Value>& key);
// The same, from the key's encoding.
KeyMark keyOfEncoded(int64_t table_id, std::string_view encoded);

// What a closure read through its snapshot: objects by (table id, rowid) and by table
// id and primary key (keyOf), and the tables its queries scanned.
struct ReadSet {
  absl::flat_hash_set<std::pair<int64_t, int64_t>> rowids;
  absl::flat_hash_set<KeyMark> keys;
  absl::flat_hash_set<int64_t> scanned;
};

// What a request writes, in ReadSet's terms. A table where it changes a primary key,
// or (before it is applied) creates objects with automatic ids, counts as written whole.
struct WriteSet {
  absl::flat_hash_set<std::pair<int64_t, int64_t>> rowids;
  absl::flat_hash_set<KeyMark> keys;
  absl::flat_hash_set<int64_t> wide;
  absl::flat_hash_set<int64_t> tables;  // every table written
  // Whether the writes touch what `reads` read.
  bool touches(const ReadSet& reads) const;
};

// What `changes` write (an insert counts by its rowid once it is applied).
WriteSet writesOf(const std::vector<EncodedChange>& changes);

// A request whose tables were given to the next closures on them as soon as it reached
// the mailbox, before its commit. Those closures run on snapshots that may lack its
// changes, so each names it as a predecessor.
struct InFlight {
  Priority priority = Priority::kDefault;
  WriteSet intended;  // fixed before the record is published
  // Written and read only under the writer role: the sequence of the group that applied
  // it (0 before) and what it wrote; `failed` when nothing of it reached the database.
  uint64_t sequence = 0;
  bool failed = false;
  WriteSet applied;
  // Notified once its handle's result is known.
  absl::Notification done;
};

// Whether a predecessor applied after `snapshot_sequence` wrote what `reads` read.
// Under the writer role. Internal error for a predecessor not applied yet (same-priority
// predecessors are queued ahead, others waited for).
absl::StatusOr<bool> overwrittenSince(const std::vector<std::shared_ptr<InFlight>>& predecessors,
                                      uint64_t snapshot_sequence, const ReadSet& reads);
// The same, where `seen(sequence)` tells whether the snapshot has the commit of a
// predecessor applied at `sequence` (on PostgreSQL, whether a transaction id is visible
// in the closure's pg_snapshot).
absl::StatusOr<bool> overwrittenSince(const std::vector<std::shared_ptr<InFlight>>& predecessors,
                                      absl::FunctionRef<bool(uint64_t)> seen, const ReadSet& reads);

// The requests in flight, by table.
class InFlightRegistry {
 public:
  // The records on any of `tables`, each once.
  std::vector<std::shared_ptr<InFlight>> on(const std::vector<TableState*>& tables)
      ABSL_LOCKS_EXCLUDED(mu_);
  void add(const std::vector<TableState*>& tables, const std::shared_ptr<InFlight>& record)
      ABSL_LOCKS_EXCLUDED(mu_);
  void remove(const std::vector<TableState*>& tables, const std::shared_ptr<InFlight>& record)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<const TableState*, std::vector<std::shared_ptr<InFlight>>> by_table_
      ABSL_GUARDED_BY(mu_);
};

// Whether a closure on `tables` may hand them on early: not while a pause is set on one
// of them (TableState::pipeline_pause); each such hand-off counts a pause down.
bool mayHandOn(const std::vector<TableState*>& tables);
// After a closure read what a predecessor was writing: the next closures on `tables`
// wait for commits for a while.
void pauseHandOn(const std::vector<TableState*>& tables);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PIPELINE_H_
