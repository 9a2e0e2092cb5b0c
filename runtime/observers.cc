#include "runtime/observers.h"

#include <algorithm>
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

// Longest strictly increasing subsequence of `seq` (indices into it), O(n log n).
std::vector<size_t> longestIncreasing(const std::vector<size_t>& seq) {
  std::vector<size_t> tails;  // indices into seq
  std::vector<size_t> prev(seq.size(), SIZE_MAX);
  for (size_t i = 0; i < seq.size(); ++i) {
    auto it = std::lower_bound(tails.begin(), tails.end(), seq[i],
                               [&](size_t t, size_t v) { return seq[t] < v; });
    if (it != tails.begin()) prev[i] = *(it - 1);
    if (it == tails.end()) {
      tails.push_back(i);
    } else {
      *it = i;
    }
  }
  std::vector<size_t> out(tails.size());
  size_t k = tails.empty() ? SIZE_MAX : tails.back();
  for (size_t n = tails.size(); n > 0; --n) {
    out[n - 1] = k;
    k = prev[k];
  }
  return out;
}

}  // namespace

Changeset diffResults(const std::vector<EntityPtr>& before, const std::vector<EntityPtr>& after) {
  Changeset cs;
  auto compareVersions = [&](size_t i, size_t j) {
    const EntityPtr& o = before[i];
    const EntityPtr& n = after[j];
    if (o != n && o->versionstamp() != n->versionstamp()) cs.updated.push_back(j);
  };
  // Objects at the same place from either end stay where they are: they belong to every
  // longest run of kept objects, and only the middle needs matching.
  size_t common = std::min(before.size(), after.size());
  size_t head = 0;
  while (head < common && before[head]->rowid() == after[head]->rowid()) ++head;
  size_t tail = 0;
  while (tail < common - head &&
         before[before.size() - 1 - tail]->rowid() == after[after.size() - 1 - tail]->rowid()) {
    ++tail;
  }
  for (size_t i = 0; i < head; ++i) compareVersions(i, i);
  const size_t old_end = before.size() - tail;
  const size_t new_end = after.size() - tail;

  // The middle: for objects in both, in new order, their old positions.
  RowidIndex old_index(old_end - head);
  for (size_t i = head; i < old_end; ++i) old_index.assign(before[i]->rowid(), i);
  std::vector<size_t> new_pos;
  std::vector<size_t> old_pos;
  new_pos.reserve(new_end - head);
  old_pos.reserve(new_end - head);
  for (size_t j = head; j < new_end; ++j) {
    size_t i = old_index.find(after[j]->rowid());
    if (i != RowidIndex::kAbsent) {
      new_pos.push_back(j);
      old_pos.push_back(i);
    }
  }
  // Objects whose relative order is kept stay; the others moved (delete + insert).
  // Usually none moved: then the longest increasing run is all of them.
  std::vector<uint8_t> old_kept(old_end - head, 0);
  std::vector<uint8_t> new_kept(new_end - head, 0);
  auto keep = [&](size_t k) {
    old_kept[old_pos[k] - head] = 1;
    new_kept[new_pos[k] - head] = 1;
    compareVersions(old_pos[k], new_pos[k]);
  };
  if (std::is_sorted(old_pos.begin(), old_pos.end())) {
    for (size_t k = 0; k < old_pos.size(); ++k) keep(k);
  } else {
    for (size_t k : longestIncreasing(old_pos)) keep(k);
  }
  for (size_t i = head; i < old_end; ++i) {
    if (old_kept[i - head] == 0) cs.deleted.push_back(i);
  }
  for (size_t j = head; j < new_end; ++j) {
    if (new_kept[j - head] == 0) cs.inserted.push_back(j);
  }
  for (size_t t = 0; t < tail; ++t) compareVersions(old_end + t, new_end + t);
  // Found in new order already, unless longestIncreasing() gave its run otherwise.
  if (!std::is_sorted(cs.updated.begin(), cs.updated.end())) {
    std::sort(cs.updated.begin(), cs.updated.end());
  }
  return cs;
}

