#include "runtime/sql_terms.h"

namespace flatstore::internal {

bool fieldInSql(const TableState& table, const FieldInfo& field) {
  if (field.storage == FieldStorage::kPrimaryKey) return true;
  return field.storage == FieldStorage::kIndexed && table.indexReady(field.slot);
}

bool compilableInSql(const TableState& table, const ExprNode& n) {
  using Kind = ExprNode::Kind;
  switch (n.kind) {
    case Kind::kTrue:
      return true;
    case Kind::kCompare:
    case Kind::kIn:
    case Kind::kIsNull:
      return fieldInSql(table, *n.field);
    case Kind::kAnd:
    case Kind::kOr:
      return compilableInSql(table, *n.lhs) && compilableInSql(table, *n.rhs);
    case Kind::kNot:
      return compilableInSql(table, *n.lhs);
  }
  return false;
}

const char* sqlCompareOperator(CompareOp op) {
  // By CompareOp's order: kEq, kNe, kLt, kLe, kGt, kGe.
  static constexpr const char* kOperators[] = {" = ", " <> ", " < ", " <= ", " > ", " >= "};
  return kOperators[static_cast<int>(op)];
}

}  // namespace flatstore::internal
