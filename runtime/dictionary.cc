#include "runtime/dictionary.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"

namespace flatstore {
namespace internal {

absl::Status writeEntry(Connection& c, std::string_view key, Dictionary::Kind kind,
                        std::string_view type, std::span<const uint8_t> value) {
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement * s,
      c.cached("INSERT INTO flatstore_kv(key, kind, type, value) VALUES(?, ?, ?, ?) "
               "ON CONFLICT(key) DO UPDATE SET kind = excluded.kind, type = excluded.type, "
               "value = excluded.value",
               "dictionary"));
  s->bindText(1, key);
  s->bindInt(2, static_cast<int64_t>(kind));
  s->bindText(3, type);
  s->bindBlob(4, value);
  return s->run(absl::StrCat("dictionary key '", av(key), "'"));
}

absl::Status eraseEntry(Connection& c, std::string_view key) {
  FLATSTORE_ASSIGN_OR_RETURN(Statement * s,
                             c.cached("DELETE FROM flatstore_kv WHERE key = ?", "dictionary"));
  s->bindText(1, key);
  return s->run(absl::StrCat("dictionary key '", av(key), "'"));
}

absl::StatusOr<std::optional<Dictionary::Record>> readEntry(Connection& c, std::string_view key) {
  FLATSTORE_ASSIGN_OR_RETURN(
      Statement * s,
      c.cached("SELECT kind, type, value FROM flatstore_kv WHERE key = ?", "dictionary"));
  s->bindText(1, key);
  absl::StatusOr<bool> row = s->step("dictionary");
  std::optional<Dictionary::Record> out;
  if (row.ok() && *row) {
    auto blob = s->columnBlob(2);
    out = Dictionary::Record{static_cast<Dictionary::Kind>(s->columnInt(0)),
                             std::string(s->columnText(1)),
                             std::vector<uint8_t>(blob.begin(), blob.end())};
  }
  s->reset();
  if (!row.ok()) return row.status();
  return out;
}

absl::Status DictionaryStore::write(std::string_view key, Kind kind, std::string_view type,
                                    std::span<const uint8_t> value) {
  return writes_->putEntry(key, kind, type, value);
}

absl::Status DictionaryStore::remove(std::string_view key) { return writes_->eraseEntry(key); }

absl::StatusOr<std::optional<Dictionary::Record>> DictionaryStore::load(std::string_view key) {
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<ReadView> view, readers_->read());
  return view->entry(key);
}

}  // namespace internal

// ---------------------------------------------------------------------------------------
// Dictionary (public, non-virtual parts)

namespace {
const char* kindName(Dictionary::Kind k) {
  switch (k) {
    case Dictionary::Kind::kString:
      return "a string";
    case Dictionary::Kind::kInteger:
      return "an integer";
    case Dictionary::Kind::kDouble:
      return "a double";
    case Dictionary::Kind::kBytes:
      return "bytes";
    case Dictionary::Kind::kObject:
      return "an object";
  }
  return "an unknown kind";
}
}  // namespace

absl::Status Dictionary::setString(std::string_view key, std::string_view value) {
  return write(key, Kind::kString, {},
               {reinterpret_cast<const uint8_t*>(value.data()), value.size()});
}
absl::Status Dictionary::setInteger(std::string_view key, int64_t value) {
  return write(key, Kind::kInteger, {}, {reinterpret_cast<const uint8_t*>(&value), sizeof value});
}
absl::Status Dictionary::setDouble(std::string_view key, double value) {
  return write(key, Kind::kDouble, {}, {reinterpret_cast<const uint8_t*>(&value), sizeof value});
}
absl::Status Dictionary::setBytes(std::string_view key, std::span<const uint8_t> value) {
  return write(key, Kind::kBytes, {}, value);
}
absl::Status Dictionary::erase(std::string_view key) { return remove(key); }

absl::StatusOr<std::optional<std::vector<uint8_t>>> Dictionary::read(std::string_view key,
                                                                     Kind kind,
                                                                     std::string_view type) {
  FLATSTORE_ASSIGN_OR_RETURN(std::optional<Record> record, load(key));
  if (!record.has_value()) return std::optional<std::vector<uint8_t>>();
  if (record->kind != kind || (kind == Kind::kObject && record->type != type)) {
    return absl::FailedPreconditionError(
        absl::StrCat("dictionary key '", internal::av(key), "' holds ", kindName(record->kind),
                     record->kind == Kind::kObject ? absl::StrCat(" of type ", record->type) : "",
                     ", not ", kindName(kind),
                     kind == Kind::kObject ? absl::StrCat(" of type ", internal::av(type)) : ""));
  }
  return std::optional<std::vector<uint8_t>>(std::move(record->value));
}

absl::StatusOr<std::optional<std::string>> Dictionary::getString(std::string_view key) {
  FLATSTORE_ASSIGN_OR_RETURN(auto v, read(key, Kind::kString));
  if (!v.has_value()) return std::optional<std::string>();
  return std::optional<std::string>(std::string(v->begin(), v->end()));
}

template <class N>
static absl::StatusOr<std::optional<N>> fixedWidth(std::string_view key,
                                                   std::optional<std::vector<uint8_t>> v) {
  if (!v.has_value()) return std::optional<N>();
  if (v->size() != sizeof(N)) {
    return absl::DataLossError(absl::StrCat("dictionary key '", internal::av(key), "' holds ",
                                            v->size(), " bytes, not ", sizeof(N)));
  }
  N n;
  std::memcpy(&n, v->data(), sizeof n);
  return std::optional<N>(n);
}

absl::StatusOr<std::optional<int64_t>> Dictionary::getInteger(std::string_view key) {
  FLATSTORE_ASSIGN_OR_RETURN(auto v, read(key, Kind::kInteger));
  return fixedWidth<int64_t>(key, std::move(v));
}
absl::StatusOr<std::optional<double>> Dictionary::getDouble(std::string_view key) {
  FLATSTORE_ASSIGN_OR_RETURN(auto v, read(key, Kind::kDouble));
  return fixedWidth<double>(key, std::move(v));
}
absl::StatusOr<std::optional<std::vector<uint8_t>>> Dictionary::getBytes(std::string_view key) {
  return read(key, Kind::kBytes);
}

}  // namespace flatstore
