#include "runtime/observers.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "flatstore/query.h"

namespace flatstore {
namespace internal {
namespace {

// Where an object sorts in a query's order: its values of the order fields, then its
// rowid.
struct SortKey {
  std::vector<Value> values;
  int64_t rowid = 0;
};

// Orders objects as the query does: its sort keys, then rowid. Keys read once are
// compared without reading the objects again.
class RowOrder {
 public:
  explicit RowOrder(const QuerySpec& spec) : spec_(spec) {}

  SortKey key(const EntityBase& e) const {
    SortKey k;
    k.values.reserve(spec_.order.size());
    for (const auto& o : spec_.order) k.values.push_back(o.first->read(e.data()));
    k.rowid = e.rowid();
    return k;
  }
  bool operator()(const SortKey& a, const SortKey& b) const {
    for (size_t i = 0; i < spec_.order.size(); ++i) {
      std::strong_ordering c = sortOrder(a.values[i], b.values[i]);
      if (c != 0) return spec_.order[i].second ? c > 0 : c < 0;
    }
    return a.rowid < b.rowid;
  }
  bool operator()(const SortKey& a, const EntityBase& b) const {
    for (size_t i = 0; i < spec_.order.size(); ++i) {
      std::strong_ordering c = sortOrder(a.values[i], spec_.order[i].first->read(b.data()));
      if (c != 0) return spec_.order[i].second ? c > 0 : c < 0;
    }
    return a.rowid < b.rowid();
  }
  // Two versions of one object sort alike: equal values of every order field.
  bool sameValues(const EntityBase& a, const EntityBase& b) const {
    for (const auto& o : spec_.order) {
      if (sortOrder(o.first->read(a.data()), o.first->read(b.data())) != 0) return false;
    }
    return true;
  }

 private:
  const QuerySpec& spec_;
};

bool matches(const QuerySpec& spec, const uint8_t* bytes) {
  return spec.where == nullptr || evaluate(*spec.where, bytes) == Truth::kTrue;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// ObserverHub

namespace {
thread_local bool on_hub_thread = false;
}  // namespace

void HubThread::assertHeld() const { assert(on_hub_thread); }

ObserverHub::ObserverHub(Requery requery, std::function<uint64_t()> committed)
    : requery_(std::move(requery)), committed_(std::move(committed)) {}

ObserverHub::~ObserverHub() { stop(); }

void ObserverHub::start() {
  thread_ = std::thread([this] { loop(); });
}

void ObserverHub::stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  absl::MutexLock lock(&mu_);
  for (auto& [table, subs] : by_table_)
    table->subscriptions.fetch_sub(static_cast<int>(subs.size()));
  by_table_.clear();
}

void ObserverHub::publish(CommitEvent event) {
  if (event.tables.empty()) return;
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  Op op;
  op.event = std::move(event);
  queue_.push_back(std::move(op));
}

void ObserverHub::add(std::shared_ptr<SubscriptionCore> core, std::vector<EntityPtr> initial,
                      uint64_t seen) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  // Counted before the registration is queued: every commit from now on is published.
  // The subscription joins by_table_ only when the hub thread registers it, so that
  // events queued before it are not applied to its still empty state.
  core->table->subscriptions.fetch_add(1);
  Op op;
  op.add = std::move(core);
  op.initial = std::move(initial);
  op.seen = seen;
  queue_.push_back(std::move(op));
}

void ObserverHub::failAll(absl::Status error) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  Op op;
  op.fail_all = std::move(error);
  queue_.push_back(std::move(op));
}

void ObserverHub::remove(SubscriptionCore* core) {
  absl::MutexLock lock(&mu_);
  auto it = by_table_.find(core->table);
  if (it == by_table_.end()) return;
  auto& subs = it->second;
  for (size_t i = 0; i < subs.size(); ++i) {
    if (subs[i].get() == core) {
      subs.erase(subs.begin() + static_cast<std::ptrdiff_t>(i));
      core->table->subscriptions.fetch_sub(1);
      break;
    }
  }
}

void ObserverHub::drain() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](ObserverHub* h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(h->mu_) {
        return (h->queue_.empty() && !h->busy_) || h->stopping_;
      },
      this));
}

