#include "tests/support/wait.h"

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace flatstore::testing {

void failStuck(const std::string& what) {
  ADD_FAILURE() << "stuck: " << what;
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(1);
}

bool waitAll(const std::vector<TransactionHandle>& handles, absl::Duration timeout) {
  struct Pending {
    absl::Mutex mu;
    size_t remaining ABSL_GUARDED_BY(mu) = 0;
  };
  auto pending = std::make_shared<Pending>();
  {
    absl::MutexLock lock(&pending->mu);
    pending->remaining = handles.size();
  }
  for (const TransactionHandle& h : handles) {
    h.onComplete([pending](const absl::StatusOr<TransactionResult>&) {
      absl::MutexLock lock(&pending->mu);
      --pending->remaining;
    });
  }
  absl::MutexLock lock(&pending->mu);
  return pending->mu.AwaitWithTimeout(
      absl::Condition(
          +[](size_t* remaining) { return *remaining == 0; }, &pending->remaining),
      timeout);
}

void waitAllOrDie(const std::vector<TransactionHandle>& handles, const std::string& what,
                  absl::Duration timeout) {
  if (!waitAll(handles, timeout)) failStuck(what);
}

absl::StatusOr<TransactionResult> waitOrDie(const TransactionHandle& handle,
                                            const std::string& what, absl::Duration timeout) {
  waitAllOrDie({handle}, what, timeout);
  return handle.wait();
}

}  // namespace flatstore::testing
