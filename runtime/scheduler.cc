#include "runtime/scheduler.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

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
// beginWait.
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
    // An empty queue stays, with its storage, for the table's next job.
    if (it->second.empty()) continue;
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
  // A job waiting for this one now waits for its commit alone, which needs no table.
  for (auto it = waiting_for_.begin(); it != waiting_for_.end();) {
    it = it->second == job ? waiting_for_.erase(it) : std::next(it);
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

namespace {

std::string tablesOf(const Scheduler::Job& job) { return absl::StrJoin(job.tables, ", "); }

}  // namespace

std::vector<Scheduler::WaitStep> Scheduler::waitPath(const Job* from, const Job* target) const {
  // Breadth first over what a job waits for: the jobs ahead of it in its queues, and the
  // job it waits for when it waits. Each queue is walked once, from its front to the
  // furthest job reached in it: the jobs ahead of one already reached are reached too.
  std::map<const Job*, WaitStep> parent;  // reached job -> the job before it, and how
  std::deque<const Job*> frontier = {from};
  parent.emplace(from, WaitStep{nullptr, ""});
  struct Walk {
    std::map<const Job*, size_t> position;
    size_t walked = 0;  // jobs at the front of the queue already reached
  };
  std::map<std::string, Walk> walks;
  auto reach = [&](const Job* job, const Job* before, const std::string& queued_on) {
    if (parent.emplace(job, WaitStep{before, queued_on}).second) frontier.push_back(job);
  };
  while (!frontier.empty() && parent.count(target) == 0) {
    const Job* job = frontier.front();
    frontier.pop_front();
    for (const std::string& t : job->tables) {
      auto queue = queues_.find(t);
      if (queue == queues_.end()) continue;
      const std::deque<Job*>& jobs = queue->second;
      Walk& walk = walks[t];
      if (walk.position.empty()) {
        for (size_t i = 0; i < jobs.size(); ++i) walk.position.emplace(jobs[i], i);
      }
      auto at = walk.position.find(job);
      if (at == walk.position.end()) continue;
      for (; walk.walked < at->second; ++walk.walked) reach(jobs[walk.walked], job, t);
    }
    auto waited = waiting_for_.find(job);
    if (waited != waiting_for_.end()) reach(waited->second, job, "");
  }
  if (parent.count(target) == 0) return {};
  // From `target` back to `from`, then turned around: each job with how the one before
  // it waits for it.
  std::vector<WaitStep> path;
  for (const Job* job = target; job != nullptr; job = parent.at(job).job) {
    path.push_back(WaitStep{job, parent.at(job).queued_on});
  }
  std::reverse(path.begin(), path.end());
  return path;
}

absl::Status Scheduler::beginWait(const Job& job) {
  const Job* current = running_job;
  if (current == nullptr || running_scheduler != this || current == &job) {
    return absl::OkStatus();
  }
  absl::MutexLock lock(&mu_);
  if (pending_.count(const_cast<Job*>(&job)) == 0) return absl::OkStatus();
  std::vector<WaitStep> path = waitPath(&job, current);
  if (path.size() == 2 && !path[1].queued_on.empty()) {
    const std::string& t = path[1].queued_on;
    return absl::FailedPreconditionError(absl::StrCat(
        "a closure on table ", t, " waits for a transaction on ", t,
        " submitted after it, which cannot start before the closure ends (it would wait "
        "for itself)"));
  }
  if (!path.empty()) {
    std::string message =
        absl::StrCat("a closure on ", tablesOf(*current), " waits for a transaction on ",
                     tablesOf(job), ", which cannot start before that closure ends");
    for (size_t i = 1; i < path.size(); ++i) {
      const Job* next = path[i].job;
      if (path[i].queued_on.empty()) {
        absl::StrAppend(&message, ", which waits for a transaction on ", tablesOf(*next));
      } else {
        absl::StrAppend(&message, ": it is queued on ", path[i].queued_on, " behind ",
                        next == current ? "the waiting closure"
                                        : absl::StrCat("a closure on ", tablesOf(*next)));
      }
    }
    absl::StrAppend(&message,
                    " (closures waiting for each other's tables: the wait would never end)");
    return absl::FailedPreconditionError(message);
  }
  waiting_for_[current] = &job;
  return absl::OkStatus();
}

void Scheduler::endWait() {
  const Job* current = running_job;
  if (current == nullptr || running_scheduler != this) return;
  absl::MutexLock lock(&mu_);
  waiting_for_.erase(current);
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
