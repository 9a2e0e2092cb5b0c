// The scheduler on its own (runtime/scheduler.h), without a workspace: per-table FIFO
// queues, a job entering all its tables' queues at once, multi-table waits, the 4 : 2 : 1
// priority turns, rerun, release with take_next, and the turn of a caller that runs its
// own job.
//
// Jobs submitted with caller_may_run never go to a worker: the scheduler calls their
// give_turn under its lock when they become runnable. Those tests drive the scheduler
// from the test thread alone and check, right after each submit or release, whose turn
// it is, so nothing depends on timing. The tests that need workers wait for them with
// bounded waits.
#include "runtime/scheduler.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/priority.h"
#include "tests/support/random.h"
#include "tests/support/status_macros.h"
#include "tests/support/wait.h"

namespace flatstore::internal {
namespace {

using ::flatstore::testing::baseSeed;
using ::flatstore::testing::kBoundedWait;
using ::flatstore::testing::Rng;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using JobPtr = std::shared_ptr<Scheduler::Job>;

// A job on `tables` (sorted, unique, as the workspace passes them) whose run is `run`.
// The scheduler owns the job until it is released: release() may destroy the job and
// with it the closure that calls it, so a run touches only its locals after release().
JobPtr makeJob(std::vector<std::string> tables, std::function<void(Scheduler::Job*)> run,
               Priority priority = Priority::kDefault) {
  auto job = std::make_shared<Scheduler::Job>();
  job->tables = std::move(tables);
  job->run = std::move(run);
  job->priority = priority;
  return job;
}

// Jobs that their caller runs, driven from the test thread: turns() lists the jobs whose
// give_turn the scheduler called, in order.
class CallerJobs {
 public:
  explicit CallerJobs(Scheduler& scheduler) : scheduler_(scheduler) {}

  // Submits job `name` on `tables`, for the caller to run; its run records it and
  // releases it. Returns what submit() returned.
  bool submit(const std::string& name, std::vector<std::string> tables,
              Priority priority = Priority::kDefault) {
    JobPtr job = makeJob(
        std::move(tables),
        [this, name](Scheduler::Job* j) {
          ran_.push_back(name);
          scheduler_.release(j);
        },
        priority);
    job->give_turn = [this, name] { turns_.push_back(name); };
    jobs_[name] = job.get();
    absl::StatusOr<bool> now = scheduler_.submit(std::move(job), /*caller_may_run=*/true);
    EXPECT_TRUE(now.ok()) << name << ": " << now.status();
    return now.ok() && *now;
  }

  // Runs job `name` here: at once when submit() returned true, else after its turn came.
  void run(const std::string& name, bool took_slot_at_submit) {
    Scheduler::Job* job = jobs_.at(name);
    if (!took_slot_at_submit) scheduler_.takeTurn(job);
    scheduler_.runHere(job);
  }

  Scheduler::Job* job(const std::string& name) { return jobs_.at(name); }
  // The turns given since the last call.
  std::vector<std::string> takeTurns() { return std::exchange(turns_, {}); }
  const std::vector<std::string>& ran() const { return ran_; }

