// ObserverHub: keeps subscribed results current after every commit.
//
// The writer publishes each committed group as a CommitEvent (the objects it just wrote,
// with their rowids and versionstamps; only for tables that have subscriptions). The
// hub's thread applies events in commit order: for each subscription on a changed table
// it evaluates the changed objects against the query in memory, places them by the
// query's order, and re-queries only when a limited result loses members. New results
// are handed to each subscription's executor; a subscription whose previous delivery has
// not run yet just gets a newer result (coalescing), and the changeset is computed when
// the delivery runs, from the result the callback saw last.
//
// The cost of an event for a subscription follows what concerns it, not the size of the
// commit: changed objects are sorted once per event by the value of each field that
// some subscription's filter bounds (a FieldRange), so a subscription evaluates only the
// changed objects inside its range, plus those it holds; the result is rebuilt in one
// merge, and the new result vector is shared with the delivery rather than copied.
//
// Threads: publish() from the writer; subscribe/cancel from any thread; maintenance on
// the hub thread; callbacks on executors.
#ifndef FLATSTORE_RUNTIME_OBSERVERS_H_
#define FLATSTORE_RUNTIME_OBSERVERS_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/fetch.h"
#include "runtime/catalog.h"
#include "runtime/commit_event.h"
#include "runtime/subscription.h"
#include "runtime/table_changes.h"

namespace flatstore::internal {

class ObserverHub : public std::enable_shared_from_this<ObserverHub> {
 public:
  // A re-query that may be answered with the missing tail of a full window only.
  struct TailQuery {
    QuerySpec spec;      // the matches after those the result holds
    uint64_t at = 0;     // valid only on a snapshot at exactly this commit
    uint64_t since = 0;  // and when no other process changed the table after this
  };
  struct RequeryResult {
    std::vector<RawRow> rows;
    uint64_t sequence = 0;  // the commit the snapshot is at
    bool tail = false;      // `rows` answer the TailQuery, not the whole query
  };
  // `requery` runs a query on a fresh snapshot (the workspace's reader pool); given a
  // TailQuery whose conditions hold on that snapshot, it runs that one instead.
  using Requery =
      std::function<absl::StatusOr<RequeryResult>(TableState*, const QuerySpec&, const TailQuery*)>;
  // `committed` tells the sequence of the last commit of this workspace.
  ObserverHub(Requery requery, std::function<uint64_t()> committed);
  ~ObserverHub();

  void start();
  // Called by the writer after each commit, before handles complete. Cheap when no
  // table in the group is observed.
  void publish(CommitEvent event);
  // Registers `core`; `initial` is what the subscriber already has, seen at commit
  // sequence `seen`. Brought up to date on the hub thread.
  void add(std::shared_ptr<SubscriptionCore> core, std::vector<EntityPtr> initial, uint64_t seen);
  void remove(SubscriptionCore* core);
  // Ends every subscription registered so far with `error` (their results can no longer
  // be kept exact); those added after this call are not affected.
  void failAll(absl::Status error);
  // Blocks until every event published so far has been applied (deliveries may still
  // be queued on executors).
  void drain();
  // Stops the hub thread; subscriptions get no more deliveries.
  void stop();
  uint64_t appliedSequence();

  // What a result needs after an event beyond the changes it can apply itself.
  enum class Refill {
    kNone,
    kTail,  // a full window lost members: it holds every match up to its old end
    kAll,   // the whole result must be fetched again
  };

 private:
  struct Op {
    std::shared_ptr<SubscriptionCore> add;  // a registration, or
    std::vector<EntityPtr> initial;
    uint64_t seen = 0;
    absl::Status fail_all;  // a failAll(), or
    CommitEvent event;      // a commit
  };
  void loop();
  void applyEvent(CommitEvent& event);
  void register_(std::shared_ptr<SubscriptionCore> core, std::vector<EntityPtr> initial,
                 uint64_t seen);
  // Updates a result subscription with one table's changes; true if it changed.
  bool applyToResult(SubscriptionCore& s, TableChanges& changes, Refill* refill)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.hub_thread);
  // Fetches the result again; with `tail_at`, only the matches after those it holds,
  // if no commit but those the hub applied happened up to `tail_at`.
  void requery(SubscriptionCore& s, std::optional<uint64_t> tail_at = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.hub_thread);

  Requery requery_;
  std::function<uint64_t()> committed_;
  absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<TableState*, std::vector<std::shared_ptr<SubscriptionCore>>> by_table_
      ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_OBSERVERS_H_
