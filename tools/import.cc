// flatstore import and flatstore backup: the commands that write (import writes FILE
// through the library's transactions; backup writes only DEST).
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "flatstore/workspace.h"
#include "runtime/backup.h"
#include "runtime/dynamic_table.h"
#include "tools/cli.h"
#include "tools/json_scan.h"

namespace flatstore::cli {

namespace {

using internal::DynamicTable;

// The table an import writes, described at run time. The library's typed entry points
// name tables by type, so one tag type stands for "the table being imported"; a process
// imports into one table at a time.
const TableDescription* g_import_table = nullptr;

struct ImportTable;

class ImportObject : public EntityBase {
 public:
  using Table = ImportTable;
  static const TableDescription& description() { return *g_import_table; }
  static std::shared_ptr<const ImportObject> fromVerified(ObjectBuffer buffer, int64_t rowid,
                                                          Versionstamp versionstamp) {
    return std::shared_ptr<const ImportObject>(
        new ImportObject(std::move(buffer), rowid, versionstamp));
  }

 private:
  ImportObject(ObjectBuffer buffer, int64_t rowid, Versionstamp versionstamp)
      : EntityBase(std::move(buffer), rowid, versionstamp) {}
};

// A whole object to write: an upsert by primary key, or a creation for automatic ids.
class ImportRequest {
 public:
  using Entity = ImportObject;
  ImportRequest(const ObjectBuffer& bytes, bool keyed) : bytes_(bytes), keyed_(keyed) {}
  ChangeKind kind() const { return keyed_ ? ChangeKind::kUpsert : ChangeKind::kCreation; }
  int64_t targetRowid() const { return 0; }
  const std::vector<Value>& targetKey() const { return no_key_; }
  std::optional<Versionstamp> requiredVersionstamp() const { return std::nullopt; }
  bool requiresAbsent() const { return false; }
  // The imported object replaces the whole current one (its size is not known here,
  // so an identical object is rewritten too).
  absl::StatusOr<EncodedObject> encodeOver(const uint8_t* /*current*/) const {
    EncodedObject out;
    out.bytes = ObjectBuffer::copyOf(bytes_.span());
    return out;
  }

 private:
  const ObjectBuffer& bytes_;
  bool keyed_;
  std::vector<Value> no_key_;
};

}  // namespace
}  // namespace flatstore::cli

template <>
struct flatstore::EntityTraits<flatstore::cli::ImportTable> {
  using Entity = flatstore::cli::ImportObject;
  static const TableDescription& description() { return *flatstore::cli::g_import_table; }
};

namespace flatstore::cli {

namespace {

struct Line {
  int64_t number = 0;
  std::optional<ObjectBuffer> bytes;  // empty: rejected when read
};

// Feeds lines to chunks. A chunk may run again (another process changed the table), so
// lines stay buffered until a chunk that covers them has committed.
class LineFeed {
 public:
  LineFeed(std::istream& in, DynamicTable& table, std::string input_name)
      : in_(in), table_(table), input_name_(std::move(input_name)) {}

  // The buffered lines after `cursor` (lines committed so far), at least `want` of
  // them unless the input ends.
  absl::Status fill(int64_t cursor, size_t want) {
    while (!lines_.empty() && lines_.front().number <= cursor) lines_.pop_front();
    while (lines_.size() < want && !eof_) {
      std::string text;
      if (!std::getline(in_, text)) {
        eof_ = true;
        if (in_.bad()) return absl::DataLossError(absl::StrCat("reading ", input_name_));
        break;
      }
      ++read_;
      if (read_ <= cursor) continue;  // committed by an earlier, interrupted run
      if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
      Line line{read_, std::nullopt};
      absl::StatusOr<ObjectBuffer> bytes = parse(text);
      if (bytes.ok()) {
        line.bytes = *std::move(bytes);
      } else {
        reject(read_, std::string(bytes.status().message()));
      }
      lines_.push_back(std::move(line));
    }
    return absl::OkStatus();
  }

  std::deque<Line>& lines() { return lines_; }
  bool exhausted() const { return eof_ && lines_.empty(); }
  int64_t linesRead() const { return read_; }

