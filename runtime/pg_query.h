// Queries on PostgreSQL: a QuerySpec compiled to PostgreSQL's SQL where its fields
// allow, the rest evaluated in memory with the runtime's own evaluate(), optionally
// merged with a closure's pending changes. The answers are those of the SQLite path
// (query_exec.h) and of the in-memory evaluation, which follow SQLite's rules; where
// PostgreSQL's defaults differ, the compiled SQL spells SQLite's rule out:
//   - nulls sort first ascending and last descending (PostgreSQL: the opposite), so
//     every ORDER BY term says NULLS FIRST or NULLS LAST; ties go by rowid;
//   - every number sorts before every text and the two never compare equal (PostgreSQL
//     refuses to compare them), so a comparison of a text column with a number, or of a
//     number column with a text, compiles to its constant outcome, unknown for a null
//     column;
//   - text compares bytewise (texts are stored as bytea, see pg_schema.h);
//   - x IN () is false and x NOT IN () true, also for a null x (PostgreSQL has no empty
//     list);
//   - NaN is null: the runtime never binds one (Value::real(NaN) is null) and stores
//     none, so a comparison with it is unknown and isNull() matches it, as on SQLite.
// Fields in SQL are primary-key columns and index columns whose back-fill is complete;
// others are read from the object in memory.
//
// Thread-safety: stateless functions; the connection belongs to the caller.
#ifndef FLATSTORE_RUNTIME_PG_QUERY_H_
#define FLATSTORE_RUNTIME_PG_QUERY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flatstore/fetch.h"
#include "runtime/catalog.h"
#include "runtime/pg_schema.h"
#include "runtime/postgres.h"
#include "runtime/query_exec.h"

namespace flatstore::internal {

// A compiled query: the SQL, its parameters ($1, $2, ... in order) and what is left for
// memory.
struct PgPlan {
  std::string sql;
  std::vector<Value> binds;
  // Points into the spec the plan was made of, which must outlive it.
  std::vector<const ExprNode*> residual;
  bool order_in_sql = false;
  bool limit_in_sql = false;
};

// Compiles `spec` for `table`: `select` is the select list ("t.rowid, t.p, t.vs").
// With `has_pending` ordering and windows stay in memory (pending objects join them).
PgPlan pgPlan(const TableState& table, const PgTableSql& sql, const QuerySpec& spec,
              bool has_pending, std::string_view select);

absl::StatusOr<std::vector<RawRow>> pgExecuteQuery(PgConnection& c, const TableState& table,
                                                   const PgTableSql& sql, const QuerySpec& spec,
                                                   const PendingTable* pending);
absl::StatusOr<int64_t> pgExecuteCount(PgConnection& c, const TableState& table,
                                       const PgTableSql& sql, const QuerySpec& spec,
                                       const PendingTable* pending);
absl::StatusOr<std::optional<RawRow>> pgReadRowByRowid(PgConnection& c, const TableState& table,
                                                       const PgTableSql& sql, int64_t rowid);
absl::StatusOr<std::optional<RawRow>> pgReadRowByKey(PgConnection& c, const TableState& table,
                                                     const PgTableSql& sql,
                                                     const std::vector<Value>& key);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PG_QUERY_H_
