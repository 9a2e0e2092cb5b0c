#include "runtime/scheduler.h"

namespace flatstore::internal {

Scheduler::Scheduler(int threads) {
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { workerLoop(); });
}

Scheduler::~Scheduler() { stop(); }

bool Scheduler::headsAllQueues(const Job* job) const {
  for (const std::string& t : job->tables) {
    auto it = queues_.find(t);
    if (it == queues_.end() || it->second.empty() || it->second.front() != job) return false;
  }
  return true;
}

absl::Status Scheduler::submit(std::shared_ptr<Job> job) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::FailedPreconditionError("the workspace is shut down");
  Job* raw = job.get();
  pending_.emplace(raw, std::move(job));
  for (const std::string& t : raw->tables) queues_[t].push_back(raw);
  if (headsAllQueues(raw)) runnable_.push_back(raw);
  return absl::OkStatus();
}

void Scheduler::rerun(Job* job) {
  absl::MutexLock lock(&mu_);
  runnable_.push_back(job);
}

void Scheduler::release(Job* job) {
  absl::MutexLock lock(&mu_);
  for (const std::string& t : job->tables) {
    auto it = queues_.find(t);
    it->second.pop_front();
    if (it->second.empty()) {
      queues_.erase(it);
      continue;
    }
    Job* next = it->second.front();
    // A multi-table job is queued once, by the release that completes its set.
    if (headsAllQueues(next)) runnable_.push_back(next);
  }
  pending_.erase(job);
}

void Scheduler::workerLoop() {
  while (true) {
    Job* job = nullptr;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Scheduler* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return !s->runnable_.empty() || s->exiting_;
          },
          this));
      if (runnable_.empty()) return;
      job = runnable_.front();
      runnable_.pop_front();
    }
    job->run(job);
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
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

}  // namespace flatstore::internal
