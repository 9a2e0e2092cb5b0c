#include "runtime/subscription.h"

#include <algorithm>

#include "runtime/observers.h"

namespace flatstore {
namespace internal {
namespace {

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

namespace {
thread_local int in_callback = 0;  // callbacks running on this thread (nested inline)
}  // namespace

bool inSubscriptionCallback() { return in_callback > 0; }

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
  in_callback += 1;
  if (object_mode) {
    object_callback(deleted ? nullptr : object);
  } else if (after != nullptr) {
    static const std::vector<EntityPtr> kEmpty;
    Changeset cs = diffResults(before != nullptr ? *before : kEmpty, *after);
    cs.commit_sequence = sequence;
    if (!cs.empty()) result_callback(*after, cs);
  }
  in_callback -= 1;
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

void SubscriptionCore::fail(absl::Status error) {
  absl::MutexLock lock(&mu_);
  if (cancelled_ || ended_) return;
  ended_ = true;
  error_ = std::move(error);
  // A delivery already scheduled finds the subscription ended and returns.
  latest_deleted_ = false;
}

absl::Status SubscriptionCore::status() {
  absl::MutexLock lock(&mu_);
  return error_;
}

bool SubscriptionCore::active() {
  absl::MutexLock lock(&mu_);
  return !cancelled_ && !ended_;
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

absl::Status SubscriptionToken::status() const {
  return core_ != nullptr ? core_->status() : absl::OkStatus();
}

}  // namespace flatstore
