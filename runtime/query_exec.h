// Query execution: a QuerySpec compiled to SQL where it can be, the rest evaluated in
// memory, optionally merged with a transaction's own pending changes.
//
// The SQL path handles predicate terms whose fields are primary-key columns or complete
// indexes (joined index tables). Other terms, ordering by unindexed fields, and merging
// with pending changes are done in memory with the same semantics: three-valued logic,
// nulls first ascending and last descending, ties broken by rowid.
//
// Thread-safety: stateless functions; the Connection belongs to the caller.
#ifndef FLATSTORE_RUNTIME_QUERY_EXEC_H_
#define FLATSTORE_RUNTIME_QUERY_EXEC_H_

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "flatstore/fetch.h"
#include "runtime/catalog.h"
#include "runtime/sqlite.h"

namespace flatstore::internal {

// A transaction's pending view of one table: objects it changed or deleted, and objects
// it created (which get rowids only when committed).
struct PendingTable {
  struct Entry {
    bool deleted = false;
    int64_t rowid = 0;    // 0 for a pending insert
    int64_t sort_id = 0;  // rowid, or a number above every rowid for pending inserts
    ObjectBuffer bytes;   // current bytes unless deleted
    size_t change = 0;    // index of its EncodedChange (which holds its key)
  };
  // Unordered: queries that merge pending changes sort by the order and then sort_id.
  absl::flat_hash_map<int64_t, Entry> by_rowid;  // existing rows changed or deleted
  absl::flat_hash_map<int64_t, Entry> inserts;   // by sort_id
  // Keyed by encodeKey(): live pending keys, and keys no longer present.
  absl::flat_hash_map<std::string, int64_t> key_to_sort_id;
  absl::flat_hash_set<std::string> removed_keys;
  int64_t next_insert_id = int64_t{1} << 62;

  bool empty() const { return by_rowid.empty() && inserts.empty(); }
  // A byte string that identifies a primary key (for hashing).
  static std::string encodeKey(const std::vector<Value>& key);
};

// Runs `spec` on `c` (inside the caller's read transaction), merged with `pending`
// when it is not null.
absl::StatusOr<std::vector<RawRow>> executeQuery(Connection& c, const TableState& table,
                                                 const QuerySpec& spec,
                                                 const PendingTable* pending);
absl::StatusOr<int64_t> executeCount(Connection& c, const TableState& table, const QuerySpec& spec,
                                     const PendingTable* pending);

// Reads one committed row by rowid or by primary key (no pending changes).
absl::StatusOr<std::optional<RawRow>> readRowByRowid(Connection& c, const TableState& table,
                                                     int64_t rowid);
absl::StatusOr<std::optional<RawRow>> readRowByKey(Connection& c, const TableState& table,
                                                   const std::vector<Value>& key);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_QUERY_EXEC_H_
