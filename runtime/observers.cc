#include "runtime/observers.h"

#include <algorithm>

#include "flatstore/query.h"

namespace flatstore {
namespace internal {
namespace {

// Orders entities as the query does: its sort keys, then rowid.
class RowOrder {
 public:
  explicit RowOrder(const QuerySpec& spec) : spec_(spec) {}
  bool operator()(const EntityPtr& a, const EntityPtr& b) const {
    for (const auto& [field, descending] : spec_.order) {
      auto c = sortOrder(field->read(a->data()), field->read(b->data()));
      if (c != 0) return descending ? c > 0 : c < 0;
    }
    return a->rowid() < b->rowid();
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

void ObserverHub::requery(SubscriptionCore& s) {
  // Read before the query: its snapshot includes at least this commit.
  uint64_t base = committed_();
  QuerySpec spec = s.spec;
  absl::StatusOr<std::vector<RawRow>> rows = requery_(s.table, spec);
  if (!rows.ok()) return;  // keeps the last good result; the next commit tries again
  s.base_sequence = std::max(s.base_sequence, base);
  s.rows.clear();
  s.members.clear();
  for (RawRow& r : *rows) {
    EntityPtr e = s.factory(std::move(r.bytes), r.rowid, r.versionstamp);
    s.members.emplace(e->rowid(), e->versionstamp());
    s.rows.push_back(std::move(e));
  }
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
    absl::StatusOr<std::vector<RawRow>> rows = requery_(core->table, spec);
    if (!rows.ok()) return;
    if (rows->empty()) {
      core->offerObject(nullptr, current, /*deleted=*/true);
    } else if (rows->front().versionstamp != core->object_version) {
      RawRow& r = rows->front();
      core->object_version = r.versionstamp;
      core->offerObject(core->factory(std::move(r.bytes), r.rowid, r.versionstamp), current, false);
    }
    return;
  }
  core->rows = std::move(initial);
  for (const EntityPtr& e : core->rows) core->members.emplace(e->rowid(), e->versionstamp());
  core->seedDelivered(std::make_shared<const std::vector<EntityPtr>>(core->rows));
  core->base_sequence = seen;
  // The subscriber's result may predate commits that no event carried (the table was
  // not observed then): bring it up to date from a fresh snapshot. Events published
  // from now on are applied on top; applying one the snapshot already has is harmless.
  uint64_t committed = committed_();
  if (seen < committed) {
    requery(*core);
    core->offer(std::make_shared<const std::vector<EntityPtr>>(core->rows), committed);
  }
}

bool ObserverHub::applyToResult(SubscriptionCore& s,
                                const std::vector<std::pair<ChangedObject*, EntityPtr>>& changes,
                                bool* needs_requery) {
  const QuerySpec& spec = s.spec;
  RowOrder order(spec);
  bool limited = spec.limit.has_value();
  size_t limit = limited ? static_cast<size_t>(std::max<int64_t>(0, *spec.limit)) : 0;
  if (spec.offset > 0) {
    // Any change may shift a window that does not start at the first match.
    *needs_requery = true;
    return true;
  }
  // With a limit, matches beyond the window may exist when the window is full.
  bool truncated = limited && s.rows.size() >= limit;
  bool changed = false;
  for (const auto& [change, entity] : changes) {
    int64_t rowid = change->rowid;
    auto member = s.members.find(rowid);
    // An event the result already reflects (a re-query saw it) changes nothing, and the
    // object already held stays shared.
    if (member != s.members.end() && member->second >= change->versionstamp) continue;
    if (member != s.members.end()) {
      // Find the old version by its sort position; fall back to a scan.
      auto probe = std::find_if(s.rows.begin(), s.rows.end(),
                                [rowid](const EntityPtr& e) { return e->rowid() == rowid; });
      if (probe != s.rows.end()) s.rows.erase(probe);
      s.members.erase(rowid);
      changed = true;
    }
    if (entity == nullptr || !matches(spec, entity->data())) continue;
    auto pos = std::lower_bound(s.rows.begin(), s.rows.end(), entity, order);
    if (truncated && pos == s.rows.end()) continue;  // beyond the window
    s.rows.insert(pos, entity);
    s.members.emplace(rowid, entity->versionstamp());
    changed = true;
  }
  if (limited && s.rows.size() > limit) {
    for (size_t i = limit; i < s.rows.size(); ++i) s.members.erase(s.rows[i]->rowid());
    s.rows.resize(limit);
  }
  // A full window that lost members cannot be refilled from what it holds.
  if (truncated && s.rows.size() < limit) *needs_requery = true;
  return changed;
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
    // The committed objects are used as they are, one shared entity per object.
    EntityFactory factory = subs.front()->factory;
    std::vector<std::pair<ChangedObject*, EntityPtr>> entities;
    entities.reserve(changes.size());
    std::unordered_map<int64_t, size_t> by_rowid;
    for (ChangedObject& c : changes) {
      EntityPtr e = c.deleted ? nullptr : factory(std::move(c.bytes), c.rowid, c.versionstamp);
      by_rowid[c.rowid] = entities.size();
      entities.emplace_back(&c, std::move(e));
    }
    for (const auto& s : subs) {
      if (!s->active() || event.sequence <= s->base_sequence) continue;
      if (s->object_mode) {
        auto it = by_rowid.find(s->object_rowid);
        if (it == by_rowid.end()) continue;
        const auto& [change, entity] = entities[it->second];
        if (!change->deleted && change->versionstamp <= s->object_version) continue;
        s->object_version = change->versionstamp;
        s->offerObject(entity, event.sequence, change->deleted);
        continue;
      }
      bool requery_needed = false;
      bool changed = applyToResult(*s, entities, &requery_needed);
      if (requery_needed) requery(*s);
      if (changed || requery_needed) {
        // A re-query may reflect later commits than this event.
        s->offer(std::make_shared<const std::vector<EntityPtr>>(s->rows),
                 std::max(event.sequence, s->base_sequence));
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