 private:
  Scheduler& scheduler_;
  std::map<std::string, Scheduler::Job*> jobs_;
  // give_turn runs under the scheduler's lock, on the thread that submits or releases:
  // here always the test thread.
  std::vector<std::string> turns_;
  std::vector<std::string> ran_;
};

TEST(SchedulerTest, JobsOnOneTableTakeTurnsInSubmissionOrder) {
  Scheduler scheduler(2);
  CallerJobs jobs(scheduler);
  EXPECT_TRUE(jobs.submit("first", {"a"}));
  EXPECT_FALSE(jobs.submit("second", {"a"}));
  EXPECT_FALSE(jobs.submit("third", {"a"}));
  EXPECT_THAT(jobs.takeTurns(), IsEmpty());
  EXPECT_TRUE(scheduler.hasFollowers(jobs.job("first")));

  jobs.run("first", true);
  EXPECT_THAT(jobs.takeTurns(), ElementsAre("second"));
  jobs.run("second", false);
  EXPECT_THAT(jobs.takeTurns(), ElementsAre("third"));
  EXPECT_FALSE(scheduler.hasFollowers(jobs.job("third")));
  jobs.run("third", false);
  EXPECT_THAT(jobs.takeTurns(), IsEmpty());
  EXPECT_THAT(jobs.ran(), ElementsAre("first", "second", "third"));
}

TEST(SchedulerTest, JobsOnDisjointTablesAreRunnableTogether) {
  Scheduler scheduler(2);
  CallerJobs jobs(scheduler);
  EXPECT_TRUE(jobs.submit("a", {"a"}));
  EXPECT_TRUE(jobs.submit("b", {"b"}));
  EXPECT_FALSE(scheduler.hasFollowers(jobs.job("a")));
  jobs.run("b", true);
  jobs.run("a", true);
  EXPECT_THAT(jobs.ran(), ElementsAre("b", "a"));
}

// A multi-table job is runnable only once it heads every queue it is in, and a job that
// comes after it on one of those tables waits behind it even while it waits for another
// table: it entered all its queues at once, at submission.
TEST(SchedulerTest, MultiTableJobWaitsForAllItsTablesAndLaterJobsWaitBehindIt) {
  Scheduler scheduler(4);
  CallerJobs jobs(scheduler);
  EXPECT_TRUE(jobs.submit("on a", {"a"}));
  EXPECT_TRUE(jobs.submit("on b", {"b"}));
  EXPECT_FALSE(jobs.submit("on a+b", {"a", "b"}));
  EXPECT_FALSE(jobs.submit("later on b", {"b"}));
  EXPECT_TRUE(jobs.submit("on c", {"c"}));
  EXPECT_THAT(jobs.takeTurns(), IsEmpty());

  jobs.run("on b", true);
  EXPECT_THAT(jobs.takeTurns(), IsEmpty()) << "a+b still waits for a; the later job for a+b";
  jobs.run("on a", true);
  EXPECT_THAT(jobs.takeTurns(), ElementsAre("on a+b"));
  jobs.run("on a+b", false);
  EXPECT_THAT(jobs.takeTurns(), ElementsAre("later on b"));
  jobs.run("later on b", false);
  jobs.run("on c", true);
  EXPECT_THAT(jobs.ran(), ElementsAre("on b", "on a", "on a+b", "later on b", "on c"));
}

// Two multi-table jobs that overlap in different tables cannot wait for each other: the
// earlier one heads all of its queues first.
TEST(SchedulerTest, OverlappingMultiTableJobsRunInSubmissionOrder) {
  Scheduler scheduler(4);
  CallerJobs jobs(scheduler);
  EXPECT_TRUE(jobs.submit("a+b", {"a", "b"}));
  EXPECT_FALSE(jobs.submit("b+c", {"b", "c"}));
  EXPECT_FALSE(jobs.submit("a+c", {"a", "c"}));
  jobs.run("a+b", true);
  EXPECT_THAT(jobs.takeTurns(), ElementsAre("b+c"));
  jobs.run("b+c", false);
  EXPECT_THAT(jobs.takeTurns(), ElementsAre("a+c"));
  jobs.run("a+c", false);
  EXPECT_THAT(jobs.ran(), ElementsAre("a+b", "b+c", "a+c"));
}

// What the jobs of a worker-run test saw, in order.
class Log {
 public:
  void add(std::string event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(event));
  }
  std::vector<std::string> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  // Waits until `n` events were added; false if that takes longer than the bounded wait.
  bool awaitSize(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return events_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kBoundedWait);
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

// A job for the workers that logs `name` and releases itself.
JobPtr loggingJob(Scheduler& scheduler, Log& log, std::string name, std::vector<std::string> tables,
                  Priority priority = Priority::kDefault) {
  return makeJob(
      std::move(tables),
      [&scheduler, &log, name](Scheduler::Job* j) {
        log.add(name);
        scheduler.release(j);
      },
      priority);
}

// A worker job that holds its slot until `open` is notified, then logs "blocker" and
// releases itself.
struct Blocker {
  absl::Notification entered;
  absl::Notification open;

