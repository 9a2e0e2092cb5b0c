// flatstore dump and flatstore export.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "flatstore/status.h"
#include "runtime/catalog.h"
#include "runtime/query_exec.h"
#include "runtime/query_parse.h"
#include "tools/cli.h"
#include "tools/records.h"

namespace flatstore::cli {

using internal::Connection;
using internal::DynamicTable;
using internal::Statement;

absl::StatusOr<std::string> recordJson(DynamicTable& table, int64_t rowid,
                                       Versionstamp versionstamp, const uint8_t* bytes) {
  FLATSTORE_ASSIGN_OR_RETURN(std::string object, table.toJson(bytes));
  std::string out =
      absl::StrCat("{\"rowid\":", rowid, ",\"versionstamp\":\"", versionstamp.toString(), "\"");
  if (!table.keyPaths().empty()) {
    absl::StrAppend(&out, ",\"key\":{");
    for (size_t i = 0; i < table.keyPaths().size(); ++i) {
      const internal::FieldPath& p = table.keyPaths()[i];
      absl::StrAppend(&out, i == 0 ? "" : ",", jsonString(p.path), ":", jsonValue(p.read(bytes)));
    }
    absl::StrAppend(&out, "}");
  }
  absl::StrAppend(&out, ",\"object\":", object, "}");
  return out;
}

absl::StatusOr<const uint8_t*> verifyAligned(const DynamicTable& table,
                                             std::span<const uint8_t> blob, int64_t rowid,
                                             std::vector<uint64_t>* scratch) {
  scratch->resize(blob.size() / sizeof(uint64_t) + 1);
  if (!blob.empty()) std::memcpy(scratch->data(), blob.data(), blob.size());
  const uint8_t* aligned = reinterpret_cast<const uint8_t*>(scratch->data());
  if (!table.verify({aligned, blob.size()})) {
    return absl::DataLossError(absl::StrCat("table ", table.name(), " rowid ", rowid,
                                            ": stored object (", blob.size(),
                                            " bytes) fails verification against the stored "
                                            "schema"));
  }
  return aligned;
}

namespace {

void emit(FILE* out, const std::string& line, bool json_array, bool first) {
  if (json_array) std::fputs(first ? "[\n" : ",\n", out);
  std::fwrite(line.data(), 1, line.size(), out);
  if (!json_array) std::fputc('\n', out);
}

void endArray(FILE* out, bool json_array, bool any) {
  if (json_array) std::fputs(any ? "\n]\n" : "[]\n", out);
}

}  // namespace

absl::StatusOr<int64_t> streamTable(Connection& c, DynamicTable& table,
                                    std::optional<int64_t> limit, bool quiet, FILE* out,
                                    bool json_array) {
  std::string quoted = internal::quoteIdentifier(table.name());
  int64_t total = 0;
  Progress progress(absl::StrCat("dump ", table.name()), "objects", 0, quiet);
  if (progress.enabled()) {
    FLATSTORE_ASSIGN_OR_RETURN(Statement n,
                               c.prepare(absl::StrCat("SELECT count(*) FROM ", quoted), quoted));
    FLATSTORE_ASSIGN_OR_RETURN(bool row, n.step(quoted));
    total = row ? n.columnInt(0) : 0;
    if (limit.has_value()) total = std::min(total, *limit);
    progress.setTotal(total);
  }
  FLATSTORE_ASSIGN_OR_RETURN(Statement s,
                             c.prepare(absl::StrCat("SELECT rowid, p, vs FROM ", quoted,
                                                    " ORDER BY rowid LIMIT ", limit.value_or(-1)),
                                       quoted));
  std::vector<uint64_t> scratch;
  int64_t done = 0, bad = 0;
  while (true) {
    FLATSTORE_ASSIGN_OR_RETURN(bool row, s.step(quoted));
    if (!row) break;
    int64_t rowid = s.columnInt(0);
    absl::StatusOr<const uint8_t*> bytes = verifyAligned(table, s.columnBlob(1), rowid, &scratch);
    absl::StatusOr<std::string> line =
        bytes.ok() ? recordJson(table, rowid, Versionstamp::fromPacked(s.columnInt(2)), *bytes)
                   : absl::StatusOr<std::string>(bytes.status());
    if (!line.ok()) {
      fail(c.path(), line.status());
      bad += 1;
    } else {
      emit(out, *line, json_array, done - bad == 0);
    }
    progress.update(++done);
  }
  endArray(out, json_array, done - bad > 0);
  progress.finish();
  return bad;
}

int runDump(const Args& args) {
  if (args.positional.size() != 2) return usage("dump", "expects FILE TABLE");
  const std::string& file = args.positional[0];
  std::string format = args.value("--format").value_or("jsonl");
  if (format != "jsonl" && format != "json") {
    return usage("dump", "--format is jsonl or json");
  }
  std::optional<int64_t> limit;
  if (auto l = args.value("--limit"); l.has_value()) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(*l, &n) || n < 0) return usage("dump", "--limit takes a count");
    limit = n;
  }
  absl::StatusOr<std::unique_ptr<Connection>> opened = openReadOnly(file);
  if (!opened.ok()) return fail(file, opened.status());
  Connection& c = **opened;
  static char buffer[1 << 20];
  std::setvbuf(stdout, buffer, _IOFBF, sizeof buffer);
  int64_t bad = 0;
  absl::Status status = [&]() -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(c.exec("BEGIN", file));
    FLATSTORE_ASSIGN_OR_RETURN(std::vector<std::string> names, internal::listTables(c));
    FLATSTORE_ASSIGN_OR_RETURN(std::string name,
                               internal::resolveTableName(names, args.positional[1]));
    FLATSTORE_ASSIGN_OR_RETURN(auto table, DynamicTable::load(c, name));
    bool json_array = format == "json";
    if (!args.has("--where") && !args.has("--order-by")) {
      FLATSTORE_ASSIGN_OR_RETURN(bad,
                                 streamTable(c, *table, limit, quiet(args), stdout, json_array));
      return absl::OkStatus();
    }
    internal::QuerySpec spec;
    if (auto where = args.value("--where"); where.has_value()) {
      absl::StatusOr<std::shared_ptr<const internal::ExprNode>> e =
          internal::parseQueryExpression(*table, *where);
      if (!e.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("--where: ", e.status().message()));
      }
      spec.where = *e;
    }
    auto range = args.options.equal_range("--order-by");
    for (auto it = range.first; it != range.second; ++it) {
      std::vector<std::string> parts = absl::StrSplit(it->second, ' ', absl::SkipEmpty());
      if (parts.empty() || parts.size() > 2 ||
          (parts.size() == 2 && parts[1] != "desc" && parts[1] != "asc")) {
        return absl::InvalidArgumentError("--order-by takes PATH [asc|desc]");
      }
      FLATSTORE_ASSIGN_OR_RETURN(const FieldInfo* f, table->field(parts[0]));
      spec.order.emplace_back(f, parts.size() == 2 && parts[1] == "desc");
    }
    spec.limit = limit;
    internal::TableState state(table->description());
    for (size_t i = 0; i < table->backfillNext().size(); ++i) {
      state.setIndexReady(static_cast<int>(i), !table->backfillNext()[i].has_value());
    }
    FLATSTORE_ASSIGN_OR_RETURN(std::vector<internal::RawRow> rows,
                               internal::executeQuery(c, state, spec, nullptr));
    Progress progress(absl::StrCat("dump ", name), "objects", static_cast<int64_t>(rows.size()),
                      quiet(args));
    int64_t done = 0;
    for (const internal::RawRow& r : rows) {
      FLATSTORE_ASSIGN_OR_RETURN(std::string line,
                                 recordJson(*table, r.rowid, r.versionstamp, r.bytes.data()));
      emit(stdout, line, json_array, done == 0);
      progress.update(++done);
    }
    endArray(stdout, json_array, done > 0);
    progress.finish();
    return absl::OkStatus();
  }();
  c.rollbackQuietly();
  std::fflush(stdout);
  if (!status.ok()) return fail(file, status);
  return bad > 0 ? kExitProblems : kExitOk;
}

