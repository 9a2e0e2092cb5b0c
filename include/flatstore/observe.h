// Live results: subscriptions to fetched results and to single objects.
//
//   auto strong = ws->fetch<game::Monster>().where(F::hp > 100).orderBy(F::hp.descending()).all();
//   flatstore::SubscriptionToken token = ws->subscribe(
//       *strong, [](const flatstore::FetchedResult<game::Monster>& latest,
//                   const flatstore::Changeset& changes) { ... });
//
// After each commit that changes a subscribed table, the changed objects are evaluated
// against the subscription's query in memory and placed by its order; the callback gets
// the new result and a changeset from the result it saw last. A slow callback does not
// slow commits: a subscriber's pending results coalesce to the latest one.
//
// Thread-safety: subscribe() and tokens may be used from any thread. Callbacks run on
// the subscription's executor, one at a time per subscription, never while the writer
// or a table waits on them.
#ifndef FLATSTORE_OBSERVE_H_
#define FLATSTORE_OBSERVE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"

namespace flatstore {

// How a result changed between two deliveries. Apply it to the old result by removing
// `deleted` (indices into the old result), then inserting `inserted` (indices into the
// new result, ascending); `updated` are indices into the new result of objects that
// stayed in place but changed. An object that moved is deleted and inserted.
struct Changeset {
  std::vector<size_t> deleted;
  std::vector<size_t> inserted;
  std::vector<size_t> updated;
  // The commit sequence the new result reflects.
  uint64_t commit_sequence = 0;

  bool empty() const { return deleted.empty() && inserted.empty() && updated.empty(); }
};

// Runs callbacks. Implement it to hand callbacks to your own event loop.
class Executor {
 public:
  virtual ~Executor() = default;
  // Runs `task` soon, on any thread the executor chooses. Must not run it after the
  // executor is destroyed.
  virtual void execute(std::function<void()> task) = 0;
};

// An executor that runs tasks right away on the calling thread (the workspace's
// notification thread). For tests and for cheap callbacks.
Executor& inlineExecutor();

namespace internal {
class SubscriptionCore;
}

// Cancels its subscription when destroyed or when cancel() is called. Move-only.
class SubscriptionToken {
 public:
  SubscriptionToken() = default;
  explicit SubscriptionToken(std::shared_ptr<internal::SubscriptionCore> core)
      : core_(std::move(core)) {}
  SubscriptionToken(SubscriptionToken&&) = default;
  SubscriptionToken& operator=(SubscriptionToken&& other) noexcept {
    if (this != &other) {
      cancel();
      core_ = std::move(other.core_);
    }
    return *this;
  }
  ~SubscriptionToken() { cancel(); }

  // Stops deliveries. When cancel() returns, the callback is not running and will not
  // run again (unless cancel() is called from inside the callback itself, which then
  // finishes normally). Idempotent; safe after the workspace is gone.
  void cancel();
  // False once cancelled, once an object subscription's object was deleted, or once the
  // subscription failed (see status()).
  bool active() const;
  // Why the subscription ended: OK while it is active, after cancel() and after its
  // object was deleted. A subscription that cannot keep its result exact (a re-query
  // failed: DataLoss for a damaged object, FailedPrecondition after shutdown, ...) ends
  // with that error rather than deliver a result a fresh fetch would not return; its
  // callback is not called again. Fetch again and subscribe anew once the cause is
  // fixed.
  absl::Status status() const;

 private:
  std::shared_ptr<internal::SubscriptionCore> core_;
};

}  // namespace flatstore

#endif  // FLATSTORE_OBSERVE_H_
