// flatstore check: SQLite's integrity check, every object against its stored schema,
// index rows against their objects, key columns against keys, and the change log.
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/change_log.h"
#include "runtime/dynamic_table.h"
#include "tools/cli.h"
#include "tools/records.h"

namespace flatstore::cli {

namespace {

using internal::Connection;
using internal::DynamicTable;
using internal::Statement;

// Collects problems, one line each, printed as they are found.
class Problems {
 public:
  void add(absl::string_view where, absl::string_view what) {
    count_ += 1;
    std::printf("%.*s: %.*s\n", static_cast<int>(where.size()), where.data(),
                static_cast<int>(what.size()), what.data());
  }
  int64_t count() const { return count_; }

 private:
  int64_t count_ = 0;
};

// SQLite's integrity check (or quick_check) on a connection of its own, on its own
// thread: it reads every page, as the object scan does, and on a large file the two
// take about as long, so running them side by side halves the wall time. Its lines
// are printed after the scan's.
class IntegrityCheck {
 public:
  IntegrityCheck(const std::string& path, bool quick)
      : thread_([this, path, quick] { status_ = run(path, quick); }) {}

  // Waits for the check; its problem lines, or the error that stopped it.
  absl::StatusOr<std::vector<std::string>> result() {
    thread_.join();
    if (!status_.ok()) return status_;
    return std::move(lines_);
  }

 private:
  absl::Status run(const std::string& path, bool quick) {
    FLATSTORE_ASSIGN_OR_RETURN(auto c, openReadOnly(path));
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement s, c->prepare(quick ? "PRAGMA quick_check" : "PRAGMA integrity_check", path));
    while (true) {
      FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(path));
      if (!row) break;
      std::string_view line = s.columnText(0);
      if (line != "ok") lines_.emplace_back(line);
    }
    return absl::OkStatus();
  }

  // Written by the thread, read after join().
  std::vector<std::string> lines_;
  absl::Status status_;
  std::thread thread_;
};

// Whether column `i` of the current row of `s` holds `v`: `s.columnValue(i) == v`
// without copying text, as the scan asks it for every key column and index row.
bool columnHolds(const Statement& s, int i, const Value& v) {
  switch (sqlite3_column_type(s.get(), i)) {
    case SQLITE_INTEGER:
      return v.kind() == Value::Kind::kInteger && v.asInteger() == s.columnInt(i);
    case SQLITE_FLOAT:
      // A NaN reads as null (see Value::real).
      return v == Value::real(sqlite3_column_double(s.get(), i));
    case SQLITE_TEXT:
      return v.kind() == Value::Kind::kText && v.asText() == s.columnText(i);
    default:
      return v.isNull();
  }
}

// A cursor over one index table in rowid order, merged with the object scan.
struct IndexCursor {
  Statement stmt;
  bool valid = false;
  int64_t rowid = 0;
  absl::Status advance(std::string_view what) {
    FLATSTORE_ASSIGN_OR_RETURN(valid, stmt.step(what));
    if (valid) rowid = stmt.columnInt(0);
    return absl::OkStatus();
  }
};

