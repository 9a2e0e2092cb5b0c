// Helpers shared by the storage tests.
#ifndef FLATSTORE_TESTS_STORAGE_TEST_UTIL_H_
#define FLATSTORE_TESTS_STORAGE_TEST_UTIL_H_

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
