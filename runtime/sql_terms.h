// What every SQL dialect of the query engine shares: which predicate terms SQL can
// answer, the top-level AND terms of a predicate, and the comparison operators, which
// SQLite and PostgreSQL spell alike. The dialects differ in everything else (columns,
// joins, parameters, null ordering), which each compiler (query_exec.cc for SQLite,
// pg_query.cc for PostgreSQL) keeps to itself.
//
// Thread-safety: stateless functions.
#ifndef FLATSTORE_RUNTIME_SQL_TERMS_H_
#define FLATSTORE_RUNTIME_SQL_TERMS_H_

#include <memory>
#include <vector>

#include "flatstore/query.h"
#include "runtime/catalog.h"

namespace flatstore::internal {

// Whether SQL holds `field`'s value for `table`: a primary-key column, or an index whose
// back-fill is complete.
bool fieldInSql(const TableState& table, const FieldInfo& field);
// Whether every field `node` reads is in SQL.
bool compilableInSql(const TableState& table, const ExprNode& node);
// Appends the terms of `node`'s top-level AND chain (none for null or kTrue).
void andTerms(const std::shared_ptr<const ExprNode>& node,
              std::vector<std::shared_ptr<const ExprNode>>* out);
// " = ", " <> ", " < ", ... with the spaces around it.
const char* sqlCompareOperator(CompareOp op);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_SQL_TERMS_H_