  // Submits the blocker and returns once a worker runs it: its slot is taken. Failures
  // are fatal (call in ASSERT_NO_FATAL_FAILURE).
  void hold(Scheduler& scheduler, Log& log) {
    ASSERT_OK(scheduler.submit(makeJob({"blocker"}, [this, &scheduler, &log](Scheduler::Job* j) {
      entered.Notify();
      log.add(open.WaitForNotificationWithTimeout(kBoundedWait) ? "blocker" : "blocker timed out");
      scheduler.release(j);
    })));
    ASSERT_TRUE(entered.WaitForNotificationWithTimeout(kBoundedWait)) << "no worker ran it";
  }
};

// With every priority level's jobs runnable and one slot, of every seven picks four go
// to user-initiated jobs, two to default ones and one to background ones, each level in
// submission order.
TEST(SchedulerTest, RunnableJobsAreServedFourTwoOneByPriority) {
  Scheduler scheduler(1);
  Log log;
  // Holds the only slot until every other job is runnable.
  Blocker blocker;
  ASSERT_NO_FATAL_FAILURE(blocker.hold(scheduler, log));
  const std::pair<Priority, const char*> kLevels[] = {{Priority::kBackground, "bg"},
                                                      {Priority::kDefault, "def"},
                                                      {Priority::kUserInitiated, "user"}};
  int submitted = 1;
  for (auto [level, prefix] : kLevels) {
    for (int i = 0; i < 8; ++i) {
      std::string name = absl::StrCat(prefix, i);
      ASSERT_OK(scheduler.submit(loggingJob(scheduler, log, name, {name}, level)));
      submitted += 1;
    }
  }
  blocker.open.Notify();
  ASSERT_TRUE(log.awaitSize(submitted)) << "not every job ran";
  std::vector<std::string> order = log.events();
  ASSERT_EQ(order.front(), "blocker");
  // The blocker took the first turn; the next seven picks are one full round.
  std::vector<std::string> round(order.begin() + 1, order.begin() + 8);
  auto count = [&](std::string_view prefix) {
    return std::count_if(round.begin(), round.end(),
                         [&](const std::string& n) { return n.rfind(prefix, 0) == 0; });
  };
  EXPECT_EQ(count("user"), 4) << absl::StrJoin(round, " ");
  EXPECT_EQ(count("def"), 2) << absl::StrJoin(round, " ");
  EXPECT_EQ(count("bg"), 1) << absl::StrJoin(round, " ");
  // Each level keeps its submission order.
  for (auto [level, prefix] : kLevels) {
    std::vector<std::string> seen;
    for (const std::string& n : order) {
      if (n.rfind(prefix, 0) == 0) seen.push_back(n);
    }
    std::vector<std::string> expected;
    for (int i = 0; i < 8; ++i) expected.push_back(absl::StrCat(prefix, i));
    EXPECT_EQ(seen, expected) << prefix;
  }
}

// A job whose run asks for a rerun runs again before the job behind it on its table: it
// keeps its place at the head of its queue.
TEST(SchedulerTest, RerunKeepsTheJobsPlaceInItsQueues) {
  Scheduler scheduler(2);
  Log log;
  absl::Notification open;
  int runs = 0;  // only the first job's runs touch it, one at a time
  JobPtr first = makeJob({"a", "b"}, [&](Scheduler::Job* j) {
    if (!open.WaitForNotificationWithTimeout(kBoundedWait)) log.add("first timed out");
    runs += 1;
    log.add(absl::StrCat("first run ", runs));
    if (runs < 3) {
      scheduler.rerun(j);
    } else {
      scheduler.release(j);
    }
  });
  ASSERT_OK(scheduler.submit(first));
  ASSERT_OK(scheduler.submit(loggingJob(scheduler, log, "second on a", {"a"})));
  ASSERT_OK(scheduler.submit(loggingJob(scheduler, log, "third on b", {"b"})));
  open.Notify();
  ASSERT_TRUE(log.awaitSize(5)) << "not every job ran";
  std::vector<std::string> events = log.events();
  ASSERT_EQ(events.size(), 5u);
  EXPECT_THAT(std::vector<std::string>(events.begin(), events.begin() + 3),
              ElementsAre("first run 1", "first run 2", "first run 3"));
  EXPECT_THAT(std::vector<std::string>(events.begin() + 3, events.end()),
              ::testing::UnorderedElementsAre("second on a", "third on b"));
}

// release(job, true) on a worker takes the job behind it (of the same or a higher
// priority) and runs it on the same thread once the current run returns.
TEST(SchedulerTest, ReleaseWithTakeNextRunsTheFollowerOnTheSameThread) {
  Scheduler scheduler(2);
  absl::Notification open;
  absl::Notification done;
  absl::Mutex mu;
  std::vector<std::string> events;
  std::thread::id first_thread, second_thread;
  bool took = false;
  auto add = [&](std::string e) {
    absl::MutexLock lock(&mu);
    events.push_back(std::move(e));
  };
  ASSERT_OK(scheduler.submit(makeJob({"a"}, [&](Scheduler::Job* j) {
    if (!open.WaitForNotificationWithTimeout(kBoundedWait)) add("first timed out");
    first_thread = std::this_thread::get_id();
    // release() may destroy the job and this closure: only locals after it.
    bool* took_out = &took;
    auto* log = &add;
    *took_out = scheduler.release(j, /*take_next=*/true);
    (*log)("first returns");
  })));
  ASSERT_OK(scheduler.submit(makeJob(
      {"a"},
      [&](Scheduler::Job* j) {
        second_thread = std::this_thread::get_id();
        add("second runs");
        absl::Notification* finished = &done;
        scheduler.release(j);
        finished->Notify();
      },
      Priority::kUserInitiated)));
  open.Notify();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kBoundedWait));
  EXPECT_TRUE(took);
  EXPECT_EQ(first_thread, second_thread);
  absl::MutexLock lock(&mu);
  EXPECT_THAT(events, ElementsAre("first returns", "second runs"));
}

