// NotificationBarrier: waits until a workspace's default notification thread has run
// every delivery handed to it so far.
#ifndef FLATSTORE_TESTS_SUPPORT_NOTIFICATION_BARRIER_H_
#define FLATSTORE_TESTS_SUPPORT_NOTIFICATION_BARRIER_H_

#include "flatstore/workspace.h"

namespace flatstore::testing {

// pass() commits an Event of a kind of its own (the test schemas' game.fbs), waits for
// the observers, then subscribes on the default executor with the result fetched before
// that commit. The stale subscription is caught up at once, and its delivery queues
// behind everything offered to the notification thread before: once it runs, all of
// those have run.
//
// Thread-safety: one thread at a time; the workspace must use the test schemas.
class NotificationBarrier {
 public:
  // Returns once the barrier is passed. A failure (of the commit, the fetch, or the
  // bounded wait) is fatal to the test: call it in ASSERT_NO_FATAL_FAILURE.
  void pass(Workspace& ws);

 private:
  int passed_ = 0;  // numbers the Event kinds, so every barrier's result is its own
};

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_SUPPORT_NOTIFICATION_BARRIER_H_
