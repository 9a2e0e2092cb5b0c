// A SQLite VFS that forwards every call to the process's default VFS, with hooks that
// slow down or fail chosen calls: the benchmark's slow disk (tests/bench/slow_sync_vfs.h)
// and the tests' I/O faults (fault_vfs.h).
//
// Installed as the default VFS, it applies to every SQLite connection the process opens
// afterwards. Hooks are plain function pointers, set once at installation; they run on
// whatever thread SQLite calls the VFS from, so they must be thread-safe.
#ifndef FLATSTORE_TESTS_SUPPORT_FORWARDING_VFS_H_
#define FLATSTORE_TESTS_SUPPORT_FORWARDING_VFS_H_

namespace flatstore::testing {

struct VfsHooks {
  // Before an xOpen with SQLite's open `flags` (SQLITE_OPEN_MAIN_DB ...): SQLITE_OK to
  // make it, or the result SQLite gets instead.
  int (*before_open)(int flags) = nullptr;
  // After a real xSync returned `rc`: the result SQLite gets.
  int (*after_sync)(int rc) = nullptr;
};

// Registers a VFS named `name` that wraps the current default VFS and calls `hooks`,
// and makes it the default. Returns false (changing nothing) when SQLite has no default
// VFS, or when a forwarding VFS was installed already.
bool installForwardingVfs(const char* name, VfsHooks hooks);

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_SUPPORT_FORWARDING_VFS_H_
