// SubscriptionCore: one subscription, its query state and its delivery state; and what
// delivers results: the changeset between two results and the default executor.
//
// The hub offers a subscription each newer result; a subscription whose previous
// delivery has not run yet just gets the newer one (coalescing), and the changeset is
// computed when the delivery runs, from the result the callback saw last.
//
// Thread-safety: offer() and the query state from the hub thread; cancel() and active()
// from any thread; callbacks on the subscription's executor, one at a time.
#ifndef FLATSTORE_RUNTIME_SUBSCRIPTION_H_
#define FLATSTORE_RUNTIME_SUBSCRIPTION_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/entity.h"
#include "flatstore/fetch.h"
#include "flatstore/observe.h"
#include "runtime/catalog.h"
#include "runtime/table_changes.h"

namespace flatstore::internal {

// Computes the changeset that turns `before` into `after` (objects identified by
// rowid; an object in both whose relative order changed is deleted and inserted).
Changeset diffResults(const std::vector<EntityPtr>& before, const std::vector<EntityPtr>& after);

class ObserverHub;

// True while this thread runs a subscription's callback (whatever its executor).
bool inSubscriptionCallback();

// The hub thread as a capability of the thread-safety analysis: state that only the hub
// thread touches is ABSL_GUARDED_BY a HubThread, and code on the hub thread calls
// assertHeld() before it touches that state (checked with assert() in debug builds).
class ABSL_LOCKABLE HubThread {
 public:
  void assertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK();
};

// One subscription: its query state (hub thread only) and its delivery state.
class SubscriptionCore : public std::enable_shared_from_this<SubscriptionCore> {
 public:
  using ResultCallback = std::function<void(const std::vector<EntityPtr>&, const Changeset&)>;
  using ObjectCallback = std::function<void(const EntityPtr&)>;

  // Delivery: called by the hub with a newer state.
  void offer(std::shared_ptr<const std::vector<EntityPtr>> result, uint64_t sequence);
  void offerObject(EntityPtr object, uint64_t sequence, bool deleted);
  void cancel();
  bool active();
  // Ends the subscription with `error`: no delivery runs after this returns (but one
  // running now finishes). From the hub thread.
  void fail(absl::Status error);
  // OK, or the error fail() ended it with.
  absl::Status status();
  // What the subscriber already holds: the base of the first changeset.
  void seedDelivered(std::shared_ptr<const std::vector<EntityPtr>> result);

  // Set at creation, then read-only.
  bool object_mode = false;
  TableState* table = nullptr;
  QuerySpec spec;
  EntityFactory factory = nullptr;
  int64_t object_rowid = 0;
  Executor* executor = nullptr;
  ResultCallback result_callback;
  ObjectCallback object_callback;
  std::weak_ptr<ObserverHub> hub;

  // Query state, touched only by the hub thread. `rows` is immutable once built: a new
  // result is a new vector, shared with the deliveries.
  HubThread hub_thread;
  std::shared_ptr<const std::vector<EntityPtr>> rows ABSL_GUARDED_BY(hub_thread);
  // The rowids in `rows`, for telling quickly whether a small event concerns the
  // result; rebuilt on first use after `rows` was replaced wholesale.
  std::unordered_set<int64_t> members ABSL_GUARDED_BY(hub_thread);
  bool members_current ABSL_GUARDED_BY(hub_thread) = false;
  FieldRange range ABSL_GUARDED_BY(hub_thread);  // of spec.where, set at registration
  // The top-level fields (as ChangedObject::changed_fields) that the filter or the
  // order reads: a change of a held object outside them neither moves it nor makes it
  // leave. Set at registration.
  uint64_t query_fields ABSL_GUARDED_BY(hub_thread) = ~uint64_t{0};
  Versionstamp object_version ABSL_GUARDED_BY(hub_thread);
  // Commits up to this sequence are already reflected in `rows` (a re-query saw them).
  uint64_t base_sequence ABSL_GUARDED_BY(hub_thread) = 0;

 private:
  void deliver();
  void schedule();

  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  bool scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool delivering_ ABSL_GUARDED_BY(mu_) = false;
  std::thread::id delivering_thread_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const std::vector<EntityPtr>> latest_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const std::vector<EntityPtr>> delivered_ ABSL_GUARDED_BY(mu_);
  EntityPtr latest_object_ ABSL_GUARDED_BY(mu_);
  bool latest_deleted_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t latest_sequence_ ABSL_GUARDED_BY(mu_) = 0;
};

// A serial executor with one thread: the workspace's default notification thread.
class NotificationThread : public Executor {
 public:
  NotificationThread();
  ~NotificationThread() override;
  void execute(std::function<void()> task) override;
  void stop();

 private:
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_SUBSCRIPTION_H_