absl::Status checkTable(Connection& c, const std::string& name, uint64_t last_sequence,
                        Problems& problems, Progress& progress, int64_t* objects) {
  absl::StatusOr<std::unique_ptr<DynamicTable>> loaded = DynamicTable::load(c, name);
  if (!loaded.ok()) {
    problems.add(absl::StrCat("table ", name), loaded.status().message());
    return absl::OkStatus();
  }
  DynamicTable& t = **loaded;
  const TableDescription& d = t.description();
  std::string quoted = internal::quoteIdentifier(name);
  std::string where = absl::StrCat("table ", name);
  std::string cols;
  for (const KeyColumn& k : d.key_columns) {
    absl::StrAppend(&cols, ", ", internal::quoteIdentifier(k.column));
  }
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement scan,
      c.prepare(absl::StrCat("SELECT rowid, p, vs", cols, " FROM ", quoted, " ORDER BY rowid"),
                where));
  std::vector<IndexCursor> cursors(d.indexes.size());
  for (size_t i = 0; i < d.indexes.size(); ++i) {
    FLATSTORE_ASSIGN_OR_RETURN(
        cursors[i].stmt,
        c.prepare(absl::StrCat("SELECT rowid, value FROM ",
                               internal::quoteIdentifier(d.indexes[i].table), " ORDER BY rowid"),
                  d.indexes[i].table));
    FLATSTORE_RETURN_IF_ERROR(cursors[i].advance(d.indexes[i].table));
  }
  auto extraRows = [&](size_t i, int64_t below) -> absl::Status {
    while (cursors[i].valid && cursors[i].rowid < below) {
      problems.add(absl::StrCat(where, " rowid ", cursors[i].rowid),
                   absl::StrCat("index ", av(d.indexes[i].field_path),
                                " has a row but the table has no such object"));
      FLATSTORE_RETURN_IF_ERROR(cursors[i].advance(d.indexes[i].table));
    }
    return absl::OkStatus();
  };
  std::vector<uint64_t> scratch;
  std::vector<Value> key, values;
  const int key_count = static_cast<int>(d.key_columns.size());
  while (true) {
    FLATSTORE_ASSIGN_OR_RETURN(bool row, scan.step(where));
    if (!row) break;
    int64_t rowid = scan.columnInt(0);
    // Only problems need the object's name: no string per object on a clean file.
    auto at = [&] { return absl::StrCat(where, " rowid ", rowid); };
    *objects += 1;
    progress.update(*objects);
    for (size_t i = 0; i < cursors.size(); ++i) FLATSTORE_RETURN_IF_ERROR(extraRows(i, rowid));
    Versionstamp vs = Versionstamp::fromPacked(scan.columnInt(2));
    if (vs.commitSequence() > last_sequence) {
      problems.add(at(), absl::StrCat("versionstamp ", vs.toString(),
                                      " is newer than the latest commit in the change log"));
    }
    absl::StatusOr<const uint8_t*> bytes = verifyAligned(t, scan.columnBlob(1), rowid, &scratch);
    if (!bytes.ok()) {
      problems.add(at(), absl::StrCat("object (", scan.columnBlob(1).size(),
                                      " bytes) fails verification against the stored schema"));
      // Its index rows cannot be checked; skip past them.
      for (size_t i = 0; i < cursors.size(); ++i) {
        if (cursors[i].valid && cursors[i].rowid == rowid) {
          FLATSTORE_RETURN_IF_ERROR(cursors[i].advance(d.indexes[i].table));
        }
      }
      continue;
    }
    key.clear();
    t.keyOf(*bytes, &key);
    for (int k = 0; k < key_count; ++k) {
      const Value& expected = key[static_cast<size_t>(k)];
      if (!columnHolds(scan, 3 + k, expected)) {
        const KeyColumn& column = d.key_columns[static_cast<size_t>(k)];
        problems.add(at(),
                     absl::StrCat("key column ", av(column.column), " (", av(column.field_path),
                                  ") holds ", scan.columnValue(3 + k).toString(),
                                  " but the object has ", expected.toString()));
      }
    }
    values.clear();
    t.indexValuesOf(*bytes, &values);
    for (size_t i = 0; i < cursors.size(); ++i) {
      const IndexDescription& x = d.indexes[i];
      IndexCursor& cur = cursors[i];
      if (cur.valid && cur.rowid == rowid) {
        if (!columnHolds(cur.stmt, 1, values[i])) {
          problems.add(at(), absl::StrCat("index ", av(x.field_path), " holds ",
                                          cur.stmt.columnValue(1).toString(),
                                          " but the object has ", values[i].toString()));
        }
        FLATSTORE_RETURN_IF_ERROR(cur.advance(x.table));
      } else if (!t.backfillNext()[i].has_value() || rowid < *t.backfillNext()[i]) {
        // An incomplete index lacks rows from its back-fill mark on; that is expected.
        problems.add(at(), absl::StrCat("index ", av(x.field_path), " has no row for the object"));
      }
    }
  }
  for (size_t i = 0; i < cursors.size(); ++i) {
    FLATSTORE_RETURN_IF_ERROR(extraRows(i, std::numeric_limits<int64_t>::max()));
  }
  return absl::OkStatus();
}

