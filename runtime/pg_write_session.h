// The PostgreSQL engine's write sessions (storage_engine.h's WriteSession): one
// transaction on a connection of its own, holding the advisory locks of its declared
// tables (pg_engine.h, Locks), whose id is the sequence of its versionstamps. Its BEGIN,
// locks, transaction id and the catalog generation go out with its first statement;
// for a closure that is applyUnlessChanged, whose one pipeline also holds the conflict
// check and the changes; commit() writes the change log, commits and sends the
// notification in a second (pg_engine.h, Round trips).
//
// Thread-safety: a session is used by one thread at a time (storage_engine.h).
#ifndef FLATSTORE_RUNTIME_PG_WRITE_SESSION_H_
#define FLATSTORE_RUNTIME_PG_WRITE_SESSION_H_

#include <memory>
#include <span>

#include "absl/status/statusor.h"
#include "runtime/storage_engine.h"

namespace flatstore::internal {

class PgEngine;

// A session of `engine` on `tables`; nothing is sent before its first statement.
absl::StatusOr<std::unique_ptr<WriteSession>> pgBeginWrite(
    PgEngine* engine, std::span<const TableState* const> tables);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PG_WRITE_SESSION_H_
