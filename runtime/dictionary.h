// The key-value dictionary stored beside the entity tables, in
// flatstore_kv(key TEXT PRIMARY KEY, kind INTEGER, type TEXT, value BLOB).
//
// DictionaryStore is the workspace's Dictionary: writes go through the writer (each in a
// write transaction of its own, or inside the closure's when called from a closure
// running under the write lock), reads through the reader pool. writeEntry and
// eraseEntry hold the table's SQL, for the store and for others that keep records in it
// inside their own transactions (the cursors of chunked work).
//
// Thread-safety: DictionaryStore is thread-safe; writeEntry and eraseEntry run on the
// writer's connection inside a write transaction.
#ifndef FLATSTORE_RUNTIME_DICTIONARY_H_
#define FLATSTORE_RUNTIME_DICTIONARY_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flatstore/dictionary.h"
#include "runtime/reader_pool.h"
#include "runtime/sqlite.h"
#include "runtime/writer.h"

namespace flatstore::internal {

// Inserts or replaces the record of `key`.
absl::Status writeEntry(Connection& c, std::string_view key, Dictionary::Kind kind,
                        std::string_view type, std::span<const uint8_t> value);
// Removes the record of `key`, if any.
absl::Status eraseEntry(Connection& c, std::string_view key);
// The record of `key`, inside the caller's read transaction (or SQLite's implicit one).
absl::StatusOr<std::optional<Dictionary::Record>> readEntry(Connection& c, std::string_view key);

class DictionaryStore : public Dictionary {
 public:
  DictionaryStore(Writer* writer, ReadViews* readers) : writer_(writer), readers_(readers) {}

 protected:
  absl::Status write(std::string_view key, Kind kind, std::string_view type,
                     std::span<const uint8_t> value) override;
  absl::Status remove(std::string_view key) override;
  absl::StatusOr<std::optional<Record>> load(std::string_view key) override;

 private:
  Writer* const writer_;
  ReadViews* const readers_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_DICTIONARY_H_
