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
// Threads: publish() from the writer; subscribe/cancel from any thread; maintenance on
// the hub thread; callbacks on executors.
#ifndef FLATSTORE_RUNTIME_OBSERVERS_H_
#define FLATSTORE_RUNTIME_OBSERVERS_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/entity.h"
#include "flatstore/fetch.h"
#include "flatstore/observe.h"
#include "runtime/catalog.h"

namespace flatstore::internal {

using EntityPtr = std::shared_ptr<const EntityBase>;
using EntityFactory = EntityPtr (*)(ObjectBuffer buffer, int64_t rowid, Versionstamp vs);

// One object a commit wrote or deleted.
struct ChangedObject {
  int64_t rowid = 0;
  bool deleted = false;
  ObjectBuffer bytes;  // empty when deleted
  Versionstamp versionstamp;
};

// What one group commit changed, per observed table.
struct CommitEvent {
  uint64_t sequence = 0;
  std::vector<std::pair<TableState*, std::vector<ChangedObject>>> tables;
};

// Computes the changeset that turns `before` into `after` (objects identified by
// rowid; an object in both whose relative order changed is deleted and inserted).
Changeset diffResults(const std::vector<EntityPtr>& before, const std::vector<EntityPtr>& after);

// Positions by rowid: open addressing in one array, no allocation per entry. Sized for
// a known number of entries.
class RowidIndex {
 public:
  static constexpr size_t kAbsent = SIZE_MAX;

  explicit RowidIndex(size_t n) {
    size_t slots = 4;
    while (slots < 2 * n) slots <<= 1;
    mask_ = slots - 1;
    slots_.assign(slots, {0, kAbsent});
  }
  // Sets the position of `rowid`. REQUIRES: at most n distinct rowids in all.
  void assign(int64_t rowid, size_t position) {
    size_t i = start(rowid);
    while (slots_[i].second != kAbsent && slots_[i].first != rowid) i = (i + 1) & mask_;
    slots_[i] = {rowid, position};
  }
  // The position of `rowid`, or kAbsent.
  size_t find(int64_t rowid) const {
    for (size_t i = start(rowid);; i = (i + 1) & mask_) {
      if (slots_[i].second == kAbsent || slots_[i].first == rowid) return slots_[i].second;
    }
  }

 private:
  size_t start(int64_t rowid) const {
    // Fibonacci hashing: rowids are often consecutive.
    return static_cast<size_t>((static_cast<uint64_t>(rowid) * 0x9E3779B97F4A7C15u) >> 32) & mask_;
  }

  size_t mask_ = 0;
  std::vector<std::pair<int64_t, size_t>> slots_;
};

class ObserverHub;

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

  // Query state, touched only by the hub thread.
  std::vector<EntityPtr> rows;
  std::unordered_map<int64_t, Versionstamp> members;  // rowid -> versionstamp in `rows`
  Versionstamp object_version;
  // Commits up to this sequence are already reflected in `rows` (a re-query saw them).
  uint64_t base_sequence = 0;

 private:
  void deliver();
  void schedule();

  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool delivering_ ABSL_GUARDED_BY(mu_) = false;
  std::thread::id delivering_thread_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const std::vector<EntityPtr>> latest_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const std::vector<EntityPtr>> delivered_ ABSL_GUARDED_BY(mu_);
  EntityPtr latest_object_ ABSL_GUARDED_BY(mu_);
  bool latest_deleted_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t latest_sequence_ ABSL_GUARDED_BY(mu_) = 0;
};

class ObserverHub : public std::enable_shared_from_this<ObserverHub> {
 public:
  // `requery` runs a query on a fresh snapshot (the workspace's reader pool) and tells
  // the commit sequence it saw at least.
  using Requery = std::function<absl::StatusOr<std::vector<RawRow>>(TableState*, const QuerySpec&)>;
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
  // Blocks until every event published so far has been applied (deliveries may still
  // be queued on executors).
  void drain();
  // Stops the hub thread; subscriptions get no more deliveries.
  void stop();
  uint64_t appliedSequence();

 private:
  struct Op {
    std::shared_ptr<SubscriptionCore> add;  // a registration, or
    std::vector<EntityPtr> initial;
    uint64_t seen = 0;
    CommitEvent event;  // a commit
  };
  void loop();
  void applyEvent(CommitEvent& event);
  void register_(std::shared_ptr<SubscriptionCore> core, std::vector<EntityPtr> initial,
                 uint64_t seen);
  // Updates a result subscription with one table's changes; true if it changed.
  bool applyToResult(SubscriptionCore& s,
                     const std::vector<std::pair<ChangedObject*, EntityPtr>>& changes,
                     bool* requery);
  void requery(SubscriptionCore& s);

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

#endif  // FLATSTORE_RUNTIME_OBSERVERS_H_
