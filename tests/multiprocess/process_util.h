// Helpers shared by the multi-process tests: child processes (fork + exec of a helper
// binary) with a line protocol over pipes, and bounded waits on their output and exit.
//
// Every wait here is bounded (kBoundedWait). A wait that runs out means a hung helper;
// the test reports it as a failure and kills the child, so a bug never turns into a ctest timeout.
// The helpers also arm alarm() on their own, so an orphaned helper cannot outlive a test.
#ifndef FLATSTORE_TESTS_MULTIPROCESS_PROCESS_UTIL_H_
#define FLATSTORE_TESTS_MULTIPROCESS_PROCESS_UTIL_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace flatstore::testing {

// A helper process whose stdin and stdout are pipes to the test; its stderr is the
// test's, so its diagnostics land in the test log. Destroying a running child kills it.
class Child {
 public:
  // Starts `args[0]` with `args`. The pipes are close-on-exec in the test, so a child
  // never holds another child's pipe ends (an EOF-based barrier would never end).
  static absl::StatusOr<std::unique_ptr<Child>> spawn(const std::vector<std::string>& args) {
    // A write to a child that died must be an error, not the end of the test.
    ::signal(SIGPIPE, SIG_IGN);
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0) return errnoStatus("pipe2");
    if (::pipe2(out, O_CLOEXEC) != 0) {
      ::close(in[0]);
      ::close(in[1]);
      return errnoStatus("pipe2");
    }
    // argv is built before fork: between fork and exec only async-signal-safe calls.
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) return errnoStatus("fork");
    if (pid == 0) {
      ::dup2(in[0], STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    auto child = std::unique_ptr<Child>(new Child(pid, in[1], out[0]));
    child->pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    return child;
  }

  ~Child() {
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
    closeInput();
    if (out_ >= 0) ::close(out_);
    if (pidfd_ >= 0) ::close(pidfd_);
  }

  pid_t pid() const { return pid_; }

  // Sends one line (a newline is appended).
  absl::Status send(const std::string& line) {
    std::string text = absl::StrCat(line, "\n");
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = ::write(in_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errnoStatus("write to child");
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  // Closes the child's stdin: it reads EOF.
  void closeInput() {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
  }

  // The next line the child prints, without its newline. DeadlineExceeded when none
  // comes within `timeout`; Unavailable when the child closed its stdout.
  absl::StatusOr<std::string> readLine(absl::Duration timeout = kBoundedWait) {
    absl::Time deadline = absl::Now() + timeout;
    while (true) {
      size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(absl::StrCat("child ", pid_, " printed no line within ",
                                                        absl::FormatDuration(timeout),
                                                        " (partial: '", buffer_, "')"));
      }
      pollfd p{out_, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errnoStatus("poll");
      if (r == 0) continue;
      char chunk[4096];
      ssize_t n = ::read(out_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errnoStatus("read from child");
      if (n == 0) {
        return absl::UnavailableError(
            absl::StrCat("child ", pid_, " closed its output (partial: '", buffer_, "')"));
      }
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  // Sends `command` and returns the child's answer line.
  absl::StatusOr<std::string> ask(const std::string& command,
                                  absl::Duration timeout = kBoundedWait) {
    if (absl::Status s = send(command); !s.ok()) return s;
    return readLine(timeout);
  }

  void kill(int signal) { ::kill(pid_, signal); }

  // Waits for the child to end, at most `timeout`; its wait status. DeadlineExceeded
  // when it is still running then (it is left running).
  absl::StatusOr<int> waitExit(absl::Duration timeout = kBoundedWait) {
    if (reaped_) return status_;
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};
      absl::Time deadline = absl::Now() + timeout;
      while (true) {
        absl::Duration left = deadline - absl::Now();
        if (left <= absl::ZeroDuration()) {
          return absl::DeadlineExceededError(
              absl::StrCat("child ", pid_, " still runs after ", absl::FormatDuration(timeout)));
        }
        int r = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
        if (r > 0) break;
        if (r < 0 && errno != EINTR) return errnoStatus("poll(pidfd)");
      }
    }
    // Without pidfd (older kernels) the helper's own alarm() bounds this wait.
    while (::waitpid(pid_, &status_, 0) < 0) {
      if (errno != EINTR) return errnoStatus("waitpid");
    }
    reaped_ = true;
    return status_;
  }

  // Waits until the child exited with code 0; an error naming how it ended otherwise.
  absl::Status waitSuccess(absl::Duration timeout = kBoundedWait) {
    absl::StatusOr<int> status = waitExit(timeout);
    if (!status.ok()) return status.status();
    if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("child ", pid_, " ", describeExit(*status)));
  }

  static std::string describeExit(int status) {
    if (WIFEXITED(status)) return absl::StrCat("exited with code ", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status));
    return absl::StrCat("ended with wait status ", status);
  }

 private:
  Child(pid_t pid, int in, int out) : pid_(pid), in_(in), out_(out) {}

  static absl::Status errnoStatus(const std::string& what) {
    return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
  }

  pid_t pid_;
  int in_;
  int out_;
  int pidfd_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string buffer_;
};

// The helper binary with `args`, as a Child that has printed "ready".
inline absl::StatusOr<std::unique_ptr<Child>> spawnHelper(std::vector<std::string> args) {
  args.insert(args.begin(), FLATSTORE_MP_HELPER);
  absl::StatusOr<std::unique_ptr<Child>> child = Child::spawn(args);
  if (!child.ok()) return child.status();
  absl::StatusOr<std::string> ready = (*child)->readLine();
  if (!ready.ok()) return ready.status();
  if (*ready != "ready") {
    return absl::InternalError(
        absl::StrCat("helper ", absl::StrJoin(args, " "), " said '", *ready, "', not 'ready'"));
  }
  return child;
}

// The lines of a text file (empty when it does not exist). A line cut short by a kill
// (no trailing newline) is left out.
inline std::vector<std::string> readLines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> lines = absl::StrSplit(all, '\n');
  lines.pop_back();  // after the last newline: empty, or an unfinished line
  return lines;
}

// `PRAGMA integrity_check` on `path` through the SQLite C API: "ok", or what it found.
inline std::string integrityCheck(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::string error = absl::StrCat("cannot open: ", sqlite3_errmsg(db));
    sqlite3_close(db);
    return error;
  }
  sqlite3_busy_timeout(db, 10000);
  std::vector<std::string> found;
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, nullptr);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(s, 0);
      found.emplace_back(text == nullptr ? "" : reinterpret_cast<const char*>(text));
    }
  }
  if (rc != SQLITE_DONE) found.push_back(absl::StrCat("error: ", sqlite3_errmsg(db)));
  sqlite3_finalize(s);
  sqlite3_close(db);
  return absl::StrJoin(found, "; ");
}

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_MULTIPROCESS_PROCESS_UTIL_H_
