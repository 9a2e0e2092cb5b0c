// Transactions: the context a closure runs with, and the handle that reports its end.
//
//   auto handle = ws->performChanges<game::Monster>([](flatstore::TransactionContext& txn) {
//     auto orc = game::MonsterChangeRequest::creation();
//     orc.setName("orc").setRealm(1).setHp(30);
//     return txn.submit(std::move(orc)).status();
//   });
//   absl::StatusOr<flatstore::TransactionResult> done = handle.wait();
//
// The closure runs on a worker thread once every table it declared is free (or on the
// thread of a caller waiting for it, or on the thread that ran the closure before it on
// its tables: which thread is not part of the contract). It reads one snapshot for its
// whole run, taken at its first read (a closure that reads nothing takes none, and no
// other commit can make it run again), plus its own submitted changes, and its changes
// are committed by the workspace's single writer, together with other closures'
// changes, in one SQLite transaction. The next closure on a table sees this one's
// writes: it starts after this commit, or (when closures queue up on the table, or the
// writer is busy) as soon as this closure's changes reach the writer, and then runs
// again if it read anything this one writes before that was committed. Closures on one
// table commit in submission order.
//
// A closure must not touch tables it did not declare (FailedPrecondition), must not keep
// the context after it returns, and should be re-runnable (it may be run again when
// another process changed what it read, or when it read what an earlier closure on its
// table was still committing).
#ifndef FLATSTORE_TRANSACTION_H_
#define FLATSTORE_TRANSACTION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flatstore/change_request.h"
#include "flatstore/detail/erased_change.h"
#include "flatstore/entity.h"
#include "flatstore/fetch.h"
#include "flatstore/table_description.h"

namespace flatstore {

// What a submitted change did.
enum class SubmitOutcome {
  kInserted,   // a new object
  kUpdated,    // an existing object changed
  kUnchanged,  // the object already was as requested: nothing is written
  kDeleted,    // an existing object is gone
};

// The result of a committed transaction.
struct TransactionResult {
  // The versionstamp of the commit (commit sequence, index of the transaction in its
  // group commit; see Versionstamp), which every object it wrote carries. Zero when the
  // transaction wrote nothing.
  Versionstamp versionstamp;
  // Number of objects inserted, updated and deleted.
  int64_t inserted = 0;
  int64_t updated = 0;
  int64_t deleted = 0;
};

// The context of one running closure. Used only on the closure's thread, only during
// the closure's run.
class TransactionContext {
 public:
  TransactionContext(const TransactionContext&) = delete;
  TransactionContext& operator=(const TransactionContext&) = delete;

  // Encodes `request` against the object as this transaction sees it and records the
  // change. Errors: FailedPrecondition for a table the closure did not declare;
  // AlreadyExists when a creation's primary key is taken; NotFound when a change or
  // deletion finds no object; InvalidArgument for a missing primary key;
  // FailedPrecondition when a compare-and-set condition does not hold. A failed
  // submit records nothing; the closure decides whether to go on. A creation's key is
  // not looked up at once (SQLite: the table refuses a taken key when the changes are
  // written; PostgreSQL: all keys are looked up when the closure is done): when one was
  // taken, the closure runs again, looking each key up, and sees AlreadyExists then.
  template <class R>
  absl::StatusOr<SubmitOutcome> submit(const R& request) {
    internal::ErasedChange change{request.kind(),
                                  request.targetRowid(),
                                  &request.targetKey(),
                                  request.requiredVersionstamp(),
                                  request.requiresAbsent(),
                                  &request,
                                  [](const void* r, std::span<const uint8_t> current) {
                                    return encodeRequest(*static_cast<const R*>(r), current);
                                  }};
    return submitErased(R::Entity::description(), change);
  }

  // Queries see the transaction's snapshot plus its own submitted changes.
  template <class T>
  Query<T> fetch() {
    return Query<T>(source(EntityTraits<T>::description()));
  }
  // Looks up by primary key (or automatic id); null when absent. Takes the key as
  // Workspace::get does.
  template <class T, class... K>
  requires PrimaryKeyOf<T, K...>
      absl::StatusOr<std::shared_ptr<const typename EntityTraits<T>::Entity>> get(const K&... key) {
    return getByKey<T>(source(EntityTraits<T>::description()), key...);
  }