uint64_t ObserverHub::appliedSequence() {
  absl::MutexLock lock(&mu_);
  return applied_;
}

void ObserverHub::loop() {
  on_hub_thread = true;
  while (true) {
    Op op;
    {
      absl::MutexLock lock(&mu_);
      busy_ = false;
      mu_.Await(absl::Condition(
          +[](ObserverHub* h)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(h->mu_) { return !h->queue_.empty() || h->stopping_; },
          this));
      if (stopping_) return;
      op = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    if (op.add != nullptr) {
      register_(std::move(op.add), std::move(op.initial), op.seen);
    } else if (!op.fail_all.ok()) {
      std::vector<std::shared_ptr<SubscriptionCore>> all;
      {
        absl::MutexLock lock(&mu_);
        for (const auto& [table, subs] : by_table_) all.insert(all.end(), subs.begin(), subs.end());
      }
      for (const std::shared_ptr<SubscriptionCore>& core : all) core->fail(op.fail_all);
    } else {
      applyEvent(op.event);
      absl::MutexLock lock(&mu_);
      applied_ = std::max(applied_, op.event.sequence);
    }
  }
}

void ObserverHub::requery(SubscriptionCore& s, std::optional<uint64_t> tail_at) {
  TailQuery tail;
  size_t held = s.rows->size();
  if (tail_at.has_value()) {
    // The result holds exactly the matches up to its old end when it reflects every
    // commit up to tail_at: this process's are applied in order, and the check asks
    // the log for other processes' since the result was last fetched whole.
    tail.spec = s.spec;
    tail.spec.offset = static_cast<int64_t>(held);
    tail.spec.limit = *s.spec.limit - static_cast<int64_t>(held);
    tail.at = *tail_at;
    tail.since = s.base_sequence;
  }
  absl::StatusOr<RequeryResult> result =
      requery_(s.table, s.spec, tail_at.has_value() ? &tail : nullptr);
  if (!result.ok()) {
    // Without it the result is no longer exact, and commits applied on top of it would
    // deliver what no fetch returns: the subscription ends with the error.
    s.fail(result.status());
    return;
  }
  s.base_sequence = std::max(s.base_sequence, result->sequence);
  auto fresh = std::make_shared<std::vector<EntityPtr>>();
  fresh->reserve((result->tail ? held : 0) + result->rows.size());
  if (result->tail) fresh->insert(fresh->end(), s.rows->begin(), s.rows->end());
  for (RawRow& r : result->rows) {
    fresh->push_back(s.factory(std::move(r.bytes), r.rowid, r.versionstamp));
  }
  s.members_current = false;
  s.rows = std::move(fresh);
}

void ObserverHub::register_(std::shared_ptr<SubscriptionCore> core, std::vector<EntityPtr> initial,
                            uint64_t seen) {
  core->hub_thread.assertHeld();
  {
    absl::MutexLock lock(&mu_);
    if (!core->active()) {  // cancelled before it was registered
      core->table->subscriptions.fetch_sub(1);
      return;
    }
    by_table_[core->table].push_back(core);
  }
  uint64_t current = committed_();
  if (core->object_mode) {
    core->object_version = initial.empty() ? Versionstamp() : initial.front()->versionstamp();
    // Catch up with commits the subscriber's copy may predate.
    QuerySpec spec;
    spec.rowid = core->object_rowid;
    absl::StatusOr<RequeryResult> result = requery_(core->table, spec, nullptr);
    if (!result.ok()) {
      core->fail(result.status());
      return;
    }
    std::vector<RawRow>& rows = result->rows;
    if (rows.empty()) {
      core->offerObject(nullptr, current, /*deleted=*/true);
    } else if (rows.front().versionstamp != core->object_version) {
      RawRow& r = rows.front();
      core->object_version = r.versionstamp;
      core->offerObject(core->factory(std::move(r.bytes), r.rowid, r.versionstamp), current, false);
    }
    return;
  }
  core->rows = std::make_shared<const std::vector<EntityPtr>>(std::move(initial));
  core->range = filterRange(core->spec.where.get());
  core->query_fields = queryFields(core->spec);
  core->seedDelivered(core->rows);
  core->base_sequence = seen;
  // The subscriber's result may predate commits that no event carried (the table was
  // not observed then): bring it up to date from a fresh snapshot. Events published
  // from now on are applied on top; applying one the snapshot already has is harmless.
  uint64_t committed = committed_();
  if (seen < committed) {
    requery(*core);
    core->offer(core->rows, committed);  // nothing once the re-query ended it
  }
}

namespace {

// One result subscription brought up to date with one table's changes in one event, in
// phases: markCandidates (which changes may match), findHeld (which change held
// objects), placeChanges (which held objects keep their place, which changed objects
// enter), merge (the new result in one pass) and trim (the window's limit, the member
// set). Hub thread only; lives for one applyToResult call.
class ResultUpdate {
 public:
  // REQUIRES: on the hub thread (the methods assert it, for the analysis).
  ResultUpdate(SubscriptionCore& s, TableChanges& changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.hub_thread)
      : s_(s),
        changes_(changes),
        spec_(s.spec),
        rows_(*s.rows),
        order_(spec_),
        limited_(spec_.limit.has_value()),
        limit_(limited_ ? static_cast<size_t>(std::max<int64_t>(0, *spec_.limit)) : 0),
        // With a limit, matches beyond the window may exist when the window is full.
        truncated_(limited_ && rows_.size() >= limit_),
        flags_(changes.marks()) {}

  bool run(ObserverHub::Refill* refill) {
    s_.hub_thread.assertHeld();
    if (spec_.offset > 0) {
      // Any change may shift a window that does not start at the first match.
      *refill = ObserverHub::Refill::kAll;
      return true;
    }
    markCandidates();
    findHeld();
    placeChanges();
    clearMarks();
    if (replaced_.empty() && entering_.empty()) return false;
    std::shared_ptr<std::vector<EntityPtr>> next = merge();
    trim(*next);
    // A full window that lost members cannot be refilled from what it holds: it now holds
    // every match up to its old last object, the rest lies beyond.
    if (truncated_ && next->size() < limit_) *refill = ObserverHub::Refill::kTail;
    s_.rows = std::move(next);
    return true;
  }

 private:
  // Marks in the changes' scratch bytes: lies in the filter's range (only the conjuncts
  // the range does not decide are left to evaluate), may match otherwise (NaN values, or
  // no range), is of a held object. Any other change does not match.
  enum : uint8_t { kWithin = 1, kMayMatch = 2, kHeld = 4 };
  // A held object a change replaced, by position.
  struct Replaced {
    size_t position;
    size_t change;
    const EntityPtr* in_place;  // the new version where it stays in place; null: it left
  };

  // Phase 1: the changes within the filter's range. A full window's old last object
  // bounds what may enter: matches beyond it were never held. When the window is sorted
  // by the range's field first, its value narrows the range as well (objects with the
  // same value are told apart by their full sort key in enter()).
  void markCandidates() {
    s_.hub_thread.assertHeld();
    if (truncated_ && !rows_.empty()) boundary_ = order_.key(*rows_.back());
    const FieldRange* range = &s_.range;
    if (boundary_.has_value() && !spec_.order.empty() &&
        spec_.order.front().first == s_.range.field && ordered(boundary_->values.front())) {
      bounded_ = s_.range;
      if (spec_.order.front().second) {
        raiseLow(&bounded_, boundary_->values.front(), true);
      } else {
        lowerHigh(&bounded_, boundary_->values.front(), true);
      }
      range = &bounded_;
    }
    candidates_ = changes_.candidates(*range);
    for (const auto& [value, k] : candidates_.within) flags_[k] = kWithin;
    for (size_t k : candidates_.unordered) flags_[k] = kMayMatch;
  }

  // Phase 2: the changes of held objects, found from the smaller side, with their
  // positions. A change the result already reflects (a re-query saw it) changes nothing,
  // and the object already held stays shared; a newer one replaces the held version. A
  // small event that changes no held object skips the scan of the result.
  void findHeld() {
    s_.hub_thread.assertHeld();
    large_ = changes_.size() > rows_.size();
    bool scan = large_;
    if (!large_ && !s_.members_current) {
      s_.members.clear();
      for (const EntityPtr& e : rows_) s_.members.insert(e->rowid());
      s_.members_current = true;
    }
    for (size_t k = 0; k < changes_.size() && !scan; ++k) {
      scan = s_.members.count(changes_.change(k).rowid) != 0;
    }
    if (!scan) return;
    held_.reserve(std::min(rows_.size(), changes_.size()));
    replaced_.reserve(std::min(rows_.size(), changes_.size()));
    for (size_t i = 0; i < rows_.size(); ++i) {
      size_t k = changes_.find(rows_[i]->rowid());
      if (k == TableChanges::kNone) continue;
      flags_[k] |= kHeld;
      held_.push_back(k);
      if (rows_[i]->versionstamp() < changes_.change(k).versionstamp) {
        replaced_.push_back({i, k, nullptr});
      }
    }
  }

  // Phase 3: a replaced object whose sort values did not change keeps its place. Any
  // other changed object that matches enters (see enter()).
  void placeChanges() {
    s_.hub_thread.assertHeld();
    for (Replaced& r : replaced_) {
      const ChangedObject& change = changes_.change(r.change);
      const EntityPtr& now = changes_.entity(r.change);
      if (change.base_version != Versionstamp() &&
          change.base_version == rows_[r.position]->versionstamp() &&
          (change.changed_fields & s_.query_fields) == 0) {
        // Made over the held version and touching nothing the query reads: it still
        // matches and sorts alike.
        r.in_place = &now;
        continue;
      }
      if (!admits(r.change)) continue;
      if (order_.sameValues(*rows_[r.position], *now)) {
        r.in_place = &now;
      } else {
        enter(r.change);
      }
    }
    for (const auto& [value, k] : candidates_.within) {
      if ((flags_[k] & kHeld) == 0 && admits(k)) enter(k);
    }
    for (size_t k : candidates_.unordered) {
      if ((flags_[k] & kHeld) == 0 && admits(k)) enter(k);
    }
  }

  // The scratch bytes are all zero between uses.
  void clearMarks() {
    for (const auto& [value, k] : candidates_.within) flags_[k] = 0;
    for (size_t k : candidates_.unordered) flags_[k] = 0;
    for (size_t k : held_) flags_[k] = 0;
  }

  // Phase 4: one pass over the held objects in their order, merging the entering ones in.
  std::shared_ptr<std::vector<EntityPtr>> merge() {
    s_.hub_thread.assertHeld();
    std::sort(entering_.begin(), entering_.end(),
              [&](const auto& a, const auto& b) { return order_(a.first, b.first); });
    auto next = std::make_shared<std::vector<EntityPtr>>();
    next->reserve(rows_.size() + entering_.size());
    auto in = entering_.begin();
    auto r = replaced_.begin();
    for (size_t i = 0; i < rows_.size(); ++i) {
      const EntityPtr* e = &rows_[i];
      if (r != replaced_.end() && r->position == i) {
        e = r->in_place;
        ++r;
        if (e == nullptr) continue;  // it left its place
      }
      for (; in != entering_.end() && order_(in->first, **e); ++in) next->push_back(*in->second);
      next->push_back(*e);
    }
    for (; in != entering_.end(); ++in) next->push_back(*in->second);
    return next;
  }

  // Phase 5: the member set follows the new result, which keeps at most `limit` objects.
  void trim(std::vector<EntityPtr>& next) {
    s_.hub_thread.assertHeld();
    if (large_) {
      s_.members_current = false;  // a large event is as costly as rebuilding them later
    } else {                       // a small event made the member set current above
      for (const Replaced& left : replaced_) {
        if (left.in_place == nullptr) s_.members.erase(rows_[left.position]->rowid());
      }
      for (const auto& [key, e] : entering_) s_.members.insert((*e)->rowid());
      if (limited_ && next.size() > limit_) {
        for (size_t i = limit_; i < next.size(); ++i) s_.members.erase(next[i]->rowid());
      }
    }
    if (limited_ && next.size() > limit_) next.resize(limit_);
  }

  // Whether change `k` matches the query.
  bool admits(size_t k) const {
    s_.hub_thread.assertHeld();
    const uint8_t* data =
        (flags_[k] & (kWithin | kMayMatch)) != 0 ? changes_.entity(k)->data() : nullptr;
    if ((flags_[k] & kWithin) != 0) {
      return std::all_of(s_.range.residual.begin(), s_.range.residual.end(),
                         [&](const ExprNode* t) { return evaluate(*t, data) == Truth::kTrue; });
    }
    return data != nullptr && matches(spec_, data);
  }

  // Change `k` enters the result; a full window takes only objects that sort before its
  // old last one: beyond it lie matches it never held.
  void enter(size_t k) {
    if (truncated_ && !boundary_.has_value()) return;  // a window of 0
    SortKey key = order_.key(*changes_.entity(k));
    if (boundary_.has_value() && order_(*boundary_, key)) return;
    entering_.emplace_back(std::move(key), &changes_.entity(k));
  }

  SubscriptionCore& s_;
  TableChanges& changes_;
  const QuerySpec& spec_;
  const std::vector<EntityPtr>& rows_;
  const RowOrder order_;
  const bool limited_;
  const size_t limit_;
  const bool truncated_;
  std::vector<uint8_t>& flags_;
  std::optional<SortKey> boundary_;
  FieldRange bounded_;
  TableChanges::Candidates candidates_;
  bool large_ = false;
  std::vector<size_t> held_;        // changes of held objects
  std::vector<Replaced> replaced_;  // by position
  std::vector<std::pair<SortKey, const EntityPtr*>> entering_;
};

}  // namespace

bool ObserverHub::applyToResult(SubscriptionCore& s, TableChanges& changes, Refill* refill) {
  ResultUpdate update(s, changes);
  return update.run(refill);
}

void ObserverHub::applyEvent(CommitEvent& event) {
  for (auto& [table, changes] : event.tables) {
    std::vector<std::shared_ptr<SubscriptionCore>> subs;
    {
      absl::MutexLock lock(&mu_);
      auto it = by_table_.find(table);
      if (it == by_table_.end() || it->second.empty()) continue;
      subs = it->second;
    }
    TableChanges entities(changes, subs.front()->factory);
    for (const auto& s : subs) {
      s->hub_thread.assertHeld();
      if (!s->active() || event.sequence <= s->base_sequence) continue;
      if (s->object_mode) {
        size_t k = entities.find(s->object_rowid);
        if (k == TableChanges::kNone) continue;
        const ChangedObject& change = entities.change(k);
        if (!change.deleted && change.versionstamp <= s->object_version) continue;
        s->object_version = change.versionstamp;
        s->offerObject(entities.entity(k), event.sequence, change.deleted);
        continue;
      }
      Refill refill = Refill::kNone;
      bool changed = applyToResult(*s, entities, &refill);
      if (refill == Refill::kTail) requery(*s, event.sequence);
      if (refill == Refill::kAll) requery(*s);
      if (changed || refill != Refill::kNone) {
        // A re-query may reflect later commits than this event.
        s->offer(s->rows, std::max(event.sequence, s->base_sequence));
      }
    }
  }
}

}  // namespace internal
}  // namespace flatstore
