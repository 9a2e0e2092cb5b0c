#include "tests/bench/slow_sync_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <thread>

namespace flatstore::bench {
namespace {

std::atomic<int64_t> delay_us{0};
std::atomic<int64_t> delayed_syncs{0};

// The file SQLite sees: our methods, then the default VFS's file right behind it.
struct SlowFile {
  sqlite3_file base;
  sqlite3_file* real;
};

sqlite3_file* realOf(sqlite3_file* f) { return reinterpret_cast<SlowFile*>(f)->real; }
const sqlite3_io_methods& m(sqlite3_file* f) { return *realOf(f)->pMethods; }

int slowSync(sqlite3_file* f, int flags) {
  int rc = m(f).xSync(realOf(f), flags);
  int64_t us = delay_us.load(std::memory_order_relaxed);
  if (rc == SQLITE_OK && us > 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(us));
    delayed_syncs.fetch_add(1, std::memory_order_relaxed);
  }
  return rc;
}

int fwdClose(sqlite3_file* f) { return m(f).xClose(realOf(f)); }
int fwdRead(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return m(f).xRead(realOf(f), buf, n, off);
}
int fwdWrite(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  return m(f).xWrite(realOf(f), buf, n, off);
}
int fwdTruncate(sqlite3_file* f, sqlite3_int64 size) { return m(f).xTruncate(realOf(f), size); }
int fwdFileSize(sqlite3_file* f, sqlite3_int64* size) { return m(f).xFileSize(realOf(f), size); }
int fwdLock(sqlite3_file* f, int level) { return m(f).xLock(realOf(f), level); }
int fwdUnlock(sqlite3_file* f, int level) { return m(f).xUnlock(realOf(f), level); }
int fwdCheckReservedLock(sqlite3_file* f, int* out) {
  return m(f).xCheckReservedLock(realOf(f), out);
}
int fwdFileControl(sqlite3_file* f, int op, void* arg) {
  return m(f).xFileControl(realOf(f), op, arg);
}
int fwdSectorSize(sqlite3_file* f) { return m(f).xSectorSize(realOf(f)); }
int fwdDeviceCharacteristics(sqlite3_file* f) { return m(f).xDeviceCharacteristics(realOf(f)); }
int fwdShmMap(sqlite3_file* f, int page, int size, int extend, void volatile** out) {
  if (m(f).iVersion < 2) return SQLITE_IOERR_SHMMAP;
  return m(f).xShmMap(realOf(f), page, size, extend, out);
}
int fwdShmLock(sqlite3_file* f, int offset, int n, int flags) {
  if (m(f).iVersion < 2) return SQLITE_IOERR_SHMLOCK;
  return m(f).xShmLock(realOf(f), offset, n, flags);
}
void fwdShmBarrier(sqlite3_file* f) {
  if (m(f).iVersion >= 2) m(f).xShmBarrier(realOf(f));
}
int fwdShmUnmap(sqlite3_file* f, int remove) {
  if (m(f).iVersion < 2) return SQLITE_OK;
  return m(f).xShmUnmap(realOf(f), remove);
}
int fwdFetch(sqlite3_file* f, sqlite3_int64 off, int n, void** out) {
  if (m(f).iVersion < 3) {
    *out = nullptr;  // no mapping: SQLite reads the page instead
    return SQLITE_OK;
  }
  return m(f).xFetch(realOf(f), off, n, out);
}
int fwdUnfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  if (m(f).iVersion < 3) return SQLITE_OK;
  return m(f).xUnfetch(realOf(f), off, p);
}

const sqlite3_io_methods kMethods = {
    3,
    fwdClose,
    fwdRead,
    fwdWrite,
    fwdTruncate,
    slowSync,
    fwdFileSize,
    fwdLock,
    fwdUnlock,
    fwdCheckReservedLock,
    fwdFileControl,
    fwdSectorSize,
    fwdDeviceCharacteristics,
    fwdShmMap,
    fwdShmLock,
    fwdShmBarrier,
    fwdShmUnmap,
    fwdFetch,
    fwdUnfetch,
};

sqlite3_vfs slow_vfs;

int slowOpen(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* real_vfs = static_cast<sqlite3_vfs*>(vfs->pAppData);
  auto* s = reinterpret_cast<SlowFile*>(f);
  s->real = reinterpret_cast<sqlite3_file*>(s + 1);
  s->real->pMethods = nullptr;
  int rc = real_vfs->xOpen(real_vfs, name, s->real, flags, out_flags);
  // SQLite closes a file whose pMethods is set, even when the open failed.
  f->pMethods = s->real->pMethods != nullptr ? &kMethods : nullptr;
  return rc;
}

}  // namespace

bool installSlowSyncVfs(std::chrono::microseconds delay) {
  delay_us.store(delay.count(), std::memory_order_relaxed);
  if (sqlite3_vfs_find("flatstore-bench-slow-sync") != nullptr) return true;
  sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
  if (real == nullptr) return false;
  // Everything but xOpen is the default VFS's own: the rest does not depend on the file
  // objects, and the unix VFS's other calls do not read pAppData.
  slow_vfs = *real;
  slow_vfs.zName = "flatstore-bench-slow-sync";
  slow_vfs.szOsFile = static_cast<int>(sizeof(SlowFile)) + real->szOsFile;
  slow_vfs.pNext = nullptr;
  slow_vfs.pAppData = real;
  slow_vfs.xOpen = slowOpen;
  return sqlite3_vfs_register(&slow_vfs, /*makeDflt=*/1) == SQLITE_OK;
}

int64_t slowSyncCount() { return delayed_syncs.load(std::memory_order_relaxed); }

}  // namespace flatstore::bench