// The change log: records decode, sequences increase, last_vs never goes back and covers
// the records, and every record names a table the file has.
absl::Status checkLog(Connection& c, const std::set<int64_t>& table_ids, Problems& problems) {
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement s,
      c.prepare("SELECT seq, changes, last_vs FROM flatstore_changes ORDER BY seq", "change log"));
  int64_t previous_last = -1;
  while (true) {
    FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step("change log"));
    if (!row) break;
    int64_t seq = s.columnInt(0);
    int64_t last_vs = s.columnInt(2);
    std::string at = absl::StrCat("flatstore_changes seq ", seq);
    if (last_vs < previous_last) {
      problems.add(at, "its last versionstamp is older than the previous commit's");
    }
    previous_last = last_vs;
    absl::StatusOr<std::vector<internal::LogRecord>> records =
        internal::decodeLogRecords(s.columnBlob(1));
    if (!records.ok()) {
      problems.add(at, records.status().message());
      continue;
    }
    for (const internal::LogRecord& r : *records) {
      Versionstamp vs(static_cast<uint64_t>(seq), r.position);
      if (vs.packed() > last_vs) {
        problems.add(at, absl::StrCat("a change at ", vs.toString(),
                                      " is newer than the commit's last versionstamp"));
      }
      if (table_ids.count(r.table_id) == 0) {
        problems.add(at, absl::StrCat("a change names table id ", r.table_id,
                                      " which flatstore_tables does not have"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

int runCheck(const Args& args) {
  if (args.positional.size() != 1) return usage("check", "expects FILE");
  const std::string& file = args.positional[0];
  absl::StatusOr<std::unique_ptr<Connection>> opened = openReadOnly(file);
  if (!opened.ok()) return fail(file, opened.status());
  Connection& c = **opened;
  Problems problems;
  int64_t objects = 0;
  size_t tables = 0;
  bool quick = args.has("--quick");
  // Objects, indexes, keys and the change log, in one read transaction.
  auto scan = [&]() -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(c.exec("BEGIN", file));
    FLATSTORE_ASSIGN_OR_RETURN(internal::LogHead head, internal::readLogHead(c, file));
    std::set<int64_t> ids;
    int64_t total = 0;
    {
      FLATSTORE_ASSIGN_OR_RETURN(Statement s,
                                 c.prepare("SELECT rowid, name FROM flatstore_tables", file));
      while (true) {
        FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(file));
        if (!row) break;
        ids.insert(s.columnInt(0));
      }
    }
    FLATSTORE_ASSIGN_OR_RETURN(std::vector<std::string> names, internal::listTables(c));
    tables = names.size();
    Progress progress("check", "objects", 0, quiet(args));
    if (progress.enabled()) {
      for (const std::string& n : names) {
        FLATSTORE_ASSIGN_OR_RETURN(
            Statement s,
            c.prepare(absl::StrCat("SELECT count(*) FROM ", internal::quoteIdentifier(n)), n));
        FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(n));
        total += row ? s.columnInt(0) : 0;
      }
      progress.setTotal(total);
    }
    for (const std::string& n : names) {
      FLATSTORE_RETURN_IF_ERROR(checkTable(c, n, head.sequence, problems, progress, &objects));
    }
    progress.finish();
    return checkLog(c, ids, problems);
  };
  IntegrityCheck integrity(file, quick);
  absl::Status status = scan();
  c.rollbackQuietly();
  absl::StatusOr<std::vector<std::string>> sqlite = integrity.result();
  if (status.ok() && !sqlite.ok()) status = sqlite.status();
  std::fflush(stdout);
  if (!status.ok()) return fail(file, status);
  for (const std::string& line : *sqlite) {
    problems.add(quick ? "sqlite quick_check" : "sqlite integrity_check", line);
  }
  if (problems.count() > 0) {
    std::fprintf(stderr, "flatstore: %s: %lld problem%s\n", file.c_str(),
                 static_cast<long long>(problems.count()), problems.count() == 1 ? "" : "s");
    return kExitProblems;
  }
  if (!quiet(args)) {
    std::printf("ok: %lld objects in %zu tables\n", static_cast<long long>(objects), tables);
  }
  return kExitOk;
}

}  // namespace flatstore::cli
