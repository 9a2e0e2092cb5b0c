// Helpers for the tests that run the flatstore-codegen executable: spawning it with
// its output captured, fresh temporary directories, and file reading.
//
// Used from the main test thread only; runCodegen() forks, so it must not be called
// while other threads of the test process hold locks the child could need (the child
// only calls open, dup2, chdir and execv before it becomes flatstore-codegen).
#ifndef FLATSTORE_TESTS_CODEGEN_CODEGEN_RUNNER_H_
#define FLATSTORE_TESTS_CODEGEN_CODEGEN_RUNNER_H_

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#ifndef FLATSTORE_CODEGEN
#error "FLATSTORE_CODEGEN must be defined as the path of the flatstore-codegen executable"
#endif
#ifndef FLATSTORE_TEST_SOURCE_DIR
#error "FLATSTORE_TEST_SOURCE_DIR must be defined as the project's source directory"
#endif

namespace flatstore::codegen_test {

namespace fs = std::filesystem;

// The project's source directory: $FLATSTORE_SOURCE_DIR when the test runs under ctest,
// else the directory the test was configured from.
inline fs::path sourceDir() {
  const char* env = std::getenv("FLATSTORE_SOURCE_DIR");
  return fs::path(env != nullptr && *env != '\0' ? env : FLATSTORE_TEST_SOURCE_DIR);
}

inline std::string readFileOrDie(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void writeFileOrDie(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.flush().good()) << "cannot write " << path;
}

// Splits `text` into lines without their '\n'; a trailing newline ends the last line.
inline std::vector<std::string> splitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

// A fresh, empty directory under the test's temporary directory, removed with the
// object.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::path(::testing::TempDir()) / "flatstore_codegen_XXXXXX").string();
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp(" << pattern << ") failed: errno " << errno;
      return;
    }
    path_ = fs::path(buf.data());
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

struct RunResult {
  int exit_code = -1;  // -1 when the tool did not exit normally
  std::string out;     // its stdout
  std::string err;     // its stderr
};

// Runs flatstore-codegen with `args` in the working directory `cwd`, capturing its
// stdout and stderr in files under `scratch` (which must not be the output directory,
// so that "nothing was written" can be checked there).
inline RunResult runCodegen(const std::vector<std::string>& args, const fs::path& cwd,
                            const fs::path& scratch) {
  RunResult result;
  const std::string tool = FLATSTORE_CODEGEN;
  const std::string out_path = (scratch / "codegen.stdout").string();
  const std::string err_path = (scratch / "codegen.stderr").string();
  const std::string cwd_str = cwd.string();
  std::vector<std::string> argv_storage;
  argv_storage.push_back(tool);
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork failed: errno " << errno;
    return result;
  }
  if (pid == 0) {
    int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0 || err_fd < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0 ||
        ::chdir(cwd_str.c_str()) != 0) {
      ::_exit(126);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      ADD_FAILURE() << "waitpid failed: errno " << errno;
      return result;
    }
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  EXPECT_NE(result.exit_code, 126) << "could not set up the child process in " << cwd;
  EXPECT_NE(result.exit_code, 127) << "could not execute " << tool;
  result.out = readFileOrDie(out_path);
  result.err = readFileOrDie(err_path);
  return result;
}

// The regular files in `dir`, by name.
inline std::vector<std::string> filesIn(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

}  // namespace flatstore::codegen_test

#endif  // FLATSTORE_TESTS_CODEGEN_CODEGEN_RUNNER_H_
