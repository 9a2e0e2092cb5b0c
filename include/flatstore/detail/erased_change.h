// Internal: a change request with its type erased, as TransactionContext::submit hands
// it to the runtime, and the runtime classes the public transaction types point to. Not
// part of the API: these types change without notice.
#ifndef FLATSTORE_DETAIL_ERASED_CHANGE_H_
#define FLATSTORE_DETAIL_ERASED_CHANGE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "flatstore/change_request.h"
#include "flatstore/entity.h"
#include "flatstore/value.h"

namespace flatstore {

namespace internal {

class TransactionState;
class TransactionAccess;
class HandleState;

// A change request seen through its kind, its target and a function that encodes it
// over the target's current bytes (empty for none).
struct ErasedChange {
  ChangeKind kind;
  int64_t target_rowid;
  const std::vector<Value>* target_key;
  std::optional<Versionstamp> required_versionstamp;
  bool require_absent;
  const void* request;
  absl::StatusOr<EncodedObject> (*encode)(const void* request, std::span<const uint8_t> current);
};

}  // namespace internal

}  // namespace flatstore

#endif  // FLATSTORE_DETAIL_ERASED_CHANGE_H_
