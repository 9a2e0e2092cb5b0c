#include "tests/support/fault_vfs.h"

#include <pthread.h>
#include <sqlite3.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "tests/support/forwarding_vfs.h"

namespace flatstore::testing {
namespace {

struct State {
  absl::Mutex mu;
  bool fail_syncs ABSL_GUARDED_BY(mu) = false;
  int64_t failed_syncs ABSL_GUARDED_BY(mu) = 0;
  std::string thread ABSL_GUARDED_BY(mu);
  bool fail_thread ABSL_GUARDED_BY(mu) = false;
  int64_t failed_opens ABSL_GUARDED_BY(mu) = 0;
  int64_t opens ABSL_GUARDED_BY(mu) = 0;
};

State& state() {
  static State* s = new State;
  return *s;
}

std::string currentThreadName() {
  char name[32] = {};
  pthread_getname_np(pthread_self(), name, sizeof(name));
  return name;
}

int beforeOpen(int flags) {
  State& s = state();
  // Only main database files: the -wal and -shm files are opened on first use, by
  // whichever thread that is.
  if ((flags & SQLITE_OPEN_MAIN_DB) == 0) return SQLITE_OK;
  std::string name = currentThreadName();
  absl::MutexLock lock(&s.mu);
  if (s.thread.empty() || name != s.thread) return SQLITE_OK;
  if (!s.fail_thread) {
    s.opens += 1;
    return SQLITE_OK;
  }
  s.failed_opens += 1;
  return SQLITE_CANTOPEN;
}

int afterSync(int rc) {
  State& s = state();
  absl::MutexLock lock(&s.mu);
  if (rc != SQLITE_OK || !s.fail_syncs) return rc;
  s.failed_syncs += 1;
  return SQLITE_IOERR_FSYNC;
}

bool awaitCount(const int64_t* counter, int64_t n, absl::Duration timeout) {
  State& s = state();
  absl::MutexLock lock(&s.mu);
  auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) { return *counter >= n; };
  return s.mu.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

}  // namespace

bool FaultVfs::install() {
  static const bool installed = installForwardingVfs(
      "flatstore-test-faults", {.before_open = beforeOpen, .after_sync = afterSync});
  return installed;
}

void FaultVfs::failSyncs(bool on) {
  absl::MutexLock lock(&state().mu);
  state().fail_syncs = on;
}

int64_t FaultVfs::failedSyncs() {
  absl::MutexLock lock(&state().mu);
  return state().failed_syncs;
}

bool FaultVfs::awaitFailedSyncs(int64_t n, absl::Duration timeout) {
  return awaitCount(&state().failed_syncs, n, timeout);
}

void FaultVfs::watchThread(const std::string& name) {
  absl::MutexLock lock(&state().mu);
  state().thread = name;
}

void FaultVfs::failWatchedThread(bool fail) {
  absl::MutexLock lock(&state().mu);
  state().fail_thread = fail;
}

int64_t FaultVfs::failedOpens() {
  absl::MutexLock lock(&state().mu);
  return state().failed_opens;
}

bool FaultVfs::awaitFailedOpens(int64_t n, absl::Duration timeout) {
  return awaitCount(&state().failed_opens, n, timeout);
}

bool FaultVfs::awaitOpens(int64_t n, absl::Duration timeout) {
  return awaitCount(&state().opens, n, timeout);
}

}  // namespace flatstore::testing