// ---------------------------------------------------------------------------------------
// Ranges of filters and the changes they select

namespace {

// A value compare() orders totally against every other such value: not null, not NaN.
// (Value::real makes a NaN null, so queries treat it as null everywhere; the NaN test
// only guards the order.)
bool ordered(const Value& v) {
  return !v.isNull() && !(v.kind() == Value::Kind::kReal && std::isnan(v.asReal()));
}

void raiseLow(FieldRange* r, const Value& v, bool inclusive) {
  if (r->low.has_value()) {
    std::strong_ordering c = *compare(v, *r->low);
    if (c < 0 || (c == 0 && (inclusive || !r->low_inclusive))) return;
  }
  r->low = v;
  r->low_inclusive = inclusive;
}

void lowerHigh(FieldRange* r, const Value& v, bool inclusive) {
  if (r->high.has_value()) {
    std::strong_ordering c = *compare(v, *r->high);
    if (c > 0 || (c == 0 && (inclusive || !r->high_inclusive))) return;
  }
  r->high = v;
  r->high_inclusive = inclusive;
}

// Narrows `r` (on n.field) by what one conjunct requires for a true result; false when
// the conjunct bounds nothing usable. compareValues() is true only for a non-null field
// whose compare() with the operand has the operator's sign; `in` is true only when the
// field equals one of the listed values.
bool narrowBy(const ExprNode& n, FieldRange* r) {
  using Kind = ExprNode::Kind;
  if (n.kind == Kind::kCompare) {
    const Value& v = n.values.front();
    if (!ordered(v)) return false;
    switch (n.op) {
      case CompareOp::kEq:
        raiseLow(r, v, true);
        lowerHigh(r, v, true);
        return true;
      case CompareOp::kLt:
        lowerHigh(r, v, false);
        return true;
      case CompareOp::kLe:
        lowerHigh(r, v, true);
        return true;
      case CompareOp::kGt:
        raiseLow(r, v, false);
        return true;
      case CompareOp::kGe:
        raiseLow(r, v, true);
        return true;
      case CompareOp::kNe:
        return false;
    }
    return false;
  }
  if (n.kind == Kind::kIn && !n.negated && !n.values.empty()) {
    // Null values never equal anything; a NaN one would break the order.
    const Value* least = nullptr;
    const Value* greatest = nullptr;
    for (const Value& v : n.values) {
      if (v.isNull()) continue;
      if (!ordered(v)) return false;
      if (least == nullptr || *compare(v, *least) < 0) least = &v;
      if (greatest == nullptr || *compare(v, *greatest) > 0) greatest = &v;
    }
    if (least == nullptr) return false;
    raiseLow(r, *least, true);
    lowerHigh(r, *greatest, true);
    return true;
  }
  return false;
}

void conjuncts(const ExprNode* n, std::vector<const ExprNode*>* out) {
  if (n == nullptr) return;
  if (n->kind == ExprNode::Kind::kAnd) {
    conjuncts(n->lhs.get(), out);
    conjuncts(n->rhs.get(), out);
  } else {
    out->push_back(n);
  }
}

}  // namespace

namespace {

// The bit of the top-level field that `field`'s id path ("5.0", "9u1") starts with.
uint64_t topLevelBit(const FieldInfo& field) {
  int id = 0;
  for (char c : field.id_path) {
    if (c < '0' || c > '9') break;
    id = std::min(id * 10 + (c - '0'), 63);
  }
  return uint64_t{1} << id;
}

uint64_t filterFields(const ExprNode* node) {
  if (node == nullptr) return 0;
  uint64_t bits = node->field != nullptr ? topLevelBit(*node->field) : 0;
  return bits | filterFields(node->lhs.get()) | filterFields(node->rhs.get());
}

}  // namespace

