// Row writes: how an encoded change becomes rows of its entity table and of the table's
// index tables, inside the writer's open write transaction.
//
// A request is applied in two passes over its changes: applyRemovals first removes what
// deletions and key or unique-value changes free, then applyWrites writes inserted and
// updated objects and their index entries, so that a closure may delete b and give a b's
// key, or swap two keys, in any order.
//
// Thread-safety: on the writer's connection, under the writer role.
#ifndef FLATSTORE_RUNTIME_ROW_WRITES_H_
#define FLATSTORE_RUNTIME_ROW_WRITES_H_

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/commit_request.h"
#include "runtime/sqlite.h"

namespace flatstore::internal {

// The first pass for `change`.
absl::Status applyRemovals(Connection& db, const EncodedChange& change);
// The second pass for `change`, with versionstamp `vs` (packed); sets the rowid of an
// insert. AlreadyExists naming the table and the key or unique value it collides on.
absl::Status applyWrites(Connection& db, EncodedChange& change, int64_t vs);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_ROW_WRITES_H_
