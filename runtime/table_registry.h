// TableRegistry: the entity tables a workspace has used, by name.
//
// The first use of a table checks its stored layout and hands incomplete indexes to the
// back-fill. On SQLite (registerSqliteTable) it reads the catalog on a reader
// connection, and goes through the writer only when something is missing or stale (a
// new table or index, a newer schema): a table stored as this program has it is read
// without a write, so a file on a full disk (or one another process holds the write
// lock of) can still be read. On PostgreSQL the engine registers it
// (StorageEngine::registerTable). A TableState lives as long as the registry, so the
// rest of the runtime keeps plain pointers to it.
//
// Thread-safety: all methods are thread-safe.
#ifndef FLATSTORE_RUNTIME_TABLE_REGISTRY_H_
#define FLATSTORE_RUNTIME_TABLE_REGISTRY_H_

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/table_description.h"
#include "runtime/catalog.h"
#include "runtime/commit_path.h"
#include "runtime/reader_pool.h"
#include "runtime/writer.h"

namespace flatstore::internal {

// The SQLite path's registration: reads the catalog on a reader connection and writes
// through the writer only when something is missing or stale.
absl::Status registerSqliteTable(Writer& writer, ReaderPool& readers, TableState& table);

class TableRegistry {
 public:
  // `register_table` creates a table in the database or checks its stored layout, and
  // fills its state (StorageEngine::registerTable; registerSqliteTable for the SQLite
  // writer); incomplete indexes go to `backfills`.
  using Register = std::function<absl::Status(TableState&)>;
  TableRegistry(Register register_table, CommitPath* backfills)
      : register_(std::move(register_table)), backfills_(backfills) {}

  // The state of `table`, creating the table in the database on first use if needed.
  // FailedPrecondition after close(); the writer's error when the table cannot be
  // created or its stored layout does not match.
  absl::StatusOr<TableState*> get(const TableDescription& table) ABSL_LOCKS_EXCLUDED(mu_);
  // The tables in use that have live subscriptions.
  std::vector<TableState*> observed() ABSL_LOCKS_EXCLUDED(mu_);
  // Later calls of get() fail.
  void close() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // get() runs on every read, so the tables in use are also found by the address of
  // their description without the mutex: a slot is written once (state, then
  // description, then the count, each released) and never changed. A description is
  // static for the program's life, and the name is compared as well, so an address
  // reused by another table's description finds nothing and takes the locked path.
  static constexpr size_t kFastSlots = 32;
  struct FastSlot {
    std::atomic<const TableDescription*> desc{nullptr};
    std::atomic<TableState*> state{nullptr};
  };
  TableState* findFast(const TableDescription& d) const;
  void publishFast(const TableDescription& d, TableState* state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Register register_;
  CommitPath* const backfills_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<TableState>, std::less<>> tables_ ABSL_GUARDED_BY(mu_);
  std::array<FastSlot, kFastSlots> fast_;
  std::atomic<size_t> fast_used_{0};  // written under mu_
  std::atomic<bool> closed_{false};
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_TABLE_REGISTRY_H_