uint64_t queryFields(const QuerySpec& spec) {
  uint64_t bits = filterFields(spec.where.get());
  for (const auto& [field, descending] : spec.order) bits |= topLevelBit(*field);
  return bits;
}

FieldRange filterRange(const ExprNode* where) {
  std::vector<const ExprNode*> terms;
  conjuncts(where, &terms);
  // A conjunction is true only when every conjunct is: the ranges of one field intersect.
  std::vector<FieldRange> ranges;
  for (const ExprNode* t : terms) {
    if (t->field == nullptr) continue;
    auto it = std::find_if(ranges.begin(), ranges.end(),
                           [&](const FieldRange& r) { return r.field == t->field; });
    FieldRange narrowed;
    if (it != ranges.end()) {
      narrowed = *it;
    } else {
      narrowed.field = t->field;
    }
    if (!narrowBy(*t, &narrowed)) continue;
    if (it != ranges.end()) {
      *it = std::move(narrowed);
    } else {
      ranges.push_back(std::move(narrowed));
    }
  }
  if (ranges.empty()) return FieldRange();
  auto chosen = std::find_if(ranges.begin(), ranges.end(), [](const FieldRange& r) {
    return r.low.has_value() && r.high.has_value();
  });
  FieldRange out = chosen != ranges.end() ? std::move(*chosen) : std::move(ranges.front());
  // Within the range every comparison on its field is true; an `in` list is not decided
  // by its hull.
  for (const ExprNode* t : terms) {
    FieldRange probe;
    probe.field = t->field;
    bool decided =
        t->kind == ExprNode::Kind::kCompare && t->field == out.field && narrowBy(*t, &probe);
    if (!decided) out.residual.push_back(t);
  }
  return out;
}

TableChanges::TableChanges(std::vector<ChangedObject>& changes, EntityFactory factory)
    : latest_(changes.size()) {
  // The committed objects are used as they are, one shared entity per object.
  entities_.reserve(changes.size());
  for (ChangedObject& c : changes) {
    EntityPtr e = c.deleted ? nullptr : factory(std::move(c.bytes), c.rowid, c.versionstamp);
    latest_.assign(c.rowid, entities_.size());
    entities_.emplace_back(&c, std::move(e));
  }
  marks_.assign(entities_.size(), 0);
  for (size_t k = 0; k < entities_.size(); ++k) {
    if (entities_[k].second != nullptr && latest(k)) live_.push_back(k);
  }
}

size_t TableChanges::find(int64_t rowid) const { return latest_.find(rowid); }

const TableChanges::ByField& TableChanges::byField(const FieldInfo* field) {
  auto [it, inserted] = by_field_.try_emplace(field);
  ByField& b = it->second;
  if (!inserted) return b;
  for (size_t k : live_) {
    Value v = field->read(entities_[k].second->data());
    if (v.isNull()) continue;  // never within a range
    if (ordered(v)) {
      b.ordered.emplace_back(std::move(v), k);
    } else {
      b.unordered.push_back(k);
    }
  }
  std::sort(b.ordered.begin(), b.ordered.end(), [](const auto& x, const auto& y) {
    std::strong_ordering c = *compare(x.first, y.first);
    return c != 0 ? c < 0 : x.second < y.second;
  });
  return b;
}

TableChanges::Candidates TableChanges::candidates(const FieldRange& range) {
  if (range.field == nullptr) return {{}, live_};
  const ByField& b = byField(range.field);
  auto first = b.ordered.begin();
  auto last = b.ordered.end();
  if (range.low.has_value()) {
    first = std::partition_point(first, last, [&](const auto& e) {
      std::strong_ordering c = *compare(e.first, *range.low);
      return c < 0 || (c == 0 && !range.low_inclusive);
    });
  }
  if (range.high.has_value()) {
    last = std::partition_point(first, last, [&](const auto& e) {
      std::strong_ordering c = *compare(e.first, *range.high);
      return c < 0 || (c == 0 && range.high_inclusive);
    });
  }
  return {std::span(first, last), b.unordered};
}

