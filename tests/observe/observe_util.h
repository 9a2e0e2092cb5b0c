// Helpers shared by the observer tests: result identity, changeset application, a
// thread-pool executor, and a gate that holds a callback (and with it, for an inline
// subscription, the observer hub's thread) until it is opened.
#ifndef FLATSTORE_TESTS_OBSERVE_OBSERVE_UTIL_H_
#define FLATSTORE_TESTS_OBSERVE_OBSERVE_UTIL_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flatstore/entity.h"
#include "flatstore/observe.h"
#include "gtest/gtest.h"
#include "tests/support/wait.h"

namespace flatstore::testing {

inline std::string vsText(Versionstamp vs) {
  return absl::StrCat(vs.commitSequence(), ".", vs.position());
}

// "3:[12@5.0 7@4.1 9@2.0]": the size, then rowid@versionstamp of each object.
template <class P>
std::string describeRows(const std::vector<P>& rows) {
  std::string out = absl::StrCat(rows.size(), ":[");
  for (size_t i = 0; i < rows.size() && i < 40; ++i) {
    absl::StrAppend(&out, i == 0 ? "" : " ", rows[i]->rowid(), "@",
                    vsText(rows[i]->versionstamp()));
  }
  return out + (rows.size() > 40 ? " ...]" : "]");
}

// The same objects (by rowid) at the same versions, in the same order.
template <class P>
bool sameRows(const std::vector<P>& a, const std::vector<P>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i]->rowid() != b[i]->rowid() || a[i]->versionstamp() != b[i]->versionstamp()) {
      return false;
    }
  }
  return true;
}

inline std::string describe(const Changeset& cs) {
  auto list = [](const std::vector<size_t>& v) {
    return absl::StrCat("{", absl::StrJoin(v, ","), "}");
  };
  return absl::StrCat("deleted", list(cs.deleted), " inserted", list(cs.inserted), " updated",
                      list(cs.updated), " seq ", cs.commit_sequence);
}

inline bool strictlyAscending(const std::vector<size_t>& v, size_t bound) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] >= bound || (i > 0 && v[i] <= v[i - 1])) return false;
  }
  return true;
}

// Applies `cs` to `before` as Changeset documents it (removes `deleted` in descending
// order, inserts the new result's objects at `inserted` in ascending order, replaces
// `updated`), and returns what went wrong, or an empty string when that gives `after`.
template <class P>
std::string checkChangeset(const std::vector<P>& before, const std::vector<P>& after,
                           const Changeset& cs) {
  std::string context = absl::StrCat(" (changeset ", describe(cs), "; before ",
                                     describeRows(before), "; after ", describeRows(after), ")");
  if (!strictlyAscending(cs.deleted, before.size())) {
    return "deleted indices are not ascending indices into the old result" + context;
  }
  if (!strictlyAscending(cs.inserted, after.size()) ||
      !strictlyAscending(cs.updated, after.size())) {
    return "inserted/updated indices are not ascending indices into the new result" + context;
  }
  std::vector<P> rows = before;
  for (auto it = cs.deleted.rbegin(); it != cs.deleted.rend(); ++it) {
    rows.erase(rows.begin() + static_cast<std::ptrdiff_t>(*it));
  }
  for (size_t i : cs.inserted) {
    if (i > rows.size()) return absl::StrCat("inserted index ", i, " is past the end") + context;
    rows.insert(rows.begin() + static_cast<std::ptrdiff_t>(i), after[i]);
  }
  if (rows.size() != after.size()) {
    return absl::StrCat("applying the changeset gives ", rows.size(), " objects, not ",
                        after.size()) +
           context;
  }
  for (size_t i : cs.updated) {
    if (std::find(cs.inserted.begin(), cs.inserted.end(), i) != cs.inserted.end()) {
      return absl::StrCat("index ", i, " is both inserted and updated") + context;
    }
    if (rows[i]->rowid() != after[i]->rowid()) {
      return absl::StrCat("updated index ", i, " holds rowid ", rows[i]->rowid(),
                          " but the new result has rowid ", after[i]->rowid()) +
             context;
    }
    if (rows[i]->versionstamp() == after[i]->versionstamp()) {
      return absl::StrCat("updated index ", i, " did not change") + context;
    }
    rows[i] = after[i];
  }
  if (!sameRows(rows, after)) {
    return absl::StrCat("applying the changeset gives ", describeRows(rows)) + context;
  }
  return "";
}

// A gate for callbacks. Once armed, the next callback that calls pass() blocks there
// until open() (or until the bounded wait runs out, which the test then reports). An
// inline subscription's callback runs on the observer hub's thread, so holding it holds
// the hub: commits go on, their changes queue up unapplied.
//
// Thread-safety: every method may be called from any thread.
class CallbackGate {
 public:
  void arm() {
    absl::MutexLock lock(&mu_);
    armed_ = true;
    entered_ = false;
    open_ = false;
  }
  // Called by callbacks; blocks while the gate is armed and closed.
  void pass() {
    absl::MutexLock lock(&mu_);
    if (!armed_) return;
    armed_ = false;
    entered_ = true;
    if (!mu_.AwaitWithTimeout(absl::Condition(&open_), kBoundedWait)) timed_out_ = true;
  }
  // True once a callback blocks in pass(); false if none does within the bounded wait.
  bool awaitEntered() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&entered_), kBoundedWait);
  }
  void open() {
    absl::MutexLock lock(&mu_);
    armed_ = false;
    open_ = true;
  }
  // True if a callback gave up waiting for open().
  bool timedOut() {
    absl::MutexLock lock(&mu_);
    return timed_out_;
  }

 private:
  absl::Mutex mu_;
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  bool entered_ ABSL_GUARDED_BY(mu_) = false;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  bool timed_out_ ABSL_GUARDED_BY(mu_) = false;
};

// An Executor with a few threads, for callbacks that may run on any of them. It can be
// paused (tasks queue up and wait) and drained (wait until nothing is queued or running).
// Runs every queued task before its destructor returns, never after.
//
// Thread-safety: every method may be called from any thread, except that the destructor
// must not race with execute().
class ThreadPoolExecutor : public Executor {
 public:
  explicit ThreadPoolExecutor(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
  }
  ~ThreadPoolExecutor() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      paused_ = false;
    }
    for (std::thread& t : threads_) t.join();
  }

  void execute(std::function<void()> task) override {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
    executed_ += 1;
  }

  void pause() {
    absl::MutexLock lock(&mu_);
    paused_ = true;
  }
  void resume() {
    absl::MutexLock lock(&mu_);
    paused_ = false;
  }
  // Waits until no task is queued or running; false if that takes longer than the
  // bounded wait.
  bool drain() {
    absl::MutexLock lock(&mu_);
    auto idle = [this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return tasks_.empty() && running_ == 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&idle), kBoundedWait);
  }
  // How many tasks were handed to execute() so far.
  int64_t executed() {
    absl::MutexLock lock(&mu_);
    return executed_;
  }
  int64_t queued() {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(tasks_.size());
  }

 private:
  void work() {
    while (true) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return (!paused_ && !tasks_.empty()) || (stopping_ && tasks_.empty());
        };
        mu_.Await(absl::Condition(&ready));
        if (tasks_.empty()) return;  // stopping, and nothing left
        task = std::move(tasks_.front());
        tasks_.pop_front();
        running_ += 1;
      }
      task();
      absl::MutexLock lock(&mu_);
      running_ -= 1;
    }
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t executed_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
};

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_OBSERVE_OBSERVE_UTIL_H_
