// CommitEvent: what one group commit changed, as the writer (or the watcher of other
// processes' commits) hands it to the observers. Plain data, moved between threads.
#ifndef FLATSTORE_RUNTIME_COMMIT_EVENT_H_
#define FLATSTORE_RUNTIME_COMMIT_EVENT_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "flatstore/entity.h"
#include "runtime/catalog.h"

namespace flatstore::internal {

// One object a commit wrote or deleted.
struct ChangedObject {
  int64_t rowid = 0;
  bool deleted = false;
  ObjectBuffer bytes;  // empty when deleted
  Versionstamp versionstamp;
  // When the change is known to be made over the version `base_version` (not null), the
  // top-level fields that differ from it (EncodedObject::changed_fields); otherwise all.
  Versionstamp base_version;
  uint64_t changed_fields = ~uint64_t{0};
};

// What one group commit changed, per observed table.
struct CommitEvent {
  uint64_t sequence = 0;
  std::vector<std::pair<TableState*, std::vector<ChangedObject>>> tables;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_COMMIT_EVENT_H_