TEST(SchedulerTest, ReleaseWithTakeNextLeavesALowerPriorityFollowerToTheWorkers) {
  Scheduler scheduler(1);
  absl::Notification open;
  absl::Notification done;
  bool took = true;
  ASSERT_OK(scheduler.submit(makeJob(
      {"a"},
      [&](Scheduler::Job* j) {
        if (!open.WaitForNotificationWithTimeout(kBoundedWait)) return;
        bool* took_out = &took;  // release() may destroy this closure
        *took_out = scheduler.release(j, /*take_next=*/true);
      },
      Priority::kUserInitiated)));
  ASSERT_OK(scheduler.submit(makeJob(
      {"a"},
      [&](Scheduler::Job* j) {
        absl::Notification* finished = &done;  // release() may destroy this closure
        scheduler.release(j);
        finished->Notify();
      },
      Priority::kBackground)));
  open.Notify();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kBoundedWait)) << "the follower never ran";
  EXPECT_FALSE(took);
}

// A chain of jobs on one table, each releasing with take_next: a thread takes at most
// eight in a row, then hands the next one to the workers.
TEST(SchedulerTest, TakeNextIsBoundedInARow) {
  constexpr int kJobs = 20;
  Scheduler scheduler(1);
  absl::Notification open;
  absl::Notification done;
  bool took[kJobs] = {};  // each written by its own job only
  for (int i = 0; i < kJobs; ++i) {
    ASSERT_OK(scheduler.submit(makeJob({"a"}, [&, i](Scheduler::Job* j) {
      if (i == 0 && !open.WaitForNotificationWithTimeout(kBoundedWait)) return;
      // release() may destroy the job and this closure: only locals after it.
      bool* took_out = &took[i];
      absl::Notification* finished = i == kJobs - 1 ? &done : nullptr;
      *took_out = scheduler.release(j, /*take_next=*/true);
      if (finished != nullptr) finished->Notify();
    })));
  }
  open.Notify();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kBoundedWait)) << "the chain did not end";
  int in_a_row = 0;
  int longest = 0;
  int total = 0;
  for (bool t : took) {
    in_a_row = t ? in_a_row + 1 : 0;
    longest = std::max(longest, in_a_row);
    total += t;
  }
  EXPECT_EQ(longest, 8);
  EXPECT_FALSE(took[kJobs - 1]) << "the last job had no follower to take";
  EXPECT_EQ(total, kJobs - 3);  // chains of 9, 9 and 2 jobs
}

TEST(SchedulerTest, TakeNextOutsideARunTakesNothing) {
  // Two slots: the first job's is never given back (it is not run), the second's is.
  Scheduler scheduler(2);
  CallerJobs jobs(scheduler);
  // Two caller jobs; the first is released from the test thread, outside runHere.
  JobPtr first = makeJob({"a"}, [](Scheduler::Job*) {});
  Scheduler::Job* raw = first.get();
  absl::StatusOr<bool> now = scheduler.submit(std::move(first), /*caller_may_run=*/true);
  ASSERT_OK(now);
  EXPECT_TRUE(*now);
  EXPECT_FALSE(jobs.submit("second", {"a"}));
  EXPECT_FALSE(scheduler.release(raw, /*take_next=*/true));
  EXPECT_THAT(jobs.takeTurns(), ElementsAre("second"));
  jobs.run("second", false);
  EXPECT_THAT(jobs.ran(), ElementsAre("second"));
}

// A caller's job that can run at once runs on the caller's thread, under the rules of a
// worker's run, and the slot is the caller's until it returns.
TEST(SchedulerTest, CallerRunsItsOwnJobOnItsThread) {
  Scheduler scheduler(1);
  EXPECT_FALSE(Scheduler::onWorkerThread());
  std::thread::id ran_on;
  bool on_worker = false;
  bool on_caller = false;
  JobPtr job = makeJob({"a"}, [&](Scheduler::Job* j) {
    ran_on = std::this_thread::get_id();
    on_worker = Scheduler::onWorkerThread();
    on_caller = j->on_caller;
    scheduler.release(j);
  });
  Scheduler::Job* raw = job.get();
  absl::StatusOr<bool> now = scheduler.submit(std::move(job), /*caller_may_run=*/true);
  ASSERT_OK(now);
  ASSERT_TRUE(*now);
  scheduler.runHere(raw);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_TRUE(on_worker);
  EXPECT_TRUE(on_caller);
  EXPECT_FALSE(Scheduler::onWorkerThread()) << "runHere left the thread marked as a worker";
}

