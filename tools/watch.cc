// flatstore watch: follows the change log and prints every change as a JSON line.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/change_log.h"
#include "runtime/dynamic_table.h"
#include "runtime/query_exec.h"
#include "tools/cli.h"
#include "tools/records.h"

namespace flatstore::cli {

namespace {

using internal::Connection;
using internal::DynamicTable;
using internal::Statement;

std::atomic<bool> g_stop{false};
void onSignal(int) { g_stop.store(true); }

// How often the log is polled when nothing new arrived. Commits by other processes
// show up in the log only; 20 ms matches the library's own watcher.
constexpr auto kPollInterval = std::chrono::milliseconds(20);

class Watcher {
 public:
  Watcher(Connection& c, std::optional<std::string> only) : c_(c), only_(std::move(only)) {}

  // Prints the changes committed after `after` (and, within commit `after` + 1.., after
  // `skip_through`); returns the last sequence printed.
  absl::StatusOr<uint64_t> poll(uint64_t after, Versionstamp skip_through) {
    FLATSTORE_RETURN_IF_ERROR(c_.exec("BEGIN", c_.path()));
    absl::StatusOr<uint64_t> r = [&]() -> absl::StatusOr<uint64_t> {
      FLATSTORE_ASSIGN_OR_RETURN(uint64_t pruned, internal::logPrunedThrough(c_));
      if (pruned > after) {
        std::fprintf(stderr,
                     "flatstore: %s: commits %llu to %llu left the change log before they "
                     "were read\n",
                     c_.path().c_str(), static_cast<unsigned long long>(after + 1),
                     static_cast<unsigned long long>(pruned));
      }
      FLATSTORE_ASSIGN_OR_RETURN(std::vector<internal::LogEntry> entries,
                                 internal::readLogAfter(c_, after));
      for (const internal::LogEntry& e : entries) {
        for (const internal::LogRecord& r : e.records) {
          Versionstamp vs(e.sequence, r.position);
          if (vs <= skip_through) continue;
          FLATSTORE_RETURN_IF_ERROR(print(vs, r));
        }
        after = e.sequence;
      }
      return after;
    }();
    c_.rollbackQuietly();
    std::fflush(stdout);
    return r;
  }

 private:
  absl::StatusOr<DynamicTable*> table(int64_t id, std::string* name) {
    auto it = names_.find(id);
    if (it == names_.end()) {
      FLATSTORE_ASSIGN_OR_RETURN(Statement s,
                                 c_.prepare("SELECT rowid, name FROM flatstore_tables", c_.path()));
      while (true) {
        FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(c_.path()));
        if (!row) break;
        names_[s.columnInt(0)] = std::string(s.columnText(1));
      }
      it = names_.find(id);
      if (it == names_.end()) {
        return absl::DataLossError(absl::StrCat("the change log names table id ", id,
                                                " which flatstore_tables does not have"));
      }
    }
    *name = it->second;
    if (only_.has_value() && *only_ != *name) return nullptr;
    auto t = tables_.find(*name);
    if (t == tables_.end()) {
      FLATSTORE_ASSIGN_OR_RETURN(auto loaded, DynamicTable::load(c_, *name));
      t = tables_.emplace(*name, std::move(loaded)).first;
    }
    return t->second.get();
  }

  absl::Status print(Versionstamp vs, const internal::LogRecord& r) {
    std::string name;
    FLATSTORE_ASSIGN_OR_RETURN(DynamicTable * t, table(r.table_id, &name));
    if (t == nullptr) return absl::OkStatus();
    std::string line =
        absl::StrCat("{\"versionstamp\":\"", vs.toString(), "\",\"table\":", jsonString(name),
                     ",\"rowid\":", r.rowid, ",\"op\":\"", r.deleted ? "delete" : "upsert", "\"");
    std::string object = "null";
    std::vector<Value> key = r.key;
    if (!r.deleted) {
      FLATSTORE_ASSIGN_OR_RETURN(
          Statement s, c_.prepare(absl::StrCat("SELECT p FROM ", internal::quoteIdentifier(name),
                                               " WHERE rowid = ?"),
                                  name));
      s.bindInt(1, r.rowid);
      FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(name));
      if (row) {
        FLATSTORE_ASSIGN_OR_RETURN(const uint8_t* bytes,
                                   verifyAligned(*t, s.columnBlob(0), r.rowid, &scratch_));
        FLATSTORE_ASSIGN_OR_RETURN(object, t->toJson(bytes));
        key.clear();
        t->keyOf(bytes, &key);
      }
    }
    if (!t->keyPaths().empty() && key.size() == t->keyPaths().size()) {
      absl::StrAppend(&line, ",\"key\":{");
      for (size_t i = 0; i < key.size(); ++i) {
        absl::StrAppend(&line, i == 0 ? "" : ",", jsonString(t->keyPaths()[i].path), ":",
                        jsonValue(key[i]));
      }
      absl::StrAppend(&line, "}");
    }
    absl::StrAppend(&line, ",\"object\":", object, "}\n");
    std::fputs(line.c_str(), stdout);
    return absl::OkStatus();
  }

  Connection& c_;
  std::optional<std::string> only_;
  std::map<int64_t, std::string> names_;
  std::map<std::string, std::unique_ptr<DynamicTable>> tables_;
  std::vector<uint64_t> scratch_;
};

}  // namespace

int runWatch(const Args& args) {
  if (args.positional.empty() || args.positional.size() > 2) {
    return usage("watch", "expects FILE [TABLE]");
  }
  const std::string& file = args.positional[0];
  absl::StatusOr<std::unique_ptr<Connection>> opened = openReadOnly(file);
  if (!opened.ok()) return fail(file, opened.status());
  Connection& c = **opened;
  std::optional<std::string> only;
  uint64_t after = 0;
  Versionstamp skip;
  absl::Status status = [&]() -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(c.exec("BEGIN", file));
    if (args.positional.size() == 2) {
      FLATSTORE_ASSIGN_OR_RETURN(std::vector<std::string> names, internal::listTables(c));
      FLATSTORE_ASSIGN_OR_RETURN(only, internal::resolveTableName(names, args.positional[1]));
    }
    if (auto since = args.value("--since"); since.has_value()) {
      FLATSTORE_ASSIGN_OR_RETURN(skip, Versionstamp::parse(*since));
      after = skip.commitSequence() == 0 ? 0 : skip.commitSequence() - 1;
    } else {
      FLATSTORE_ASSIGN_OR_RETURN(internal::LogHead head, internal::readLogHead(c, file));
      after = head.sequence;
    }
    return absl::OkStatus();
  }();
  c.rollbackQuietly();
  if (!status.ok()) return fail(file, status);
  struct sigaction sa {};
  sa.sa_handler = &onSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  Watcher watcher(c, only);
  while (!g_stop.load()) {
    absl::StatusOr<uint64_t> next = watcher.poll(after, skip);
    if (!next.ok()) return fail(file, next.status());
    if (std::ferror(stdout)) return kExitOk;  // the reader went away
    if (*next == after) std::this_thread::sleep_for(kPollInterval);
    after = *next;
  }
  return kExitOk;
}

}  // namespace flatstore::cli
