// A small real file system, for tests of a full disk.
#ifndef FLATSTORE_TESTS_SUPPORT_SMALL_DISK_H_
#define FLATSTORE_TESTS_SUPPORT_SMALL_DISK_H_

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace flatstore::testing {

// A real, small file system (a tmpfs of `bytes`) mounted on a fresh directory, for
// tests of a full disk. Mounting needs privileges: mounted() is false without them, and
// such tests skip. fill() takes every free byte with a filler file, release() frees it.
class SmallDisk {
 public:
  explicit SmallDisk(int64_t bytes) {
    std::string options = "size=" + std::to_string(bytes);
    mounted_ = ::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, options.c_str()) == 0;
  }
  ~SmallDisk() {
    if (!mounted_) return;
    release();
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path(), ec)) {
      std::filesystem::remove_all(entry.path(), ec);
    }
    ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  std::string file(const std::string& name) const { return dir_.file(name); }

  // Writes a filler file until the disk is full.
  void fill() {
    int fd = ::open(dir_.file("filler").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ASSERT_GE(fd, 0);
    std::string block(4096, 'f');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    std::string byte(1, 'f');
    while (::write(fd, byte.data(), 1) > 0) {
    }
    ::close(fd);
  }
  void release() { ::unlink(dir_.file("filler").c_str()); }

 private:
  TempDir dir_;
  bool mounted_ = false;
};

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_SUPPORT_SMALL_DISK_H_