// ---------------------------------------------------------------------------------------
// SubscriptionCore

void SubscriptionCore::offer(std::shared_ptr<const std::vector<EntityPtr>> result,
                             uint64_t sequence) {
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_ || ended_) return;
    latest_ = std::move(result);
    latest_sequence_ = std::max(latest_sequence_, sequence);
    if (scheduled_) return;  // the queued delivery will take the newest result
    scheduled_ = true;
  }
  schedule();
}

void SubscriptionCore::schedule() {
  // Outside mu_: an inline executor delivers right here.
  std::weak_ptr<SubscriptionCore> self = weak_from_this();
  executor->execute([self] {
    if (auto core = self.lock()) core->deliver();
  });
}

void SubscriptionCore::seedDelivered(std::shared_ptr<const std::vector<EntityPtr>> result) {
  absl::MutexLock lock(&mu_);
  delivered_ = std::move(result);
}

void SubscriptionCore::offerObject(EntityPtr object, uint64_t sequence, bool deleted) {
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_ || ended_) return;
    latest_object_ = std::move(object);
    latest_deleted_ = deleted;
    latest_sequence_ = std::max(latest_sequence_, sequence);
    if (scheduled_) return;
    scheduled_ = true;
  }
  schedule();
}

void SubscriptionCore::deliver() {
  std::shared_ptr<const std::vector<EntityPtr>> before;
  std::shared_ptr<const std::vector<EntityPtr>> after;
  EntityPtr object;
  bool deleted = false;
  uint64_t sequence = 0;
  {
    absl::MutexLock lock(&mu_);
    // One callback at a time per subscription, whatever the executor's threads.
    mu_.Await(absl::Condition(
        +[](SubscriptionCore* s)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return !s->delivering_ || s->cancelled_; },
        this));
    scheduled_ = false;
    if (cancelled_ || (ended_ && !latest_deleted_)) return;
    before = delivered_;
    after = latest_;
    delivered_ = latest_;
    object = latest_object_;
    deleted = latest_deleted_;
    sequence = latest_sequence_;
    if (object_mode && deleted) ended_ = true;
    delivering_ = true;
    delivering_thread_ = std::this_thread::get_id();
  }
  if (object_mode) {
    object_callback(deleted ? nullptr : object);
  } else if (after != nullptr) {
    static const std::vector<EntityPtr> kEmpty;
    Changeset cs = diffResults(before != nullptr ? *before : kEmpty, *after);
    cs.commit_sequence = sequence;
    if (!cs.empty()) result_callback(*after, cs);
  }
  absl::MutexLock lock(&mu_);
  delivering_ = false;
}

void SubscriptionCore::cancel() {
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return;
    cancelled_ = true;
    if (delivering_ && delivering_thread_ != std::this_thread::get_id()) {
      mu_.Await(absl::Condition(
          +[](SubscriptionCore* s)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return !s->delivering_; },
          this));
    }
  }
  if (auto h = hub.lock()) h->remove(this);
}

bool SubscriptionCore::active() {
  absl::MutexLock lock(&mu_);
  return !cancelled_ && !ended_;
}

// ---------------------------------------------------------------------------------------
// ObserverHub

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
  if (!result.ok()) return;  // keeps the last good result; the next commit tries again
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
    if (!result.ok()) return;
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
    core->offer(core->rows, committed);
  }
}

