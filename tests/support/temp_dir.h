// TempDir: a fresh directory for one test's files.
#ifndef FLATSTORE_TESTS_SUPPORT_TEMP_DIR_H_
#define FLATSTORE_TESTS_SUPPORT_TEMP_DIR_H_

#include <string>

namespace flatstore::testing {

// A fresh directory under the test temp dir, removed with everything in it at
// destruction. Failing to make it fails the test (non-fatally; path() is then a pattern
// nothing exists at, so opening a file there fails too).
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // The path of `name` inside the directory.
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_SUPPORT_TEMP_DIR_H_