  // For a chunk of Workspace::performChunked: true once the changes submitted so far
  // would hold the write lock for about TransactionOptions::chunk_budget, at the pace
  // the writer applied and committed recent large requests. A chunk callback that ends
  // its chunk (saves its cursor and returns) when this turns true keeps every chunk
  // short, so a transaction that arrives meanwhile waits about that long at most for
  // the lock:
  //
  //   for (; i < rows.size(); ++i) {
  //     FLATSTORE_RETURN_IF_ERROR(txn.submit(creationFor(rows[i])).status());
  //     if (txn.chunkFull()) { ++i; break; }
  //   }
  //
  // When no other transaction of the workspace is pending, nobody waits for the lock,
  // and a chunk may grow to 16 times the budget before this turns true. Always false
  // outside chunks. Cheap: no lock, no SQLite.
  bool chunkFull() const;

  // Marks the transaction aborted: nothing it submitted is written. Returns the status
  // the closure should return (Aborted).
  absl::Status abort(std::string_view reason = "aborted by its closure");

 private:
  // Made by the runtime for each run of a closure.
  friend class internal::TransactionAccess;
  explicit TransactionContext(internal::TransactionState* state) : state_(state) {}

  // A generated request takes the current object with its size (it may copy it and
  // change it in place); another takes its start only.
  template <class R>
  static absl::StatusOr<EncodedObject> encodeRequest(const R& request,
                                                     std::span<const uint8_t> current) {
    if constexpr (requires { request.encodeOver(current); }) {
      return request.encodeOver(current);
    } else {
      return request.encodeOver(current.empty() ? nullptr : current.data());
    }
  }
  absl::StatusOr<SubmitOutcome> submitErased(const TableDescription& table,
                                             const internal::ErasedChange& change);
  // The query source for `table`; a source that fails every query when the table was
  // not declared.
  internal::QuerySource* source(const TableDescription& table);

  internal::TransactionState* state_;
};

// The completion of a submitted transaction. Copyable; every copy refers to the same
// transaction. Thread-safe.
class TransactionHandle {
 public:
  explicit TransactionHandle(std::shared_ptr<internal::HandleState> state)
      : state_(std::move(state)) {}

  // Blocks until the transaction committed or failed, and returns its outcome.
  //
  // Inside a closure, the closure's worker slot is lent to other transactions while it
  // waits (the pool starts another thread when no idle one is left), so a transaction
  // on other tables completes even when every slot is held by waiting closures.
  // FailedPrecondition, at once, where the wait could never end: on the writer thread
  // (an onComplete callback, or a closure run under the write lock), and inside a
  // closure that holds a table of the awaited transaction, which is queued behind it.
  // A circle of closures each waiting for another's table is not detected: it deadlocks.
  absl::StatusOr<TransactionResult> wait() const;
  // True once the transaction committed or failed.
  bool done() const;
  // Runs `callback` with the outcome once it is known: right away on this thread if it
  // already is, otherwise on the thread that completes the transaction (keep it short).
  void onComplete(std::function<void(const absl::StatusOr<TransactionResult>&)> callback) const;

 private:
  std::shared_ptr<internal::HandleState> state_;
};

// Who is waiting for a transaction. Workers and the writer serve higher priorities
// first, in the proportion 4 : 2 : 1 when all are waiting, so none starves.
enum class Priority { kUserInitiated, kDefault, kBackground };

// What performChanges does when max_pending_transactions are already pending.
enum class WhenFull {
  kWait,      // block the caller until one completes (do not use inside a closure)
  kFailFast,  // complete the handle at once with ResourceExhausted
};

// How a transaction is scheduled.
struct TransactionOptions {
  // A name for metrics and error messages.
  std::string name;
  Priority priority = Priority::kDefault;
  WhenFull when_full = WhenFull::kWait;
  // For background work that only the latest request matters for (say, saving a
  // setting): a queued transaction with the same key that has not started yet is
  // replaced by this one, and both handles complete with this one's result.
  std::string coalescing_key;
  // For performChunked: how long one chunk should hold the write lock (see
  // TransactionContext::chunkFull). Shorter chunks let other transactions in sooner;
  // each chunk also pays one commit.
  absl::Duration chunk_budget = absl::Milliseconds(1);

  // The defaults with priority `p`.
  static TransactionOptions withPriority(Priority p) {
    TransactionOptions o;
    o.priority = p;
    return o;
  }
  // The defaults with a name (GCC warns about designated initializers that leave out
  // members; this does not).
  static TransactionOptions named(std::string name) {
    TransactionOptions o;
    o.name = std::move(name);
    return o;
  }
};

}  // namespace flatstore

#endif  // FLATSTORE_TRANSACTION_H_
