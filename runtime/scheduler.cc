#include "runtime/scheduler.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flatstore::internal {

Scheduler::Scheduler(int threads) : slots_(threads) {
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { workerLoop(); });
}

Scheduler::~Scheduler() { stop(); }

bool Scheduler::hasSlot(const Job& job) const {
  // A caller running its own user-initiated job is not held up by background work
  // that fills the slots: it runs on a thread of its own anyway.
  return running_ < slots_ || (job.caller_runs && job.priority == Priority::kUserInitiated);
}

bool Scheduler::anyRunnable() const {
  return std::any_of(std::begin(runnable_), std::end(runnable_),
                     [](const std::deque<Job*>& q) { return !q.empty(); });
}

void Scheduler::makeRunnable(Job* job) {
  if (job->caller_runs) {
    job->give_turn();  // takeTurn() goes on from here
    return;
  }
  runnable_[queueOf(job->priority)].push_back(job);
}

Scheduler::Job* Scheduler::takeRunnable() {
  // Weighted turns: of every 7 picks, 4 prefer user-initiated work, 2 default and 1
  // background; a turn whose class is empty goes to the highest non-empty one.
  static constexpr Priority kTurns[7] = {
      Priority::kUserInitiated, Priority::kDefault, Priority::kUserInitiated, Priority::kBackground,
      Priority::kUserInitiated, Priority::kDefault, Priority::kUserInitiated};
  int pick = queueOf(kTurns[turn_]);
  turn_ = (turn_ + 1) % 7;
  if (runnable_[pick].empty()) {
    pick = 0;
    while (runnable_[pick].empty()) ++pick;  // callers make sure one is not empty
  }
  Job* job = runnable_[pick].front();
  runnable_[pick].pop_front();
  return job;
}

bool Scheduler::headsAllQueues(const Job* job) const {
  for (const std::string& t : job->tables) {
    auto it = queues_.find(t);
    if (it == queues_.end() || it->second.empty() || it->second.front() != job) return false;
  }
  return true;
}

absl::StatusOr<bool> Scheduler::submit(std::shared_ptr<Job> job, bool caller_may_run) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::FailedPreconditionError("the workspace is shut down");
  Job* raw = job.get();
  pending_.emplace(raw, std::move(job));
  for (const std::string& t : raw->tables) queues_[t].push_back(raw);
  raw->caller_runs = caller_may_run;
  if (!headsAllQueues(raw)) return false;
  if (caller_may_run && hasSlot(*raw)) {
    raw->caller_runs = false;
    running_ += 1;
    return true;
  }
  makeRunnable(raw);
  return false;
}

void Scheduler::takeTurn(Job* job) {
  absl::MutexLock lock(&mu_);
  auto slot = [this, job]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return hasSlot(*job); };
  mu_.Await(absl::Condition(&slot));
  // A re-run after a conflict goes to the workers: the caller is waiting for the
  // handle by then.
  job->caller_runs = false;
  running_ += 1;
}

void Scheduler::rerun(Job* job) {
  absl::MutexLock lock(&mu_);
  makeRunnable(job);
}

namespace {
thread_local bool worker_thread = false;
// A job release() had this thread take, to run when the current run returns.
thread_local Scheduler::Job* taken_next = nullptr;
// How many jobs in a row the thread may still take: a caller running others' closures
// returns to its own work after a bounded detour.
thread_local int takes_left = 0;
constexpr int kMaxTakes = 8;
// The scheduler and the job whose run this thread is in (runChain), for SlotLoan and
// mayWait.
thread_local Scheduler* running_scheduler = nullptr;
thread_local const Scheduler::Job* running_job = nullptr;
}  // namespace

