#include "tests/support/forwarding_vfs.h"

#include <sqlite3.h>

#include <atomic>

namespace flatstore::testing {
namespace {

VfsHooks hooks;
std::atomic<bool> installed{false};

// The file SQLite sees: our methods, then the default VFS's file right behind it.
struct ForwardingFile {
  sqlite3_file base;
  sqlite3_file* real;
};

sqlite3_file* realOf(sqlite3_file* f) { return reinterpret_cast<ForwardingFile*>(f)->real; }
const sqlite3_io_methods& m(sqlite3_file* f) { return *realOf(f)->pMethods; }

int fwdSync(sqlite3_file* f, int flags) {
  int rc = m(f).xSync(realOf(f), flags);
  return hooks.after_sync != nullptr ? hooks.after_sync(rc) : rc;
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
    fwdSync,
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

sqlite3_vfs forwarding_vfs;

int fwdOpen(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  f->pMethods = nullptr;  // SQLite closes a file whose pMethods is set
  if (hooks.before_open != nullptr) {
    if (int rc = hooks.before_open(flags); rc != SQLITE_OK) return rc;
  }
  auto* real_vfs = static_cast<sqlite3_vfs*>(vfs->pAppData);
  auto* s = reinterpret_cast<ForwardingFile*>(f);
  s->real = reinterpret_cast<sqlite3_file*>(s + 1);
  s->real->pMethods = nullptr;
  int rc = real_vfs->xOpen(real_vfs, name, s->real, flags, out_flags);
  // SQLite closes a file whose pMethods is set, even when the open failed.
  f->pMethods = s->real->pMethods != nullptr ? &kMethods : nullptr;
  return rc;
}

}  // namespace

bool installForwardingVfs(const char* name, VfsHooks with) {
  if (installed.load()) return false;
  sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
  if (real == nullptr) return false;
  hooks = with;
  // Everything but xOpen is the default VFS's own: the rest does not depend on the file
  // objects, and the unix VFS's other calls do not read pAppData.
  forwarding_vfs = *real;
  forwarding_vfs.zName = name;
  forwarding_vfs.szOsFile = static_cast<int>(sizeof(ForwardingFile)) + real->szOsFile;
  forwarding_vfs.pNext = nullptr;
  forwarding_vfs.pAppData = real;
  forwarding_vfs.xOpen = fwdOpen;
  if (sqlite3_vfs_register(&forwarding_vfs, /*makeDflt=*/1) != SQLITE_OK) return false;
  installed.store(true);
  return true;
}

}  // namespace flatstore::testing
