// Helpers shared by the storage tests.
#ifndef FLATSTORE_TESTS_STORAGE_TEST_UTIL_H_
#define FLATSTORE_TESTS_STORAGE_TEST_UTIL_H_

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace flatstore::testing {

// A fresh directory under the test temp dir, removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::string base = ::testing::TempDir();
    std::string pattern =
        base + (base.empty() || base.back() == '/' ? "" : "/") + "flatstore-XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

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

inline const absl::Status& statusOf(const absl::Status& s) { return s; }
template <class T>
const absl::Status& statusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace flatstore::testing

#define ASSERT_OK(expr)                                           \
  do {                                                            \
    const absl::Status _s = ::flatstore::testing::statusOf(expr); \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s;                  \
  } while (false)
#define EXPECT_OK(expr)                                           \
  do {                                                            \
    const absl::Status _s = ::flatstore::testing::statusOf(expr); \
    EXPECT_TRUE(_s.ok()) << #expr << ": " << _s;                  \
  } while (false)

#endif  // FLATSTORE_TESTS_STORAGE_TEST_UTIL_H_
