// Catalog: the database's own tables, and the state of every entity table in use.
//
//   flatstore_meta(key TEXT PRIMARY KEY, value)      format version, log pruning mark,
//                                                    catalog generation
//   flatstore_tables(name TEXT PRIMARY KEY, version INTEGER, schema_hash INTEGER,
//                    schema BLOB)                    one row per entity table (`version`
//                                                    is no longer maintained: format 2
//                                                    detects conflicts in the change log);
//                                                    `schema` is the newest any program
//                                                    stored (see version_bridge.h)
//   flatstore_indexes(index_table TEXT PRIMARY KEY, table_name TEXT,
//                     next_rowid INTEGER)            back-fill progress; NULL: complete
//   flatstore_kv(key TEXT PRIMARY KEY, kind INTEGER, type TEXT, value BLOB)
//   flatstore_changes(seq INTEGER PRIMARY KEY, origin INTEGER, changes BLOB,
//                     last_vs INTEGER)               the change log: one row per commit,
//                                                    pruned to a bounded number of commits;
//                                                    its newest row holds the commit
//                                                    sequence (see change_log.h)
//
// Functions taking a Connection run on the writer's connection (the only writer).
#ifndef FLATSTORE_RUNTIME_CATALOG_H_
#define FLATSTORE_RUNTIME_CATALOG_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flatstore/table_description.h"
#include "runtime/plan_cache.h"
#include "runtime/sqlite.h"

namespace flatstore::internal {

class VersionBridge;

// Format 2 (this one) writes the commit sequence only in the change log; files of
// format 1 are upgraded at open.
inline constexpr int64_t kFormatVersion = 2;

// Checks that `c` holds an empty database or a flatstore database of a format this
// version reads, then sets WAL mode and creates the catalog tables (or upgrades an
// older format). Leaves a foreign
// file untouched (every check happens before the first write).
absl::Status initializeDatabase(Connection& c, bool synchronous_full);

// An entity table in use: its description, its SQL, and which indexes are complete.
// Index readiness is read by query threads and changed by the writer's back-fill.
// Everything else is set while the table is loaded, before the state is shared.
class TableState {
 public:
  explicit TableState(const TableDescription& d);
  ~TableState();

  const TableDescription& desc;
  int64_t id = 0;                // rowid in flatstore_tables, used by the change log
  std::string quoted;            // "ns.Name"
  std::string insert_sql;        // INSERT INTO "T"(keys..., p, vs) VALUES(...)
  std::string update_bytes_sql;  // UPDATE "T" SET p=?, vs=? WHERE rowid=?
  std::string reinsert_sql;      // INSERT INTO "T"(rowid, keys..., p, vs) VALUES(...)
  std::string select_by_rowid_sql;
  std::string select_by_key_sql;
  std::string delete_sql;  // DELETE FROM "T" WHERE rowid=?
  // Per index written: the description's, then the bridge's foreign indexes. Read and
  // changed (by refreshTable) only by the writer.
  std::vector<std::string> index_insert_sql;
  std::vector<std::string> index_upsert_sql;
  std::vector<std::string> index_delete_sql;
  // The catalog generation (see readCatalogGeneration) the bridge was made at. Writer
  // only, once the state is shared.
  int64_t catalog_seen = 0;

  // Set when the file knows more about this table than the program's schema: newer or
  // deprecated fields, or indexes the program does not declare (see version_bridge.h).
  // Null for a program built from the newest schema that declares every index. Closures
  // read it while encoding; the writer replaces it when a newer program changed the
  // catalog, and a change encoded with another bridge than the current one runs again.
  const VersionBridge* bridge() const { return bridge_.load(std::memory_order_acquire); }
  // Makes `b` the current bridge. The replaced one lives on with the state, since a
  // closure may still be encoding with it. Writer only, once the state is shared.
  void setBridge(std::unique_ptr<const VersionBridge> b);

  // The indexes every write maintains: the description's, then the foreign ones.
  // Writer only.
  size_t writtenIndexes() const { return index_insert_sql.size(); }
  bool indexUnique(size_t i) const;
  std::string_view indexFieldPath(size_t i) const;
  // Appends one value per index that `bridge` (a bridge of this table, or null) makes
  // written, for the verified object in `buffer`.
  void indexValuesOf(const uint8_t* buffer, const VersionBridge* bridge,
                     std::vector<Value>* out) const;
  // Appends the insert, upsert and delete SQL of index table `table`.
  void addIndexSql(std::string_view table);

  // Live subscriptions on this table; the writer publishes commits only when > 0.
  std::atomic<int> subscriptions{0};
  // Closures on this table hand their tables on only at their commit (no pipelining)
  // while this is above 0; each such hand-off counts it down. A closure that read what
  // a pipelined predecessor was writing sets it (see pipeline.h).
  std::atomic<int> pipeline_pause{0};

  // The SQL of the query shapes this table was queried with (query_exec.cc).
  mutable PlanCache plans;

  bool indexReady(int i) const {
    return ready_[static_cast<size_t>(i)].load(std::memory_order_acquire);
  }
  void setIndexReady(int i, bool ready) {
    ready_[static_cast<size_t>(i)].store(ready, std::memory_order_release);
  }

 private:
  std::unique_ptr<std::atomic<bool>[]> ready_;
  std::atomic<const VersionBridge*> bridge_{nullptr};
  std::vector<std::unique_ptr<const VersionBridge>> bridges_;  // the current and replaced ones
};

// An index the file holds for an entity table: its row in flatstore_indexes, and
// whether its SQL index is unique.
struct StoredIndex {
  std::string table;    // the index table, "<ns.Name>$<id path>"
  std::string id_path;  // "12.0"
  bool unique = false;
  std::optional<int64_t> backfill_next;  // the first rowid not back-filled; none: complete
};
// The indexes of entity table `table` in the order they were created.
absl::StatusOr<std::vector<StoredIndex>> readStoredIndexes(Connection& c, std::string_view table);

// Creates `state`'s table and indexes if missing, checks the stored layout hash, and
// records which indexes need a back-fill. Keeps the stored schema the newest: replaces
// it when the program's is newer, and gives `state` a bridge when the file knows more
// than the program. FailedPrecondition when the two schemas diverged (see
// compareSchemas). Must run inside a write transaction.
absl::Status ensureTable(Connection& c, TableState& state);
// The same checks inside a read transaction, for a table stored as this schema has it:
// true when nothing is missing or stale (the table, its current schema, every index),
// and `state` is then ready; false when ensureTable has something to write.
absl::StatusOr<bool> loadStoredTable(Connection& c, TableState& state);

// The catalog generation: a counter in flatstore_meta that every program bumps when it
// stores a newer schema or adds an index, so that other processes notice (0 in files
// without it).
absl::StatusOr<int64_t> readCatalogGeneration(Connection& c);
// Makes `state`'s bridge and written indexes match the catalog as it is now, for a
// table already in use. Must run inside a write transaction, on the writer.
absl::Status refreshTable(Connection& c, TableState& state);

// Fills up to `batch` rows of the first incomplete index of `state`. Returns true when
// more work remains. Must run inside a write transaction.
absl::StatusOr<bool> backfillStep(Connection& c, TableState& state, int batch);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_CATALOG_H_
