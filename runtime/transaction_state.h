// Transaction state: what stands behind the public TransactionHandle and
// TransactionContext.
//
//   HandleState       a transaction's completion: its result, the callbacks waiting for
//                     it, and the turn of a caller that runs its own closure.
//                     Thread-safe.
//   TransactionState  one run of a closure: the snapshot it reads, the tables it
//                     declared, its pending changes (read-your-writes) and what it read
//                     (for pipelining). Used only on the closure's thread.
//   TransactionAccess the runtime's way into a TransactionContext.
#ifndef FLATSTORE_RUNTIME_TRANSACTION_STATE_H_
#define FLATSTORE_RUNTIME_TRANSACTION_STATE_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/fetch.h"
#include "flatstore/transaction.h"
#include "runtime/catalog.h"
#include "runtime/commit_request.h"
#include "runtime/pipeline.h"
#include "runtime/query_exec.h"
#include "runtime/sqlite.h"
#include "runtime/storage_engine.h"

namespace flatstore::internal {

// The completion state behind a TransactionHandle.
class HandleState {
 public:
  void complete(absl::StatusOr<TransactionResult> result);
  absl::StatusOr<TransactionResult> wait();
  bool done();
  void onComplete(std::function<void(const absl::StatusOr<TransactionResult>&)> callback);
  // For a caller that runs its own closure: the scheduler's signal that its turn came
  // (Scheduler::Job::give_turn), and the wait for it. awaitTurn() returns true for a
  // turn, false once the transaction completed (another thread ran the closure).
  void giveTurn();
  bool awaitTurn();
  // `check` is called by wait() before it blocks: an error (FailedPrecondition: the
  // wait could never end) is what wait() returns instead. Otherwise `end` is called
  // when the wait is over.
  void setWaitCheck(std::function<absl::Status()> check, std::function<void()> end)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  std::function<absl::Status()> wait_check_ ABSL_GUARDED_BY(mu_);
  std::function<void()> wait_end_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool turn_ ABSL_GUARDED_BY(mu_) = false;
  absl::StatusOr<TransactionResult> result_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void(const absl::StatusOr<TransactionResult>&)>> callbacks_
      ABSL_GUARDED_BY(mu_);
};

// The state of one running closure: the snapshot it reads (a view of the storage
// engine), the tables it declared, and its pending changes. Used only on the closure's
// thread.
class TransactionState {
 public:
  TransactionState(ReadView* snapshot, std::vector<TableState*> tables);
  ~TransactionState();

  absl::StatusOr<SubmitOutcome> submit(const TableDescription& table, const ErasedChange& change);
  QuerySource* source(const TableDescription& table);
  void abort() { aborted_ = true; }
  bool aborted() const { return aborted_; }
  // The changes to commit. Ends the transaction: its pending view (what its queries
  // see of its own changes) is given up.
  std::vector<EncodedChange> takeChanges();
  // Dictionary records to write with this transaction's changes (chunk cursors).
  void setCommitHook(std::function<absl::Status(EntryWriter&)> hook) {
    commit_hook_ = std::move(hook);
  }
  std::function<absl::Status(EntryWriter&)> takeCommitHook() { return std::move(commit_hook_); }
  int64_t pendingBytes() const { return bytes_; }
  // For chunks: after how many changes TransactionContext::chunkFull() turns true (0:
  // never) while other transactions are pending (`pending` counts the workspace's
  // pending transactions, this one included); with none, after kAloneFactor times as
  // many.
  static constexpr int64_t kAloneFactor = 16;
  void setChunkLimit(int64_t changes, const std::atomic<int64_t>* pending) {
    chunk_limit_ = changes;
    workspace_pending_ = pending;
  }
  bool chunkFull() const {
    int64_t n = static_cast<int64_t>(changes_.size());
    if (chunk_limit_ <= 0 || n < chunk_limit_) return false;
    return workspace_pending_->load(std::memory_order_relaxed) > 1 ||
           n / kAloneFactor >= chunk_limit_;
  }
  // Records in `reads` what the closure reads from its snapshot (for pipelining).
  void recordReads(ReadSet* reads) { reads_ = reads; }
  // Lets creations take their keys as free without asking the snapshot, when it prefers
  // to answer such questions in one batch (ReadView::batchesKeyLookups); the run then
  // counts only if keysWereFree() says so. For PostgreSQL's snapshots, where each lookup
  // is a round trip: a closure creating 2,000 objects asks once, not 2,000 times.
  void deferKeyChecks() { defer_key_checks_ = snapshot_->batchesKeyLookups(); }
  // Lets creations take their keys as free without asking the snapshot at all, when
  // the commit path refuses a taken key where it applies the change and then runs the
  // closure again with every key checked (the table's primary key refuses it, on SQLite
  // and PostgreSQL; see CommitRequest::keys_unchecked). A key taken so whose creation is deleted or
  // given another key before the commit never reaches the table: keysWereFree() looks
  // those up. Overrides deferKeyChecks().
  void leaveKeyChecksToApply() { keys_at_apply_ = true; }
  // Whether a creation took its key as free under leaveKeyChecksToApply().
  bool keysUnchecked() const { return keys_unchecked_; }
  // The closure failed: its changes are not applied, so no table refuses the keys its
  // creations took as free, and keysWereFree() looks them up instead (what the closure
  // did after such a creation, its error included, may rest on a wrong answer).
  void changesWillNotApply();
  // Whether every key a creation took as free (and, under leaveKeyChecksToApply(),
  // dropped again) is free in the snapshot (one batch). False means the run must be
  // done again checking each key: a creation should have failed with AlreadyExists,
  // and what the closure did after it rests on a wrong answer.
  absl::StatusOr<bool> keysWereFree();

