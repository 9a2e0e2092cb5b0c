// Admission: the bound on transactions pending in a workspace
// (WorkspaceOptions::max_pending_transactions). A transaction is pending from its
// performChanges until its handle completes; past the bound a new one waits or fails
// fast, as its TransactionOptions::when_full says.
//
// Thread-safety: all methods are thread-safe; pending() is read without a lock.
#ifndef FLATSTORE_RUNTIME_ADMISSION_H_
#define FLATSTORE_RUNTIME_ADMISSION_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/transaction.h"

namespace flatstore::internal {

class Admission {
 public:
  explicit Admission(int64_t max_pending) : max_pending_(max_pending) {}

  // Counts a new transaction in: at once while fewer than the bound are pending;
  // otherwise blocks until one leaves (kWait) or fails with ResourceExhausted
  // (kFailFast).
  absl::Status admit(WhenFull when_full) ABSL_LOCKS_EXCLUDED(mu_);
  // Counts in, ignoring the bound: a follow-up the runtime submits from a completion
  // (the next chunk), where waiting could block the writer thread.
  void enter() ABSL_LOCKS_EXCLUDED(mu_);
  // Counts a completed transaction out.
  void leave() ABSL_LOCKS_EXCLUDED(mu_);
  // The transactions pending now, a hint read without the lock (chunks use it to tell
  // whether others wait).
  const std::atomic<int64_t>& pending() const { return pending_; }

 private:
  const int64_t max_pending_;
  absl::Mutex mu_;
  // Changed under mu_ (its waits depend on it), read without it by pending().
  std::atomic<int64_t> pending_{0};
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_ADMISSION_H_
