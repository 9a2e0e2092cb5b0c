// A SQLite VFS for the benchmark that makes every sync slower by a fixed time, to show
// how the systems compare on a disk whose flush costs more than this machine's.
//
// It forwards every call to SQLite's default VFS and, after each xSync of a database,
// WAL or journal file returns, sleeps for the given delay, as a slow flush would block
// the calling thread. Installed as the default VFS, it applies to every SQLite
// connection in the process: flatstore's, SQLiteCpp's and the C API peers'. LMDB syncs
// with its own calls and is not affected.
#pragma once

#include <chrono>
#include <cstdint>

namespace flatstore::bench {

// Registers the slow-sync VFS as the process's default; later calls change the delay.
// Returns false (and changes nothing) when SQLite has no default VFS to wrap.
bool installSlowSyncVfs(std::chrono::microseconds delay);

// How many syncs the slow-sync VFS has delayed since it was installed.
int64_t slowSyncCount();

}  // namespace flatstore::bench
