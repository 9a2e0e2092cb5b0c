#include "tests/bench/slow_sync_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <thread>

#include "tests/support/forwarding_vfs.h"

namespace flatstore::bench {
namespace {

std::atomic<int64_t> delay_us{0};
std::atomic<int64_t> delayed_syncs{0};
std::atomic<bool> installed{false};

int slowSync(int rc) {
  int64_t us = delay_us.load(std::memory_order_relaxed);
  if (rc == SQLITE_OK && us > 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(us));
    delayed_syncs.fetch_add(1, std::memory_order_relaxed);
  }
  return rc;
}

}  // namespace

bool installSlowSyncVfs(std::chrono::microseconds delay) {
  delay_us.store(delay.count(), std::memory_order_relaxed);
  if (installed.load()) return true;
  if (!testing::installForwardingVfs("flatstore-bench-slow-sync", {.after_sync = slowSync})) {
    return false;
  }
  installed.store(true);
  return true;
}

int64_t slowSyncCount() { return delayed_syncs.load(std::memory_order_relaxed); }

}  // namespace flatstore::bench
