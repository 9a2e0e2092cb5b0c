#include "tools/cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "flatstore/status.h"

namespace flatstore::cli {

std::optional<std::string> Args::value(const std::string& option) const {
  auto it = options.find(option);
  if (it == options.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<Args> parseArgs(const std::vector<std::string>& argv,
                               const std::vector<std::string>& with_value,
                               const std::vector<std::string>& flags) {
  Args out;
  auto known = [](const std::vector<std::string>& list, const std::string& name) {
    return std::find(list.begin(), list.end(), name) != list.end();
  };
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "-" || a.empty() || a[0] != '-') {
      out.positional.push_back(a);
      continue;
    }
    std::string name = a;
    std::optional<std::string> inline_value;
    if (size_t eq = a.find('='); eq != std::string::npos && absl::StartsWith(a, "--")) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
    }
    if (name == "--help" || name == "-h" || name == "--quiet" || name == "-q" ||
        known(flags, name)) {
      if (name == "-h") name = "--help";
      if (name == "-q") name = "--quiet";
      out.options.emplace(name, "");
      continue;
    }
    if (!known(with_value, name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option ", name));
    }
    std::string value;
    if (inline_value.has_value()) {
      value = *inline_value;
    } else if (i + 1 < argv.size()) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("option ", name, " needs a value"));
    }
    if (name == "--order-by" && i + 1 < argv.size() &&
        (argv[i + 1] == "desc" || argv[i + 1] == "asc")) {
      absl::StrAppend(&value, " ", argv[++i]);
    }
    out.options.emplace(name, value);
  }
  return out;
}

int fail(std::string_view file, const absl::Status& status) {
  std::string message(status.message());
  if (!file.empty()) {
    std::string prefix = absl::StrCat(av(file), ": ");
    if (absl::StartsWith(message, prefix)) message = message.substr(prefix.size());
    std::fprintf(stderr, "flatstore: %.*s: %s\n", static_cast<int>(file.size()), file.data(),
                 message.c_str());
  } else {
    std::fprintf(stderr, "flatstore: %s\n", message.c_str());
  }
  return kExitError;
}

int usage(std::string_view command, std::string_view message) {
  std::fprintf(stderr, "flatstore %.*s: %.*s\nTry 'flatstore %.*s --help'.\n",
               static_cast<int>(command.size()), command.data(), static_cast<int>(message.size()),
               message.data(), static_cast<int>(command.size()), command.data());
  return kExitError;
}

absl::StatusOr<std::unique_ptr<internal::Connection>> openReadOnly(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return absl::NotFoundError("no such file");
  if (S_ISDIR(st.st_mode)) return absl::InvalidArgumentError("is a directory");
  FLATSTORE_ASSIGN_OR_RETURN(auto c, internal::Connection::open(path, /*read_only=*/true));
  c->setBusyTimeout(absl::Seconds(10));
  // Scans read every page once: mapping the file saves a copy per page (reads through
  // the mapping never write; SQLite caps the size at its compile-time limit).
  FLATSTORE_RETURN_IF_ERROR(c->exec("PRAGMA mmap_size = 17179869184", path));
  absl::StatusOr<internal::Statement> s =
      c->prepare("SELECT value FROM flatstore_meta WHERE key = 'format'", path);
  if (!s.ok()) {
    if (absl::StrContains(s.status().message(), "no such table")) {
      return absl::FailedPreconditionError("not a flatstore file (it has no flatstore_meta)");
    }
    return s.status();
  }
  return c;
}

std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out.push_back(ch);
        }
    }
  }
  out += "\"";
  return out;
}

std::string jsonValue(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      return "null";
    case Value::Kind::kInteger:
      return absl::StrCat(v.asInteger());
    case Value::Kind::kReal:
      if (!std::isfinite(v.asReal())) return "null";
      return absl::StrFormat("%.17g", v.asReal());
    case Value::Kind::kText:
      return jsonString(v.asText());
  }
  return "null";
}

Progress::Progress(std::string label, std::string unit, int64_t total, bool quiet)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      enabled_(!quiet && ::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() {
  if (drawn_ && !finished_) std::fputc('\n', stderr);
}

void Progress::update(int64_t done) {
  done_ = done;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw();
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  draw();
  std::fputc('\n', stderr);
  finished_ = true;
}

void Progress::draw() {
  drawn_ = true;
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = seconds > 0 ? static_cast<double>(done_) / seconds : 0;
  constexpr int kWidth = 30;
  double fraction =
      total_ > 0 ? std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_)) : 0;
  int filled = static_cast<int>(fraction * kWidth);
  std::string bar = std::string(static_cast<size_t>(filled), '#') +
                    std::string(static_cast<size_t>(kWidth - filled), '.');
  std::string eta = "--";
  if (rate > 0 && total_ > 0) {
    int64_t left = static_cast<int64_t>(static_cast<double>(total_ - done_) / rate);
    eta = absl::StrFormat("%d:%02d", left / 60, left % 60);
  }
  std::fprintf(stderr, "\r%s [%s] %3d%% %lld/%lld %s, %.0f %s/s, %s left\033[K", label_.c_str(),
               bar.c_str(), static_cast<int>(fraction * 100), static_cast<long long>(done_),
               static_cast<long long>(total_), unit_.c_str(), rate, unit_.c_str(), eta.c_str());
  std::fflush(stderr);
}

}  // namespace flatstore::cli