bool ObserverHub::applyToResult(SubscriptionCore& s, TableChanges& changes, Refill* refill) {
  const QuerySpec& spec = s.spec;
  if (spec.offset > 0) {
    // Any change may shift a window that does not start at the first match.
    *refill = Refill::kAll;
    return true;
  }
  const std::vector<EntityPtr>& rows = *s.rows;
  RowOrder order(spec);
  bool limited = spec.limit.has_value();
  size_t limit = limited ? static_cast<size_t>(std::max<int64_t>(0, *spec.limit)) : 0;
  // With a limit, matches beyond the window may exist when the window is full.
  bool truncated = limited && rows.size() >= limit;

  // Which changes lie in the filter's range (only the conjuncts the range does not
  // decide are left to evaluate), which may match otherwise (NaN values, or no range),
  // and which are of held objects. Any other change does not match.
  enum : uint8_t { kWithin = 1, kMayMatch = 2, kHeld = 4 };
  std::vector<uint8_t>& flags = changes.marks();
  // A full window's old last object: matches beyond it were never held, so nothing
  // beyond it may enter. When the window is sorted by the range's field first, its
  // value bounds the range as well (objects with the same value are told apart by
  // their full sort key below).
  std::optional<SortKey> boundary;
  if (truncated && !rows.empty()) boundary = order.key(*rows.back());
  const FieldRange* range = &s.range;
  FieldRange bounded;
  if (boundary.has_value() && !spec.order.empty() && spec.order.front().first == s.range.field &&
      ordered(boundary->values.front())) {
    bounded = s.range;
    if (spec.order.front().second) {
      raiseLow(&bounded, boundary->values.front(), true);
    } else {
      lowerHigh(&bounded, boundary->values.front(), true);
    }
    range = &bounded;
  }
  TableChanges::Candidates candidates = changes.candidates(*range);
  for (const auto& [value, k] : candidates.within) flags[k] = kWithin;
  for (size_t k : candidates.unordered) flags[k] = kMayMatch;
  auto admits = [&](size_t k) {
    const uint8_t* data =
        (flags[k] & (kWithin | kMayMatch)) != 0 ? changes.entity(k)->data() : nullptr;
    if ((flags[k] & kWithin) != 0) {
      return std::all_of(s.range.residual.begin(), s.range.residual.end(),
                         [&](const ExprNode* t) { return evaluate(*t, data) == Truth::kTrue; });
    }
    return data != nullptr && matches(spec, data);
  };

  // The changes of held objects, found from the smaller side, with their positions. A
  // change the result already reflects (a re-query saw it) changes nothing, and the
  // object already held stays shared; a newer one replaces the held version.
  std::vector<size_t> held;  // changes of held objects
  struct Replaced {
    size_t position;
    size_t change;
    const EntityPtr* in_place;  // the new version where it stays in place; null: it left
  };
  std::vector<Replaced> replaced;  // by position
  // A small event that changes no held object skips the scan of the result.
  bool large = changes.size() > rows.size();
  bool scan = large;
  if (!large && !s.members_current) {
    s.members.clear();
    for (const EntityPtr& e : rows) s.members.insert(e->rowid());
    s.members_current = true;
  }
  for (size_t k = 0; k < changes.size() && !scan; ++k) {
    scan = s.members.count(changes.change(k).rowid) != 0;
  }
  if (scan) {
    held.reserve(std::min(rows.size(), changes.size()));
    replaced.reserve(std::min(rows.size(), changes.size()));
    for (size_t i = 0; i < rows.size(); ++i) {
      size_t k = changes.find(rows[i]->rowid());
      if (k == TableChanges::kNone) continue;
      flags[k] |= kHeld;
      held.push_back(k);
      if (rows[i]->versionstamp() < changes.change(k).versionstamp) {
        replaced.push_back({i, k, nullptr});
      }
    }
  }

  // A replaced object whose sort values did not change keeps its place. Any other
  // changed object that matches enters, but a full window takes only objects that sort
  // before its old last one: beyond it lie matches it never held.
  std::vector<std::pair<SortKey, const EntityPtr*>> entering;
  auto enter = [&](size_t k) {
    if (truncated && !boundary.has_value()) return;  // a window of 0
    SortKey key = order.key(*changes.entity(k));
    if (boundary.has_value() && order(*boundary, key)) return;
    entering.emplace_back(std::move(key), &changes.entity(k));
  };
  for (Replaced& r : replaced) {
    const ChangedObject& change = changes.change(r.change);
    const EntityPtr& now = changes.entity(r.change);
    if (change.base_version != Versionstamp() &&
        change.base_version == rows[r.position]->versionstamp() &&
        (change.changed_fields & s.query_fields) == 0) {
      // Made over the held version and touching nothing the query reads: it still
      // matches and sorts alike.
      r.in_place = &now;
      continue;
    }
    if (!admits(r.change)) continue;
    if (order.sameValues(*rows[r.position], *now)) {
      r.in_place = &now;
    } else {
      enter(r.change);
    }
  }
  for (const auto& [value, k] : candidates.within) {
    if ((flags[k] & kHeld) == 0 && admits(k)) enter(k);
  }
  for (size_t k : candidates.unordered) {
    if ((flags[k] & kHeld) == 0 && admits(k)) enter(k);
  }
  for (const auto& [value, k] : candidates.within) flags[k] = 0;
  for (size_t k : candidates.unordered) flags[k] = 0;
  for (size_t k : held) flags[k] = 0;
  if (replaced.empty() && entering.empty()) return false;

  // One pass over the held objects in their order, merging the entering ones in.
  std::sort(entering.begin(), entering.end(),
            [&](const auto& a, const auto& b) { return order(a.first, b.first); });
  auto next = std::make_shared<std::vector<EntityPtr>>();
  next->reserve(rows.size() + entering.size());
  auto in = entering.begin();
  auto r = replaced.begin();
  for (size_t i = 0; i < rows.size(); ++i) {
    const EntityPtr* e = &rows[i];
    if (r != replaced.end() && r->position == i) {
      e = r->in_place;
      ++r;
      if (e == nullptr) continue;  // it left its place
    }
    for (; in != entering.end() && order(in->first, **e); ++in) next->push_back(*in->second);
    next->push_back(*e);
  }
  for (; in != entering.end(); ++in) next->push_back(*in->second);

  if (large) {
    s.members_current = false;  // a large event is as costly as rebuilding them later
  } else {                      // a small event made the member set current above
    for (const Replaced& left : replaced) {
      if (left.in_place == nullptr) s.members.erase(rows[left.position]->rowid());
    }
    for (const auto& [key, e] : entering) s.members.insert((*e)->rowid());
    if (limited && next->size() > limit) {
      for (size_t i = limit; i < next->size(); ++i) s.members.erase((*next)[i]->rowid());
    }
  }
  if (limited && next->size() > limit) next->resize(limit);
  // A full window that lost members cannot be refilled from what it holds: it now holds
  // every match up to its old last object, the rest lies beyond.
  if (truncated && next->size() < limit) *refill = Refill::kTail;
  s.rows = std::move(next);
  return true;
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

// ---------------------------------------------------------------------------------------
// Executors

NotificationThread::NotificationThread() {
  thread_ = std::thread([this] {
    while (true) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](NotificationThread* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(n->mu_) {
              return !n->tasks_.empty() || n->stopping_;
            },
            this));
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  });
}

NotificationThread::~NotificationThread() { stop(); }

void NotificationThread::execute(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  tasks_.push_back(std::move(task));
}

void NotificationThread::stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace internal

namespace {
class InlineExecutor : public Executor {
 public:
  void execute(std::function<void()> task) override { task(); }
};
}  // namespace

Executor& inlineExecutor() {
  static InlineExecutor executor;
  return executor;
}

void SubscriptionToken::cancel() {
  if (core_ != nullptr) core_->cancel();
}

bool SubscriptionToken::active() const { return core_ != nullptr && core_->active(); }

}  // namespace flatstore
