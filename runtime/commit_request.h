// CommitRequest: what one closure (or one internal job) hands the writer to commit, and
// CommitCallbacks, the one interface through which the writer calls its owner back.
//
// A request is plain data: the changes, encoded on the closure's thread; what the writer
// needs to detect that another process (or a pipelined predecessor) changed what the
// closure read; and a pointer to its owner's callbacks. It is created on the closure's
// thread, handed to the Writer, and from then on touched only under the writer role.
#ifndef FLATSTORE_RUNTIME_COMMIT_REQUEST_H_
#define FLATSTORE_RUNTIME_COMMIT_REQUEST_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flatstore/entity.h"
#include "flatstore/transaction.h"
#include "flatstore/value.h"
#include "runtime/catalog.h"
#include "runtime/pipeline.h"
#include "runtime/sqlite.h"

namespace flatstore::internal {

// One change, fully encoded on the closure's thread.
struct EncodedChange {
  enum class Op { kInsert, kUpdate, kDelete, kNone };
  Op op = Op::kNone;
  TableState* table = nullptr;
  int64_t rowid = 0;  // update, delete
  ObjectBuffer bytes;
  std::vector<Value> key;
  std::vector<Value> index_values;
  // For updates: the index values before the change, so unchanged ones are skipped,
  // and whether the primary key changed. While the change leaves every indexed field
  // as it was, `same_index_values` is set and the old values are `index_values`
  // (old_index_values stays empty: no copy per change). indexChanged() reads both.
  std::vector<Value> old_index_values;
  bool same_index_values = false;
  bool key_changed = false;
  // For inserts: the creation took its key as free without looking it up
  // (TransactionState::leaveKeyChecksToApply).
  bool key_unchecked = false;
  // For updates: the version the change was made over, and which top-level fields
  // differ from it (EncodedObject::changed_fields, accumulated), for observers.
  Versionstamp base_version;
  uint64_t changed_fields = ~uint64_t{0};
  // For inserts and updates: the table's bridge the change was encoded with (see
  // TableState::bridge()).
  const VersionBridge* bridge = nullptr;
};

// Whether index value `x` of `c` is new: always for an insert; for an update, when
// it differs from the value before the change.
inline bool indexChanged(const EncodedChange& c, size_t x) {
  if (c.op == EncodedChange::Op::kInsert) return true;
  if (c.same_index_values) return false;
  return x >= c.old_index_values.size() || !(c.old_index_values[x] == c.index_values[x]);
}

// A primary key as error messages print it: "(a, b)".
std::string keyText(const std::vector<Value>& key);

struct CommitRequest;

// What a snapshot saw, so that a write session can tell whether a table changed since.
// SQLite sets `sequence` (the commit sequence of the snapshot); PostgreSQL sets
// `sequence` to the snapshot's xmin and `snapshot` to the snapshot itself
// (pg_current_snapshot() as text).
struct ReadMark {
  uint64_t sequence = 0;
  std::string snapshot;
};

class EntryWriter;
class ReadView;

// What the writer calls back for a request. Both calls happen on a thread holding the
// writer role (the writer thread, or a caller committing a group itself); waiting for
// another transaction there would deadlock.
class CommitCallbacks {
 public:
  virtual ~CommitCallbacks() = default;
  // Runs the request's closure inside the open write transaction, reading `view` (of
  // that transaction), where it sees every commit before it and no other client can
  // change its tables, and fills `request.changes` and `request.entries`. `again`: the
  // run replaces a stale one (a pipelined predecessor or another process wrote what it
  // read). An error fails the request alone.
  virtual absl::Status runUnderLock(ReadView& view, CommitRequest& request, bool again) = 0;
  // The request's outcome, after its group committed or failed. The request is
  // destroyed after this returns.
  virtual void complete(CommitRequest& request, absl::StatusOr<TransactionResult> result) = 0;
};

struct CommitRequest {
  std::vector<EncodedChange> changes;
  // Extra work inside the request's savepoint on SQLite (catalog DDL, dictionary writes:
  // Writer::runSync).
  std::function<absl::Status(Connection&)> apply;
  // Dictionary records the closure writes with its changes (a chunk's cursor), on either
  // engine.
  std::function<absl::Status(EntryWriter&)> entries;
  int64_t bytes = 0;
  // When more is queued than one group takes, higher priorities go first.
  Priority priority = Priority::kDefault;
  // The writer produces `changes` and `apply` by calling runUnderLock() inside the write
  // transaction before applying them (a closure run under the write lock).
  bool run_under_lock = false;
  // Creations of the closure took their primary keys as free without looking them up
  // (CommitPath::refusesTakenKeys). When the apply fails with AlreadyExists, a key may
  // have been taken, and the closure would have seen that at submit: the writer rolls
  // the request back and runs its closure again under the lock with `check_keys` set,
  // every key looked up, in the request's place in its group. Not a conflict: the run
  // counts against no retry bound.
  bool keys_unchecked = false;
  bool check_keys = false;

  // The transaction's declared tables: what a PostgreSQL write session locks (with the
  // tables of `changes`).
  std::vector<TableState*> tables;
  // The tables the closure read and what its snapshot saw (`snapshot_mark`; its
  // sequence is `snapshot_sequence`). If another
  // process changed one of them since, the request fails with a conflict (see
  // isConflict) and is run again on a fresh snapshot, or, once it handed its tables on,
  // runs again under the lock.
  std::vector<TableState*> read_tables;
  uint64_t snapshot_sequence = 0;
  ReadMark snapshot_mark;

  // Pipelining (see pipeline.h).
  struct Pipelining {
    // The requests on this request's tables that were in flight when its snapshot was
    // taken, and what its closure read: when a predecessor applied after the snapshot
    // wrote something the closure read, the writer runs the closure again under the
    // lock.
    std::vector<std::shared_ptr<InFlight>> predecessors;
    ReadSet reads;
    // Its own record, when it handed its tables on before its commit.
    std::shared_ptr<InFlight> in_flight;
  };
  Pipelining pipelining;
  bool handedOn() const { return pipelining.in_flight != nullptr; }

  // Who is called back (shared: it may serve several runs of one closure).
  std::shared_ptr<CommitCallbacks> callbacks;
  // Set by the writer before complete(): how long the group held the write lock.
  int64_t lock_hold_us = -1;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_COMMIT_REQUEST_H_
