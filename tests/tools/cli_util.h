// Helpers of the tool tests: run the `flatstore` binary with bounded waits, and write
// deterministic files through the library.
#ifndef FLATSTORE_TESTS_TOOLS_CLI_UTIL_H_
#define FLATSTORE_TESTS_TOOLS_CLI_UTIL_H_

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gtest/gtest.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"
#include "tests/tools/seed.h"

namespace flatstore::testing {

inline constexpr absl::Duration kCliWait = absl::Seconds(120);

struct CliResult {
  int exit_code = -1;  // -1: did not exit normally
  std::string out;
  std::string err;
};

inline std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Runs `flatstore args...` with standard input from `input` (a file; empty: /dev/null)
// and its output in files under `dir`. Fails the test when it runs longer than
// kCliWait (and kills it).
inline CliResult runCli(const TempDir& dir, const std::vector<std::string>& args,
                        const std::string& input = "") {
  static int counter = 0;
  std::string out_path = dir.file(absl::StrCat("cli-out-", counter));
  std::string err_path = dir.file(absl::StrCat("cli-err-", counter++));
  std::vector<std::string> full = {FLATSTORE_CLI};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string in_path = input.empty() ? "/dev/null" : input;
  pid_t pid = ::fork();
  if (pid == 0) {
    int in = ::open(in_path.c_str(), O_RDONLY);
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  CliResult r;
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  pollfd p{pidfd, POLLIN, 0};
  int ready = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(kCliWait)));
  ::close(pidfd);
  if (ready <= 0) {
    ::kill(pid, SIGKILL);
    ADD_FAILURE() << "flatstore " << args.front() << " still runs after "
                  << absl::FormatDuration(kCliWait);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = readFile(out_path);
  r.err = readFile(err_path);
  return r;
}

// The rowids of dump output, in order.
inline std::vector<int64_t> dumpRowids(const std::string& out) {
  std::vector<int64_t> ids;
  std::regex re("\"rowid\":([0-9]+)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator();
       ++it) {
    ids.push_back(std::stoll((*it)[1]));
  }
  return ids;
}

// Writes `monsters` Monsters, `events` Events and a few dictionary entries to a new
// file at `path`, in deterministic commits.
inline void seedFile(const std::string& path, int monsters, int events) {
  using namespace test::game;
  auto ws = Workspace::open(path);
  ASSERT_TRUE(ws.ok()) << ws.status();
  for (int start = 0; start < monsters; start += 50) {
    auto r = (*ws)->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
      for (int i = start; i < std::min(monsters, start + 50); ++i) {
        FLATSTORE_RETURN_IF_ERROR(txn.submit(seedMonster(i)).status());
      }
      return absl::OkStatus();
    });
    ASSERT_TRUE(r.ok()) << r.status();
  }
  auto r = (*ws)->performChangesAndWait<Event>([&](TransactionContext& txn) -> absl::Status {
    for (int i = 0; i < events; ++i) {
      auto e = EventChangeRequest::creation();
      e.setKind(absl::StrCat("k", i % 3)).setAt(i * 10);
      FLATSTORE_RETURN_IF_ERROR(txn.submit(e).status());
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(r.ok()) << r.status();
  Dictionary& d = (*ws)->dictionary();
  ASSERT_TRUE(d.setString("greeting", "hello \"world\"\n").ok());
  ASSERT_TRUE(d.setInteger("answer", 42).ok());
  ASSERT_TRUE(d.setDouble("ratio", 0.25).ok());
  const uint8_t bytes[] = {0, 1, 2, 255};
  ASSERT_TRUE(d.setBytes("blob", bytes).ok());
  auto boss = (*ws)->get<Monster>(std::string_view("m-1"), 1);
  ASSERT_TRUE(boss.ok() && *boss != nullptr);
  ASSERT_TRUE(d.setObject("boss", **boss).ok());
  ASSERT_TRUE((*ws)->shutdown().ok());
}

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_TOOLS_CLI_UTIL_H_
