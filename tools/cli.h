// Shared pieces of the `flatstore` command-line tool: argument parsing, error
// reporting, read-only access to a file, JSON text and the progress bar.
//
// Thread-safety: the tool is single-threaded; nothing here is shared between threads.
#ifndef FLATSTORE_TOOLS_CLI_H_
#define FLATSTORE_TOOLS_CLI_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flatstore/value.h"
#include "runtime/absl_compat.h"
#include "runtime/sqlite.h"

namespace flatstore::cli {

using internal::av;

// Exit codes: kExitProblems for a check that found problems or an import that rejected
// lines; kExitError for usage errors and errors that stopped the command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitProblems = 1;
inline constexpr int kExitError = 2;

// A command line after the command name: positional arguments, options with a value
// (`--limit 5` or `--limit=5`), flags, and repeated options in order.
struct Args {
  std::vector<std::string> positional;
  std::multimap<std::string, std::string> options;
  bool has(const std::string& flag) const { return options.count(flag) != 0; }
  std::optional<std::string> value(const std::string& option) const;
};

// Parses `argv` for a command whose options taking a value are `with_value` and whose
// flags are `flags` (--help and --quiet are always known). InvalidArgument naming an
// unknown option or a missing value. `--order-by PATH desc` takes the optional
// direction word that follows PATH into the value ("PATH desc").
absl::StatusOr<Args> parseArgs(const std::vector<std::string>& argv,
                               const std::vector<std::string>& with_value,
                               const std::vector<std::string>& flags);

// Prints "flatstore: FILE: message" (or "flatstore: message" without a file) to standard
// error and returns kExitError. A message that already starts with the file name is
// not prefixed twice.
int fail(std::string_view file, const absl::Status& status);
int usage(std::string_view command, std::string_view message);

// Opens an existing flatstore file read-only (it is never written, and other processes
// may write meanwhile). NotFound when missing; FailedPrecondition when it is not a
// flatstore file.
absl::StatusOr<std::unique_ptr<internal::Connection>> openReadOnly(const std::string& path);

// JSON text.
std::string jsonString(std::string_view s);
std::string jsonValue(const Value& v);

// A progress bar with rate and time left, drawn on standard error when it is a
// terminal and `quiet` is false; nothing otherwise.
class Progress {
 public:
  Progress(std::string label, std::string unit, int64_t total, bool quiet);
  ~Progress();
  // Updates the count done; redraws at most ten times a second.
  void update(int64_t done);
  void setTotal(int64_t total) { total_ = total; }
  // Draws the final state and ends the line.
  void finish();
  bool enabled() const { return enabled_; }

 private:
  void draw();
  std::string label_;
  std::string unit_;
  int64_t total_;
  int64_t done_ = 0;
  bool enabled_;
  bool drawn_ = false;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// Whether `--quiet` was given.
inline bool quiet(const Args& a) { return a.has("--quiet"); }

// Commands. Each returns the process's exit code.
int runInspect(const Args& args);
int runSchema(const Args& args);
int runDump(const Args& args);
int runCheck(const Args& args);
int runExport(const Args& args);
int runImport(const Args& args);
int runBackup(const Args& args);
int runWatch(const Args& args);

}  // namespace flatstore::cli

#endif  // FLATSTORE_TOOLS_CLI_H_