// With every slot taken, a caller's user-initiated job still runs at once on the
// caller's thread; a caller's background job gets its turn (its tables are free) and
// then waits in takeTurn for a slot.
TEST(SchedulerTest, CallersUserInitiatedJobDoesNotWaitForASlot) {
  Scheduler scheduler(1);
  Log log;
  Blocker blocker;
  ASSERT_NO_FATAL_FAILURE(blocker.hold(scheduler, log));
  CallerJobs jobs(scheduler);
  bool user_now = jobs.submit("user", {"u"}, Priority::kUserInitiated);
  EXPECT_TRUE(user_now) << "the user-initiated job waits for a slot";
  if (user_now) jobs.run("user", true);
  EXPECT_FALSE(jobs.submit("background", {"bg"}, Priority::kBackground));
  EXPECT_THAT(jobs.takeTurns(), ElementsAre("background"));
  std::thread opener([&] { blocker.open.Notify(); });
  jobs.run("background", false);  // takeTurn returns once the blocker's slot is free
  if (!user_now) jobs.run("user", false);
  opener.join();
  EXPECT_THAT(jobs.ran(), ElementsAre("user", "background"));
  EXPECT_THAT(log.events(), ElementsAre("blocker")) << "the background job ran in its slot";
}

TEST(SchedulerTest, StopRefusesNewJobs) {
  Scheduler scheduler(1);
  scheduler.stop();
  absl::StatusOr<bool> r = scheduler.submit(makeJob({"a"}, [](Scheduler::Job*) {}));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("shut down"));
  scheduler.stop();  // idempotent
}

// Many jobs on random sets of tables from several threads, run by four workers: on each
// table the jobs run one at a time, in the order they were submitted.
TEST(SchedulerTest, RandomJobsKeepPerTableOrderAndNeverOverlap) {
  const uint64_t seed = baseSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed, " (rerun: FLATSTORE_SEED=", seed, ")"));
  constexpr int kTables = 5;
  constexpr int kJobs = 400;
  Scheduler scheduler(4);
  absl::Mutex mu;
  // Per table: jobs in submission order, jobs in run order, and whether one runs now.
  std::vector<int> submitted[kTables];
  std::vector<int> ran[kTables];
  bool busy[kTables] = {};
  int overlaps = 0;
  int finished = 0;
  Rng rng(seed);
  for (int i = 0; i < kJobs; ++i) {
    std::vector<std::string> tables;
    std::vector<int> ids;
    for (int t = 0; t < kTables; ++t) {
      if (rng.chance(0.35)) {
        tables.push_back(absl::StrCat("t", t));
        ids.push_back(t);
      }
    }
    if (tables.empty()) {
      int t = static_cast<int>(rng.below(kTables));
      tables.push_back(absl::StrCat("t", t));
      ids.push_back(t);
    }
    Priority priority = static_cast<Priority>(rng.below(kPriorityLevels));
    bool take_next = rng.chance(0.5);
    JobPtr job = makeJob(
        tables,
        [&, i, ids, take_next](Scheduler::Job* j) {
          {
            absl::MutexLock lock(&mu);
            for (int t : ids) {
              if (busy[t]) overlaps += 1;
              busy[t] = true;
              ran[t].push_back(i);
            }
          }
          std::this_thread::yield();
          {
            absl::MutexLock lock(&mu);
            for (int t : ids) busy[t] = false;
            finished += 1;
          }
          scheduler.release(j, take_next);
        },
        priority);
    {
      absl::MutexLock lock(&mu);
      for (int t : ids) submitted[t].push_back(i);
    }
    ASSERT_OK(scheduler.submit(std::move(job)));
  }
  {
    absl::MutexLock lock(&mu);
    auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return finished == kJobs; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), kBoundedWait))
        << finished << " of " << kJobs << " jobs ran";
  }
  scheduler.stop();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(overlaps, 0);
  for (int t = 0; t < kTables; ++t) EXPECT_EQ(ran[t], submitted[t]) << "table t" << t;
}

}  // namespace
}  // namespace flatstore::internal