// ---------------------------------------------------------------------------------------
// export

namespace {

absl::Status writeDictionary(Connection& c, const std::string& path) {
  FILE* out = std::fopen(path.c_str(), "w");
  if (out == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  absl::Status s = [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement st,
        c.prepare("SELECT key, kind, type, value FROM flatstore_kv ORDER BY key", "flatstore_kv"));
    std::map<std::string, std::unique_ptr<DynamicTable>> tables;
    std::vector<uint64_t> scratch;
    while (true) {
      FLATSTORE_ASSIGN_OR_RETURN(bool row, st.step("flatstore_kv"));
      if (!row) break;
      std::string key(st.columnText(0));
      int64_t kind = st.columnInt(1);
      std::span<const uint8_t> v = st.columnBlob(3);
      std::string line = absl::StrCat("{\"key\":", jsonString(key), ",\"kind\":");
      auto fixed = [&](auto n) {
        if (v.size() == sizeof n) std::memcpy(&n, v.data(), sizeof n);
        return n;
      };
      std::string_view raw(reinterpret_cast<const char*>(v.data()), v.size());
      switch (kind) {
        case 1:
          absl::StrAppend(&line, "\"string\",\"value\":", jsonString(raw));
          break;
        case 2:
          absl::StrAppend(&line, "\"integer\",\"value\":", fixed(int64_t{0}));
          break;
        case 3:
          absl::StrAppend(&line, "\"double\",\"value\":", jsonValue(Value::real(fixed(0.0))));
          break;
        case 5: {
          std::string type(st.columnText(2));
          absl::StrAppend(&line, "\"object\",\"type\":", jsonString(type), ",\"value\":");
          auto it = tables.find(type);
          if (it == tables.end()) {
            absl::StatusOr<std::unique_ptr<DynamicTable>> t = DynamicTable::load(c, type);
            it = tables.emplace(type, t.ok() ? std::move(*t) : nullptr).first;
          }
          absl::StatusOr<std::string> json = absl::NotFoundError("no stored schema");
          if (it->second != nullptr) {
            absl::StatusOr<const uint8_t*> bytes = verifyAligned(*it->second, v, 0, &scratch);
            if (bytes.ok()) json = it->second->toJson(*bytes);
          }
          if (json.ok()) {
            absl::StrAppend(&line, *json);
          } else {
            // Kept as bytes when no stored schema decodes it.
            line = absl::StrCat(
                "{\"key\":", jsonString(key), ",\"kind\":\"object\",\"type\":", jsonString(type),
                ",\"base64\":",
                jsonString(absl::Base64Escape(absl::string_view(raw.data(), raw.size()))));
          }
          break;
        }
        default:
          absl::StrAppend(
              &line, "\"bytes\",\"base64\":",
              jsonString(absl::Base64Escape(absl::string_view(raw.data(), raw.size()))));
      }
      absl::StrAppend(&line, "}\n");
      std::fputs(line.c_str(), out);
    }
    return absl::OkStatus();
  }();
  if (std::fclose(out) != 0 && s.ok()) {
    s = absl::DataLossError(absl::StrCat("writing ", path, ": ", std::strerror(errno)));
  }
  return s;
}

}  // namespace

