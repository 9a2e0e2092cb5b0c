// FaultVfs: I/O errors on demand, for tests of what callers see when the disk fails.
//
//   ASSERT_TRUE(FaultVfs::install());   // before the workspace opens its connections
//   FaultVfs::failSyncs(true);          // every sync fails from now on, as fsync's EIO
//
// It is the forwarding VFS (forwarding_vfs.h) installed as the process's default, so it
// applies to every connection opened after install(); with no fault set it only
// forwards. Faults can be limited to one thread by its name (pthread_setname_np), such
// as the workspace's commit watcher, "flatstore-watch".
//
// Thread-safety: all functions are thread-safe.
#ifndef FLATSTORE_TESTS_SUPPORT_FAULT_VFS_H_
#define FLATSTORE_TESTS_SUPPORT_FAULT_VFS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace flatstore::testing {

class FaultVfs {
 public:
  // Installs the VFS once per process; true when it is installed.
  static bool install();

  // While on, every xSync (of a database, WAL or journal file) runs and then reports
  // SQLITE_IOERR_FSYNC, as a sync that returned EIO.
  static void failSyncs(bool on);
  // Syncs failed so far; waits until `n` did, or `timeout` passed (false then).
  static int64_t failedSyncs();
  static bool awaitFailedSyncs(int64_t n, absl::Duration timeout);

  // Counts the opens of main database files on the threads named `name` ("" for none),
  // and while failWatchedThread(true) makes them fail with SQLITE_CANTOPEN.
  static void watchThread(const std::string& name);
  static void failWatchedThread(bool fail);
  // Opens on the watched thread that failed, and that succeeded, so far; waiting until
  // `n` did, or `timeout` passed (false then).
  static int64_t failedOpens();
  static bool awaitFailedOpens(int64_t n, absl::Duration timeout);
  static bool awaitOpens(int64_t n, absl::Duration timeout);
};

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_SUPPORT_FAULT_VFS_H_
