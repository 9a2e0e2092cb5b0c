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
// Appends the terms of `node`'s top-level AND chain to `out` (none for null or kTrue), as
// pointers into `node`, which must outlive them. `Out` is a vector of const ExprNode*.
template <class Out>
void andTerms(const ExprNode* node, Out* out) {
  if (node == nullptr) return;
  if (node->kind == ExprNode::Kind::kAnd) {
    andTerms(node->lhs.get(), out);
    andTerms(node->rhs.get(), out);
  } else if (node->kind != ExprNode::Kind::kTrue) {
    out->push_back(node);
  }
}
// " = ", " <> ", " < ", ... with the spaces around it.
const char* sqlCompareOperator(CompareOp op);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_SQL_TERMS_H_
