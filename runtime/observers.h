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
#include <set>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/entity.h"
#include "flatstore/fetch.h"
#include "flatstore/observe.h"
#include "flatstore/query.h"
#include "flatstore/value.h"
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
  // When the change is known to be made over the version `base_version` (not null), the
  // top-level fields that differ from it (EncodedObject::changed_fields); otherwise all.
  Versionstamp base_version;
  uint64_t changed_fields = ~uint64_t{0};
};

// What one group commit changed, per observed table.
struct CommitEvent {
  uint64_t sequence = 0;
  std::vector<std::pair<TableState*, std::vector<ChangedObject>>> tables;
};

// Computes the changeset that turns `before` into `after` (objects identified by
// rowid; an object in both whose relative order changed is deleted and inserted).
Changeset diffResults(const std::vector<EntityPtr>& before, const std::vector<EntityPtr>& after);

// A necessary condition of a query's filter: every object the filter accepts has a
// value of `field` within the bounds (each optional, inclusive or not, ordered as
// compare() orders values; a null value is never within). Without a field nothing is
// known and every object may match.
struct FieldRange {
  const FieldInfo* field = nullptr;
  std::optional<Value> low;
  std::optional<Value> high;
  bool low_inclusive = true;
  bool high_inclusive = true;
  // The conjuncts of the filter that the range does not decide: an object whose value
  // is ordered (not NaN) and within the range matches exactly when all of these are
  // true. Nodes of the filter's tree, which must outlive the range.
  std::vector<const ExprNode*> residual;
};

// The range that the comparisons and `in` lists of `where`'s top-level conjunction
// imply, for one field (one bounded on both sides if any is). Terms under || or !,
// `!=`, `notIn` and null or NaN operands are not used: compare() is a total order only
// without NaN.
FieldRange filterRange(const ExprNode* where);

// The top-level fields that `spec`'s filter and order read, as a mask of FlatBuffers
// field ids like EncodedObject::changed_fields.
uint64_t queryFields(const QuerySpec& spec);

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

// One observed table's changes in one event, as the hub applies them: the committed
// objects as shared entities, the latest change of each rowid, and, built on first use,
// the changes ordered by the value of a field that a subscription's range names.
// Hub thread only.
class TableChanges {
 public:
  static constexpr size_t kNone = SIZE_MAX;

  // Takes the bytes out of `changes`, which must outlive this object.
  TableChanges(std::vector<ChangedObject>& changes, EntityFactory factory);

  size_t size() const { return entities_.size(); }
  const ChangedObject& change(size_t k) const { return *entities_[k].first; }
  // The new version; null for a deletion.
  const EntityPtr& entity(size_t k) const { return entities_[k].second; }
  // The latest change of `rowid` in this event, or kNone.
  size_t find(int64_t rowid) const;
  bool latest(size_t k) const { return find(change(k).rowid) == k; }
  // The latest changes whose new version may lie in `range`: in `within` those whose
  // value of its field is ordered and within the bounds (with the value), in
  // `unordered` those whose value is NaN. Without a field, every latest change but
  // deletions, in `unordered`. Valid while this object lives.
  struct Candidates {
    std::span<const std::pair<Value, size_t>> within;
    std::span<const size_t> unordered;
  };
  Candidates candidates(const FieldRange& range);
  // One byte per change for a subscription's scratch use; all zero between uses.
  std::vector<uint8_t>& marks() { return marks_; }

 private:
  // Latest non-deleted changes with a non-null value of one field: those whose value is
  // ordered by compare() sorted by it, NaN reals apart (candidates for every range).
  struct ByField {
    std::vector<std::pair<Value, size_t>> ordered;
    std::vector<size_t> unordered;
  };
  const ByField& byField(const FieldInfo* field);

  std::vector<std::pair<ChangedObject*, EntityPtr>> entities_;
  RowidIndex latest_;
  std::vector<size_t> live_;  // latest changes but deletions
  std::map<const FieldInfo*, ByField> by_field_;
  std::vector<uint8_t> marks_;
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

  // Query state, touched only by the hub thread. `rows` is immutable once built: a new
  // result is a new vector, shared with the deliveries.
  std::shared_ptr<const std::vector<EntityPtr>> rows;
  // The rowids in `rows`, for telling quickly whether a small event concerns the
  // result; rebuilt on first use after `rows` was replaced wholesale.
  std::unordered_set<int64_t> members;
  bool members_current = false;
  FieldRange range;  // of spec.where, set at registration
  // The top-level fields (as ChangedObject::changed_fields) that the filter or the
  // order reads: a change of a held object outside them neither moves it nor makes it
  // leave. Set at registration.
  uint64_t query_fields = ~uint64_t{0};
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
  // What a result needs after an event beyond the changes it can apply itself.
  enum class Refill {
    kNone,
    kTail,  // a full window lost members: it holds every match up to its old end
    kAll,   // the whole result must be fetched again
  };
  // Updates a result subscription with one table's changes; true if it changed.
  bool applyToResult(SubscriptionCore& s, TableChanges& changes, Refill* refill);
  // Fetches the result again; with `tail_at`, only the matches after those it holds,
  // if no commit but those the hub applied happened up to `tail_at`.
  void requery(SubscriptionCore& s, std::optional<uint64_t> tail_at = {});

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
