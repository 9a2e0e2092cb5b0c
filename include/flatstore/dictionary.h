// Dictionary: a small key-value store for settings, kept in the workspace's file.
//
//   ws->dictionary().setInteger("schema.seen", 3);
//   absl::StatusOr<std::optional<int64_t>> v = ws->dictionary().getInteger("schema.seen");
//
// Values are strings, integers, doubles, byte strings, or FlatBuffers objects of an
// entity type. Writes go through the workspace's writer and are durable when the call
// returns (as durable as `synchronous` makes commits); reads see the latest commit.
// Called from a closure that runs inside the write transaction (see
// performChangesAndWait), a write joins that transaction: it commits, or rolls back,
// with the closure.
// Reading a key as another kind than it holds is FailedPrecondition naming the key and
// both kinds; an absent key reads as nullopt.
//
// Thread-safety: all methods may be called from any thread.
#ifndef FLATSTORE_DICTIONARY_H_
#define FLATSTORE_DICTIONARY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flatstore/entity.h"
#include "flatstore/status.h"
#include "flatstore/table_description.h"

namespace flatstore {

class Dictionary {
 public:
  enum class Kind { kString = 1, kInteger = 2, kDouble = 3, kBytes = 4, kObject = 5 };

  virtual ~Dictionary() = default;

  absl::Status setString(std::string_view key, std::string_view value);
  absl::Status setInteger(std::string_view key, int64_t value);
  absl::Status setDouble(std::string_view key, double value);
  absl::Status setBytes(std::string_view key, std::span<const uint8_t> value);
  // Stores a copy of `object`'s bytes, tagged with its entity type.
  template <class E>
  absl::Status setObject(std::string_view key, const E& object) {
    return write(key, Kind::kObject, E::description().entity_name, object.bytes());
  }
  // Removes `key`; removing an absent key is OK.
  absl::Status erase(std::string_view key);

  absl::StatusOr<std::optional<std::string>> getString(std::string_view key);
  absl::StatusOr<std::optional<int64_t>> getInteger(std::string_view key);
  absl::StatusOr<std::optional<double>> getDouble(std::string_view key);
  absl::StatusOr<std::optional<std::vector<uint8_t>>> getBytes(std::string_view key);
  // The object stored under `key`, verified; FailedPrecondition when it holds another
  // type, DataLoss when its bytes do not verify.
  template <class E>
  absl::StatusOr<std::shared_ptr<const E>> getObject(std::string_view key) {
    FLATSTORE_ASSIGN_OR_RETURN(auto raw, read(key, Kind::kObject, E::description().entity_name));
    if (!raw.has_value()) return std::shared_ptr<const E>();
    FLATSTORE_ASSIGN_OR_RETURN(auto buffer, internal::verifiedCopy(E::description(), *raw, 0));
    return E::fromVerified(std::move(buffer), 0, Versionstamp());
  }

  // The stored record of `key`: its kind, type name (objects) and value bytes.
  struct Record {
    Kind kind;
    std::string type;
    std::vector<uint8_t> value;
  };

 protected:
  // Writes a record; implemented by the runtime.
  virtual absl::Status write(std::string_view key, Kind kind, std::string_view type,
                             std::span<const uint8_t> value) = 0;
  virtual absl::Status remove(std::string_view key) = 0;
  virtual absl::StatusOr<std::optional<Record>> load(std::string_view key) = 0;

 private:
  // Loads `key` and checks that it holds `kind` (and `type`, for objects).
  absl::StatusOr<std::optional<std::vector<uint8_t>>> read(std::string_view key, Kind kind,
                                                           std::string_view type = {});
};

}  // namespace flatstore

#endif  // FLATSTORE_DICTIONARY_H_