bool Scheduler::release(Job* job, bool take_next) {
  const Priority priority = job->priority;
  // Only inside a run that runChain() drives, which runs what is taken.
  bool may_take = take_next && worker_thread && takes_left > 0 && taken_next == nullptr;
  bool took = false;
  absl::MutexLock lock(&mu_);
  for (const std::string& t : job->tables) {
    auto it = queues_.find(t);
    it->second.pop_front();
    if (it->second.empty()) {
      queues_.erase(it);
      continue;
    }
    Job* next = it->second.front();
    // A multi-table job becomes runnable once, by the release that completes its set.
    if (!headsAllQueues(next)) continue;
    if (may_take && !took && next->priority <= priority) {
      // Taken: no worker or caller is woken for it. It runs in the slot of `job`.
      next->caller_runs = false;
      taken_next = next;
      takes_left -= 1;
      took = true;
      continue;
    }
    makeRunnable(next);
  }
  pending_.erase(job);
  return took;
}

bool Scheduler::hasFollowers(const Job* job) {
  absl::MutexLock lock(&mu_);
  for (const std::string& t : job->tables) {
    auto it = queues_.find(t);
    if (it != queues_.end() && it->second.size() > 1) return true;
  }
  return false;
}

bool Scheduler::onWorkerThread() { return worker_thread; }

void Scheduler::runChain(Job* job) {
  takes_left = kMaxTakes;
  running_job = job;
  job->run(job);
  while (Job* next = std::exchange(taken_next, nullptr)) {
    running_job = next;
    next->run(next);
  }
  running_job = nullptr;
  takes_left = 0;
}

absl::Status Scheduler::mayWait(const Job& job) {
  const Job* current = running_job;
  if (current == nullptr || running_scheduler != this || current == &job) {
    return absl::OkStatus();
  }
  absl::MutexLock lock(&mu_);
  if (pending_.count(const_cast<Job*>(&job)) == 0) return absl::OkStatus();
  for (const std::string& t : job.tables) {
    if (std::binary_search(current->tables.begin(), current->tables.end(), t)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "a closure on table ", t, " waits for a transaction on ", t,
          " submitted after it, which cannot start before the closure ends (it would wait "
          "for itself)"));
    }
  }
  return absl::OkStatus();
}

Scheduler::SlotLoan::SlotLoan() : lender_(running_job != nullptr ? running_scheduler : nullptr) {
  if (lender_ != nullptr) lender_->lend();
}

Scheduler::SlotLoan::~SlotLoan() {
  if (lender_ != nullptr) lender_->reclaim();
}

void Scheduler::lend() {
  absl::MutexLock lock(&mu_);
  running_ -= 1;
  lent_ += 1;
  // Every thread that lends is one fewer to use the free slots: keep at least `slots_`
  // threads that are not waiting. (Callers running their own jobs lend too; a thread
  // too many then idles.)
  if (static_cast<int>(workers_.size()) < slots_ + lent_) {
    workers_.emplace_back([this] { workerLoop(); });
  }
}

void Scheduler::reclaim() {
  absl::MutexLock lock(&mu_);
  lent_ -= 1;
  auto slot = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ < slots_; };
  mu_.Await(absl::Condition(&slot));
  running_ += 1;
}

void Scheduler::runHere(Job* job) {
  bool was_worker = worker_thread;
  worker_thread = true;  // the same rules as inside a worker apply
  Scheduler* was_scheduler = std::exchange(running_scheduler, this);
  job->on_caller = true;
  runChain(job);
  running_scheduler = was_scheduler;
  worker_thread = was_worker;
  absl::MutexLock lock(&mu_);
  running_ -= 1;
}

void Scheduler::workerLoop() {
  worker_thread = true;
  running_scheduler = this;
  while (true) {
    Job* job = nullptr;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Scheduler* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return (s->anyRunnable() && s->running_ < s->slots_) || s->exiting_;
          },
          this));
      if (exiting_ && !anyRunnable()) return;
      job = takeRunnable();
      running_ += 1;
    }
    runChain(job);
    absl::MutexLock lock(&mu_);
    running_ -= 1;
  }
}

void Scheduler::stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    mu_.Await(absl::Condition(
        +[](Scheduler* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return s->pending_.empty(); },
        this));
    exiting_ = true;
  }
  // No job runs any more, so no SlotLoan adds a thread meanwhile.
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    workers.swap(workers_);
  }
  for (std::thread& t : workers) {
    if (t.joinable()) t.join();
  }
}

}  // namespace flatstore::internal