int runExport(const Args& args) {
  if (args.positional.size() != 1) return usage("export", "expects FILE");
  const std::string& file = args.positional[0];
  std::string dir = args.value("-o").value_or(".");
  absl::StatusOr<std::unique_ptr<Connection>> opened = openReadOnly(file);
  if (!opened.ok()) return fail(file, opened.status());
  if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST) {
    return fail(dir, absl::PermissionDeniedError(std::strerror(errno)));
  }
  Connection& c = **opened;
  int64_t bad = 0;
  absl::Status status = [&]() -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(c.exec("BEGIN", file));
    FLATSTORE_ASSIGN_OR_RETURN(std::vector<std::string> names, internal::listTables(c));
    for (const std::string& name : names) {
      FLATSTORE_ASSIGN_OR_RETURN(auto table, DynamicTable::load(c, name));
      std::string path = absl::StrCat(dir, "/", name, ".jsonl");
      FILE* out = std::fopen(path.c_str(), "w");
      if (out == nullptr) {
        return absl::PermissionDeniedError(
            absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
      }
      absl::StatusOr<int64_t> n = streamTable(c, *table, std::nullopt, quiet(args), out, false);
      bool closed = std::fclose(out) == 0;
      if (!n.ok()) return n.status();
      if (!closed) return absl::DataLossError(absl::StrCat("writing ", path));
      bad += *n;
    }
    return writeDictionary(c, absl::StrCat(dir, "/dictionary.jsonl"));
  }();
  c.rollbackQuietly();
  if (!status.ok()) return fail(file, status);
  return bad > 0 ? kExitProblems : kExitOk;
}

}  // namespace flatstore::cli