  void reject(int64_t line, std::string_view why) {
    if (rejected_.emplace(line, std::string(why)).second) {
      std::fprintf(stderr, "flatstore: %s:%lld: %.*s\n", input_name_.c_str(),
                   static_cast<long long>(line), static_cast<int>(why.size()), why.data());
    }
  }
  size_t rejected() const { return rejected_.size(); }

 private:
  absl::StatusOr<ObjectBuffer> parse(std::string_view text) {
    // A line as dump and export write it carries the object in "object".
    absl::StatusOr<std::optional<std::string_view>> inner = findMember(text, "object");
    if (inner.ok() && inner->has_value() && findMember(text, "rowid").value_or(std::nullopt)) {
      text = **inner;
    }
    return table_.fromJson(text);
  }

  std::istream& in_;
  DynamicTable& table_;
  std::string input_name_;
  std::deque<Line> lines_;
  bool eof_ = false;
  int64_t read_ = 0;
  std::map<int64_t, std::string> rejected_;
};

// The unique indexes' fields, to refuse an object whose unique value another object
// holds before the commit would fail the whole chunk.
struct UniqueField {
  const FieldInfo* field;
  size_t index;
};

absl::StatusOr<std::string> uniqueConflict(TransactionContext& txn, DynamicTable& table,
                                           const std::vector<UniqueField>& unique,
                                           const uint8_t* bytes) {
  std::vector<Value> key, other_key;
  table.keyOf(bytes, &key);
  for (const UniqueField& u : unique) {
    Value v = u.field->read(bytes);
    if (v.isNull()) continue;
    auto node = std::make_shared<internal::ExprNode>();
    node->kind = internal::ExprNode::Kind::kCompare;
    node->op = CompareOp::kEq;
    node->field = u.field;
    node->values.push_back(v);
    FLATSTORE_ASSIGN_OR_RETURN(
        auto found, txn.fetch<ImportTable>().where(Predicate<ImportTable>(std::move(node))).all());
    for (const auto& o : found) {
      other_key.clear();
      table.keyOf(o->data(), &other_key);
      if (!key.empty() && other_key == key) continue;  // the object this line replaces
      return absl::StrCat("unique field '", av(u.field->path), "' already has value ", v.toString(),
                          " (rowid ", o->rowid(), ")");
    }
  }
  return std::string();
}

int importDictionary(const Args& args, Workspace& ws, std::istream& in,
                     const std::string& input_name) {
  Dictionary& dict = ws.dictionary();
  std::string text;
  int64_t number = 0, rejected = 0;
  std::map<std::string, std::unique_ptr<DynamicTable>> tables;
  std::unique_ptr<internal::Connection> reader;
  while (std::getline(in, text)) {
    ++number;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    absl::Status s = [&]() -> absl::Status {
      FLATSTORE_ASSIGN_OR_RETURN(auto key_text, findMember(text, "key"));
      FLATSTORE_ASSIGN_OR_RETURN(auto kind_text, findMember(text, "kind"));
      if (!key_text.has_value() || !kind_text.has_value()) {
        return absl::InvalidArgumentError("a dictionary line needs \"key\" and \"kind\"");
      }
      FLATSTORE_ASSIGN_OR_RETURN(std::string key, readString(*key_text));
      FLATSTORE_ASSIGN_OR_RETURN(std::string kind, readString(*kind_text));
      FLATSTORE_ASSIGN_OR_RETURN(auto value, findMember(text, "value"));
      FLATSTORE_ASSIGN_OR_RETURN(auto base64, findMember(text, "base64"));
      if (kind == "string" && value.has_value()) {
        FLATSTORE_ASSIGN_OR_RETURN(std::string v, readString(*value));
        return dict.setString(key, v);
      }
      if (kind == "integer" && value.has_value()) {
        int64_t v = 0;
        if (!absl::SimpleAtoi(av(*value), &v)) return absl::InvalidArgumentError("bad integer");
        return dict.setInteger(key, v);
      }
      if (kind == "double" && value.has_value()) {
        double v = 0;
        if (!absl::SimpleAtod(av(*value), &v)) return absl::InvalidArgumentError("bad double");
        return dict.setDouble(key, v);
      }
      std::string bytes;
      if (base64.has_value()) {
        FLATSTORE_ASSIGN_OR_RETURN(std::string encoded, readString(*base64));
        if (!absl::Base64Unescape(encoded, &bytes)) {
          return absl::InvalidArgumentError("bad base64");
        }
      }
      if (kind == "bytes" && base64.has_value()) {
        return dict.setBytes(key, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
      }
      if (kind == "object") {
        FLATSTORE_ASSIGN_OR_RETURN(auto type_text, findMember(text, "type"));
        if (!type_text.has_value()) return absl::InvalidArgumentError("an object needs \"type\"");
        FLATSTORE_ASSIGN_OR_RETURN(std::string type, readString(*type_text));
        if (reader == nullptr) {
          FLATSTORE_ASSIGN_OR_RETURN(reader, internal::Connection::open(ws.path(), true));
        }
        auto it = tables.find(type);
        if (it == tables.end()) {
          FLATSTORE_ASSIGN_OR_RETURN(auto t, DynamicTable::load(*reader, type));
          it = tables.emplace(type, std::move(t)).first;
        }
        ObjectBuffer object;
        if (value.has_value()) {
          FLATSTORE_ASSIGN_OR_RETURN(object, it->second->fromJson(*value));
        } else {
          object =
              ObjectBuffer::copyOf({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
        }
        g_import_table = &it->second->description();
        return dict.setObject(key, *ImportObject::fromVerified(std::move(object), 0, {}));
      }
      return absl::InvalidArgumentError(absl::StrCat("unknown kind '", kind, "'"));
    }();
    if (!s.ok()) {
      ++rejected;
      std::fprintf(stderr, "flatstore: %s:%lld: %s\n", input_name.c_str(),
                   static_cast<long long>(number), std::string(s.message()).c_str());
    }
  }
  return rejected > 0 ? kExitProblems : kExitOk;
}

}  // namespace

int runImport(const Args& args) {
  if (args.positional.size() < 2 || args.positional.size() > 3) {
    return usage("import", "expects FILE TABLE [INPUT]");
  }
  const std::string& file = args.positional[0];
  std::string input_name = args.positional.size() == 3 ? args.positional[2] : "-";
  int64_t chunk_lines = 1000;
  if (auto c = args.value("--chunk"); c.has_value()) {
    if (!absl::SimpleAtoi(*c, &chunk_lines) || chunk_lines < 1) {
      return usage("import", "--chunk takes a positive count");
    }
  }
  std::ifstream file_in;
  std::istream* in = &std::cin;
  if (input_name != "-") {
    file_in.open(input_name);
    if (!file_in) return fail(input_name, absl::NotFoundError(std::strerror(errno)));
    in = &file_in;
  }
  struct stat st;
  bool exists = ::stat(file.c_str(), &st) == 0;
  bool dictionary = args.positional[1] == "dictionary";

  // The table's description: from FILE when it has the table, otherwise from --like.
  std::unique_ptr<DynamicTable> table;
  if (!dictionary) {
    auto describe = [&](const std::string& from) -> absl::StatusOr<std::unique_ptr<DynamicTable>> {
      FLATSTORE_ASSIGN_OR_RETURN(auto c, openReadOnly(from));
      FLATSTORE_RETURN_IF_ERROR(c->exec("BEGIN", from));
      FLATSTORE_ASSIGN_OR_RETURN(std::vector<std::string> names, internal::listTables(*c));
      FLATSTORE_ASSIGN_OR_RETURN(std::string name,
                                 internal::resolveTableName(names, args.positional[1]));
      return DynamicTable::load(*c, name);
    };
    absl::StatusOr<std::unique_ptr<DynamicTable>> t =
        exists ? describe(file) : absl::NotFoundError("no such file");
    if (!t.ok() && args.has("--like")) {
      std::string like = *args.value("--like");
      t = describe(like);
      if (!t.ok()) return fail(like, t.status());
    }
    if (!t.ok()) return fail(file, t.status());
    table = *std::move(t);
    g_import_table = &table->description();
  }

  absl::StatusOr<std::unique_ptr<Workspace>> ws = Workspace::open(file);
  if (!ws.ok()) return fail(file, ws.status());
  if (dictionary) {
    int code = importDictionary(args, **ws, *in, input_name);
    absl::Status closed = (*ws)->shutdown();
    if (!closed.ok()) return fail(file, closed);
    return code;
  }

  std::string job = absl::StrCat("flatstore import ", table->name(), " ", input_name);
  if (args.has("--restart")) {
    absl::Status erased = (*ws)->dictionary().erase("flatstore.chunked." + job);
    if (!erased.ok()) return fail(file, erased);
  }
  std::vector<UniqueField> unique;
  for (size_t i = 0; i < table->description().indexes.size(); ++i) {
    const IndexDescription& x = table->description().indexes[i];
    if (!x.unique) continue;
    absl::StatusOr<const FieldInfo*> f = table->field(x.field_path);
    if (!f.ok()) return fail(file, f.status());
    unique.push_back(UniqueField{*f, i});
  }
  LineFeed feed(*in, *table, input_name);
  bool keyed = !table->description().hasAutomaticId();
  Progress progress(absl::StrCat("import ", table->name()), "lines", 0, quiet(args));
  if (progress.enabled() && input_name != "-") {
    std::ifstream count_in(input_name);
    progress.setTotal(std::count(std::istreambuf_iterator<char>(count_in),
                                 std::istreambuf_iterator<char>(), '\n'));
  }
  TransactionOptions options = TransactionOptions::named("flatstore import");
  options.chunk_budget = absl::Milliseconds(20);
  TransactionHandle handle = (*ws)->performChunked<ImportTable>(
      job,
      [&](TransactionContext& txn, std::string& cursor) -> absl::StatusOr<bool> {
        int64_t done = 0;
        if (!cursor.empty() && !absl::SimpleAtoi(cursor, &done)) {
          return absl::DataLossError(absl::StrCat("import cursor '", cursor, "' is not a line"));
        }
        FLATSTORE_RETURN_IF_ERROR(feed.fill(done, static_cast<size_t>(chunk_lines)));
        for (const Line& line : feed.lines()) {
          if (line.bytes.has_value()) {
            FLATSTORE_ASSIGN_OR_RETURN(std::string conflict,
                                       uniqueConflict(txn, *table, unique, line.bytes->data()));
            if (conflict.empty()) {
              absl::StatusOr<SubmitOutcome> s = txn.submit(ImportRequest(*line.bytes, keyed));
              if (!s.ok()) conflict = std::string(s.status().message());
            }
            if (!conflict.empty()) feed.reject(line.number, conflict);
          }
          done = line.number;
          if (txn.chunkFull()) break;
        }
        cursor = absl::StrCat(done);
        progress.update(done);
        bool more = false;
        for (const Line& line : feed.lines()) more = more || line.number > done;
        return more || !feed.exhausted();
      },
      options);
  absl::StatusOr<TransactionResult> result = handle.wait();
  progress.finish();
  absl::Status closed = (*ws)->shutdown();
  if (!result.ok()) return fail(file, result.status());
  if (!closed.ok()) return fail(file, closed);
  if (!quiet(args)) {
    std::fprintf(stderr, "%s: %lld inserted, %lld updated, %zu rejected of %lld lines\n",
                 file.c_str(), static_cast<long long>(result->inserted),
                 static_cast<long long>(result->updated), feed.rejected(),
                 static_cast<long long>(feed.linesRead()));
  }
  return feed.rejected() > 0 ? kExitProblems : kExitOk;
}

int runBackup(const Args& args) {
  if (args.positional.size() != 2) return usage("backup", "expects FILE DEST");
  const std::string& file = args.positional[0];
  Progress progress("backup", "pages", 0, quiet(args));
  absl::Status s =
      internal::backupDatabase(file, args.positional[1], [&](int64_t copied, int64_t total) {
        progress.setTotal(total);
        progress.update(copied);
      });
  progress.finish();
  if (!s.ok()) return fail(file, s);
  return kExitOk;
}

}  // namespace flatstore::cli
