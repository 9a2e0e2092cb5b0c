// Bounded waits. Every wait in the tests is bounded by kBoundedWait: a wait that runs
// out means a deadlock, a lost completion or a hung helper process, and the test
// reports it instead of hanging until ctest's timeout.
//
// Where the stuck threads still reference the test's state (a workspace whose
// destructor would wait for them), the test cannot unwind: failStuck() reports the
// failure and ends the process at once.
#ifndef FLATSTORE_TESTS_SUPPORT_WAIT_H_
#define FLATSTORE_TESTS_SUPPORT_WAIT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flatstore/transaction.h"

namespace flatstore::testing {

// How long a test waits for work that must finish; generous, for sanitizer builds on a
// loaded machine. Reaching it is a failure, never a normal path.
inline constexpr absl::Duration kBoundedWait = absl::Seconds(120);

// Reports `what` as a test failure and ends the process at once (see the file comment).
[[noreturn]] void failStuck(const std::string& what);

// Waits until every handle in `handles` completed, at most `timeout` in all. False when
// one did not. Completions are counted through onComplete, so this never blocks on a
// single handle.
bool waitAll(const std::vector<TransactionHandle>& handles, absl::Duration timeout = kBoundedWait);

// waitAll, or failStuck naming `what`.
void waitAllOrDie(const std::vector<TransactionHandle>& handles, const std::string& what,
                  absl::Duration timeout = kBoundedWait);

// The outcome of `handle`, waiting at most `timeout`, or failStuck naming `what`.
absl::StatusOr<TransactionResult> waitOrDie(const TransactionHandle& handle,
                                            const std::string& what,
                                            absl::Duration timeout = kBoundedWait);

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_SUPPORT_WAIT_H_
