// The key-value dictionary stored beside the entity tables, in
// flatstore_kv(key TEXT PRIMARY KEY, kind INTEGER, type TEXT, value BLOB).
//
// DictionaryStore is the workspace's Dictionary, on either engine: writes go through the
// commit path (commit_path.h; on SQLite each in a write transaction of its own, or inside
// the closure's when called from a closure running under the write lock), reads through
// the engine's read views. writeEntry, eraseEntry and readEntry hold the SQLite table's
// SQL; SqliteEntryWriter puts them behind EntryWriter (storage_engine.h), through which a
// closure's records (the cursors of chunked work) commit with its changes.
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
#include "runtime/commit_path.h"
#include "runtime/sqlite.h"
#include "runtime/storage_engine.h"

namespace flatstore::internal {

// Inserts or replaces the record of `key`.
absl::Status writeEntry(Connection& c, std::string_view key, Dictionary::Kind kind,
                        std::string_view type, std::span<const uint8_t> value);
// Removes the record of `key`, if any.
absl::Status eraseEntry(Connection& c, std::string_view key);
// The record of `key`, inside the caller's read transaction (or SQLite's implicit one).
absl::StatusOr<std::optional<Dictionary::Record>> readEntry(Connection& c, std::string_view key);

// The records on a SQLite connection, inside its write transaction.
class SqliteEntryWriter : public EntryWriter {
 public:
  explicit SqliteEntryWriter(Connection& c) : c_(c) {}
  absl::Status putEntry(std::string_view key, Dictionary::Kind kind, std::string_view type,
                        std::span<const uint8_t> value) override {
    return writeEntry(c_, key, kind, type, value);
  }
  absl::Status eraseEntry(std::string_view key) override { return internal::eraseEntry(c_, key); }

 private:
  Connection& c_;
};

class DictionaryStore : public Dictionary {
 public:
  DictionaryStore(CommitPath* writes, ReadViews* reads) : writes_(writes), readers_(reads) {}

 protected:
  absl::Status write(std::string_view key, Kind kind, std::string_view type,
                     std::span<const uint8_t> value) override;
  absl::Status remove(std::string_view key) override;
  absl::StatusOr<std::optional<Record>> load(std::string_view key) override;

 private:
  CommitPath* const writes_;
  ReadViews* const readers_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_DICTIONARY_H_