 private:
  class Source;
  TableState* declared(const TableDescription& table);
  // The current version of the target of a change or deletion.
  struct Current {
    int64_t rowid = 0;    // 0 for a pending insert
    int64_t sort_id = 0;  // identifies a pending insert
    ObjectBuffer bytes;
    std::vector<Value> key;
    bool pending_insert = false;
    Versionstamp versionstamp;  // of the committed version; zero if changed here
  };
  absl::StatusOr<std::optional<Current>> find(TableState& t, int64_t rowid,
                                              const std::vector<Value>* key);
  absl::StatusOr<bool> keyTaken(TableState& t, const std::vector<Value>& key);
  // find() by key as far as this transaction's own changes know: sets `current` and
  // returns false when they decide, true when only the snapshot can (the key is then
  // recorded as read, and `encoded_key` set to PendingTable::encodeKey(key)).
  absl::StatusOr<bool> findPending(TableState& t, const std::vector<Value>& key,
                                   std::optional<Current>* current, std::string* encoded_key);
  // `encoded_key`: PendingTable::encodeKey(key) when the caller has it, else empty.
  void recordInsert(TableState& t, EncodedObject encoded, std::vector<Value> key,
                    std::vector<Value> index_values, std::string encoded_key = std::string());
  // `key` and `index_values` of the changed object; none for what the change left as
  // `current` has it (then taken from `current`, which may be moved from).
  void recordUpdate(TableState& t, Current& current, EncodedObject encoded,
                    std::optional<std::vector<Value>> key,
                    std::optional<std::vector<Value>> index_values);
  // Moves from `current`'s key.
  void recordDelete(TableState& t, Current& current);
  // The pending entry of committed object `rowid`; on its first change in this
  // transaction a new entry, whose change make_change() makes.
  template <class MakeChange>
  PendingTable::Entry& committedEntry(PendingTable& p, int64_t rowid, MakeChange make_change);

  // The bridge of `t` (a declared table) as this transaction uses it throughout.
  const VersionBridge* bridgeOf(const TableState* t) const;

  // The key of a pending insert that is deleted or given another key: under
  // leaveKeyChecksToApply(), when the creation took it unchecked, it is checked with
  // keysWereFree().
  void dropInsertKey(TableState& t, EncodedChange& insert);

  ReadView* snapshot_;
  bool defer_key_checks_ = false;
  bool keys_at_apply_ = false;
  bool keys_unchecked_ = false;
  // Keys creations took as free without asking (deferKeyChecks; under
  // leaveKeyChecksToApply, those dropped again), per table.
  std::map<const TableState*, std::vector<std::vector<Value>>> unchecked_keys_;
  std::vector<TableState*> tables_;
  // Per declared table, its bridge when the transaction started: every change of the
  // transaction is encoded with it, and the writer runs the closure again if the
  // table's bridge changed before the commit.
  std::vector<const VersionBridge*> bridges_;
  std::map<TableState*, PendingTable> pending_;
  std::map<TableState*, std::unique_ptr<Source>> sources_;
  std::vector<EncodedChange> changes_;
  std::function<absl::Status(EntryWriter&)> commit_hook_;
  int64_t bytes_ = 0;
  int64_t chunk_limit_ = 0;
  const std::atomic<int64_t>* workspace_pending_ = nullptr;
  bool aborted_ = false;
  ReadSet* reads_ = nullptr;
};

// How the runtime makes a TransactionContext for a state and reaches the state behind
// one; the public header keeps both private.
class TransactionAccess {
 public:
  static TransactionContext context(TransactionState* state) { return TransactionContext(state); }
  static TransactionState* state(TransactionContext& context) { return context.state_; }
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_TRANSACTION_STATE_H_
