// Scheduler: per-table FIFO queues and a bounded pool of worker threads.
//
// A job names its tables up front and enters the queue of every one of them atomically
// (under one mutex), so jobs on one table run in submission order, a multi-table job
// waits for all of its tables, and no cycle can form: the earliest pending job is always
// at the head of all of its queues. A job is runnable when it heads every queue it is
// in; it leaves the queues only when release() is called for it, which the workspace
// does after the job's changes are committed, or, when another job waits behind it, as
// soon as its changes have their place in the writer's mailbox (pipelining: see
// pipeline.h).
//
// A thread that releases a job that way may take the job behind it and run it next, in
// the same slot (release(job, true)): the next closure on a busy table then runs at
// once on a thread that is running already, instead of after a thread was woken for it.
// A chain of short closures on one table runs back to back on one thread while the
// writer commits the changes of those before.
//
// A running job that blocks waiting for another transaction (a closure that waits for a
// transaction on other tables) lends its slot for the wait (SlotLoan): the slot counts
// as free, and when no worker thread is left to use it, the pool starts one more, so a
// transaction waited for inside a closure always gets a slot and a thread. At most
// `threads` jobs run at a time, not counting waiting ones; the pool keeps the threads it
// started (as many as closures ever waited at once). A wait for a job queued behind the
// waiting job on one of its tables could never end, nor could a circle of closures that
// wait for each other's tables (a closure on A waits for a transaction on B while a
// closure on B waits for one on A): beginWait() refuses the wait that would close it.
//
// Thread-safety: all methods are thread-safe.
#ifndef FLATSTORE_RUNTIME_SCHEDULER_H_
#define FLATSTORE_RUNTIME_SCHEDULER_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "runtime/priority.h"

namespace flatstore::internal {

class Scheduler {
 public:
  struct Job {
    std::vector<std::string> tables;  // sorted, unique
    std::function<void(Job*)> run;    // runs on a worker; must lead to release(job)
    Priority priority = Priority::kDefault;
    // Set by submit() for a caller that will run the job itself (see takeTurn): when
    // the job becomes runnable, `give_turn` is called (under the scheduler's lock; it
    // must only signal) instead of a worker being woken.
    bool caller_runs = false;
    std::function<void()> give_turn;
    // Set when runHere() runs the job on the thread of a caller waiting for it.
    bool on_caller = false;
  };

  // `threads` workers; at most that many jobs run at a time (workers and callers
  // running their own jobs together), except that a caller's user-initiated job runs
  // when its tables are free even when background work fills every slot.
  explicit Scheduler(int threads);
  ~Scheduler();

  // Enqueues `job`. FailedPrecondition after stop(). With `caller_may_run` the caller
  // runs the job itself (a blocked caller runs its own closure, saving thread
  // hand-offs): when the job can run at once and a slot is free, submit takes the slot
  // and returns true, and the caller calls runHere(job). When it returns false, the
  // job's give_turn is called once it is the caller's turn, and the caller then calls
  // takeTurn(job) and runHere(job); unless another thread took the job first (see
  // release), in which case give_turn is never called and the job's own completion is
  // all the caller waits for.
  absl::StatusOr<bool> submit(std::shared_ptr<Job> job, bool caller_may_run = false);
  // Runs `job` on the calling thread in the slot submit() or takeTurn() took for it,
  // then any job release() had this thread take meanwhile.
  void runHere(Job* job);
  // For a caller whose job's give_turn was called: blocks until a slot is free and
  // takes it; the caller then calls runHere(job).
  void takeTurn(Job* job);
  // Runs `job` again (it keeps its place at the head of its queues).
  void rerun(Job* job);
  // Removes `job` from its queues; the jobs behind it may become runnable. With
  // `take_next`, called by a job's own run on a worker or in runHere, the thread may
  // take one of them (of `job`'s priority or a higher one, a bounded number of times in
  // a row) to run when the current run returns, in the same slot. Returns whether it
  // took one.
  bool release(Job* job, bool take_next = false);
  // Whether another job waits behind `job` in one of its queues.
  bool hasFollowers(const Job* job);
  // Refuses new jobs, waits until every submitted job was released, and joins the
  // workers. Idempotent.
  void stop();

  // True on a worker thread of any scheduler (inside a closure).
  static bool onWorkerThread();

  // Called by a thread running a job before it blocks until `job` completes.
  // FailedPrecondition, naming the tables, when that wait could never end: `job` waits,
  // directly or through other waiting jobs, for the job running on this thread (it is
  // queued behind it on one of its tables, or behind a job that waits for a transaction
  // queued behind it, ...). Otherwise records the wait, so that the waits of other jobs
  // see it, until endWait(). OK, recording nothing, on a thread that runs no job.
  absl::Status beginWait(const Job& job) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the wait beginWait() recorded for the job running on this thread, if any.
  void endWait() ABSL_LOCKS_EXCLUDED(mu_);

  // For the lifetime of a SlotLoan, the job running on this thread (if any) lends its
  // slot: made by a thread that is about to block until another transaction completes.
  // The destructor takes a slot back, waiting for one when every slot is in use.
  class SlotLoan {
   public:
    SlotLoan();
    ~SlotLoan();
    SlotLoan(const SlotLoan&) = delete;
    SlotLoan& operator=(const SlotLoan&) = delete;

   private:
    Scheduler* lender_;  // null when this thread runs no job
  };

 private:
  void lend() ABSL_LOCKS_EXCLUDED(mu_);
  void reclaim() ABSL_LOCKS_EXCLUDED(mu_);
  void workerLoop();
  // Runs `job`, then the jobs its run (and theirs) took with release(job, true).
  static void runChain(Job* job);
  bool headsAllQueues(const Job* job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One step of a path of waits: `job`, and the table on which the job before it in
  // the path is queued behind it (empty: the job before it waits for it to complete).
  struct WaitStep {
    const Job* job;
    std::string queued_on;
  };
  // How `from` waits, through queues and recorded waits, for `target`: the steps from
  // `from` (whose step has no table) to `target`; empty when it does not.
  std::vector<WaitStep> waitPath(const Job* from, const Job* target) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  // Per table, the jobs on it in order (the first runs or may run). A table's queue
  // stays when it empties: jobs on the same tables come one after another.
  std::map<std::string, std::deque<Job*>> queues_ ABSL_GUARDED_BY(mu_);
  std::map<Job*, std::shared_ptr<Job>> pending_ ABSL_GUARDED_BY(mu_);
  // Running jobs that wait for another job to complete, and that job (see beginWait).
  std::map<const Job*, const Job*> waiting_for_ ABSL_GUARDED_BY(mu_);
  // Runnable jobs by priority; takeRunnable() serves them 4 : 2 : 1.
  std::deque<Job*> runnable_[kPriorityLevels] ABSL_GUARDED_BY(mu_);
  int turn_ ABSL_GUARDED_BY(mu_) = 0;
  bool anyRunnable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `job` may take a slot now (a caller's user-initiated job always may).
  bool hasSlot(const Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Job* takeRunnable() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void makeRunnable(Job* job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const int slots_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;  // jobs running now, on workers or callers
  int lent_ ABSL_GUARDED_BY(mu_) = 0;     // slots lent by waiting jobs (see SlotLoan)
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool exiting_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_SCHEDULER_H_
