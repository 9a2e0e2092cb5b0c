#include "runtime/row_writes.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"

namespace flatstore::internal {

std::string keyText(const std::vector<Value>& key) {
  std::string out = "(";
  for (size_t i = 0; i < key.size(); ++i) {
    if (i > 0) out += ", ";
    out += key[i].toString();
  }
  return out + ")";
}
// The first pass of a request: removes what its deletions and key or unique-value
// changes free, so that the second pass can take over freed keys and values in any
// order (a closure may delete b and give a b's key, or swap two keys).
absl::Status applyRemovals(Connection& db, const EncodedChange& c) {
  TableState& t = *c.table;
  const TableDescription& d = t.desc;
  std::string_view what = d.table_name;
  bool remove_row =
      c.op == EncodedChange::Op::kDelete || (c.op == EncodedChange::Op::kUpdate && c.key_changed);
  if (remove_row) {
    FLATSTORE_ASSIGN_OR_RETURN(Statement * s, db.cached(t.delete_sql, what));
    s->bindInt(1, c.rowid);
    FLATSTORE_RETURN_IF_ERROR(s->run(what));
  }
  for (size_t x = 0; x < t.writtenIndexes(); ++x) {
    bool remove_entry =
        c.op == EncodedChange::Op::kDelete ||
        (c.op == EncodedChange::Op::kUpdate && t.indexUnique(x) && indexChanged(c, x));
    if (!remove_entry) continue;
    FLATSTORE_ASSIGN_OR_RETURN(Statement * is, db.cached(t.index_delete_sql[x], what));
    is->bindInt(1, c.rowid);
    FLATSTORE_RETURN_IF_ERROR(is->run(what));
  }
  return absl::OkStatus();
}

// The second pass: writes inserted and updated objects and their index entries.
absl::Status applyWrites(Connection& db, EncodedChange& c, int64_t vs) {
  if (c.op != EncodedChange::Op::kInsert && c.op != EncodedChange::Op::kUpdate) {
    return absl::OkStatus();
  }
  TableState& t = *c.table;
  const TableDescription& d = t.desc;
  std::string_view what = d.table_name;
  if (c.index_values.size() != t.writtenIndexes()) {
    // The writer runs a change encoded with another bridge again (see applyRequest).
    return absl::InternalError(absl::StrCat("table ", av(what), ": a change has ",
                                            c.index_values.size(), " index values for ",
                                            t.writtenIndexes(), " indexes"));
  }
  bool insert = c.op == EncodedChange::Op::kInsert;
  // An update keeps its row in place unless its key changed (then the first pass
  // removed it and it is inserted again with the same rowid).
  const std::string& sql = insert          ? t.insert_sql
                           : c.key_changed ? t.reinsert_sql
                                           : t.update_bytes_sql;
  FLATSTORE_ASSIGN_OR_RETURN(Statement * s, db.cached(sql, what));
  int i = 1;
  if (!insert && c.key_changed) s->bindInt(i++, c.rowid);
  if (insert || c.key_changed) {
    // The key and the index values outlive the statements' runs, which reset them.
    for (const Value& k : c.key) s->bindStatic(i++, k);
  }
  s->bindBlobStatic(i++, c.bytes.span());
  s->bindInt(i++, vs);
  if (!insert && !c.key_changed) s->bindInt(i++, c.rowid);
  absl::Status st = s->run(what);
  if (absl::IsAlreadyExists(st)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "table ", av(what), ": an object with primary key ", keyText(c.key), " already exists"));
  }
  FLATSTORE_RETURN_IF_ERROR(st);
  if (insert) c.rowid = db.lastInsertRowid();
  for (size_t x = 0; x < t.writtenIndexes(); ++x) {
    if (!indexChanged(c, x)) continue;
    // Entries of new objects and unique entries removed by the first pass are inserted;
    // other changed entries are updated in place.
    bool fresh = insert || t.indexUnique(x);
    FLATSTORE_ASSIGN_OR_RETURN(
        Statement * is, db.cached(fresh ? t.index_insert_sql[x] : t.index_upsert_sql[x], what));
    is->bindInt(1, c.rowid);
    is->bindStatic(2, c.index_values[x]);
    absl::Status ist = is->run(what);
    if (absl::IsAlreadyExists(ist)) {
      return absl::AlreadyExistsError(absl::StrCat("table ", av(what), ": unique field '",
                                                   av(t.indexFieldPath(x)), "' already has value ",
                                                   c.index_values[x].toString()));
    }
    FLATSTORE_RETURN_IF_ERROR(ist);
  }
  return absl::OkStatus();
}

}  // namespace flatstore::internal
