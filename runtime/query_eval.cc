// In-memory evaluation of predicates with SQL's three-valued logic. The SQL compiler
// must agree with this file on every query; the differential tests hold them to it.
#include "flatstore/query.h"

namespace flatstore::internal {

Truth compareValues(const Value& field, CompareOp op, const Value& operand) {
  std::optional<std::strong_ordering> c = compare(field, operand);
  if (!c.has_value()) return Truth::kUnknown;
  bool r = false;
  switch (op) {
    case CompareOp::kEq:
      r = *c == 0;
      break;
    case CompareOp::kNe:
      r = *c != 0;
      break;
    case CompareOp::kLt:
      r = *c < 0;
      break;
    case CompareOp::kLe:
      r = *c <= 0;
      break;
    case CompareOp::kGt:
      r = *c > 0;
      break;
    case CompareOp::kGe:
      r = *c >= 0;
      break;
  }
  return r ? Truth::kTrue : Truth::kFalse;
}

namespace {

Truth negate(Truth t) {
  switch (t) {
    case Truth::kTrue:
      return Truth::kFalse;
    case Truth::kFalse:
      return Truth::kTrue;
    case Truth::kUnknown:
      return Truth::kUnknown;
  }
  return Truth::kUnknown;
}

// `field IN (values)`: true on a match; otherwise unknown when the field or a listed
// value is null (a NaN operand is one), else false. An empty list is false even for
// null (as in SQLite).
Truth evaluateIn(const Value& field, const std::vector<Value>& values) {
  if (values.empty()) return Truth::kFalse;
  if (field.isNull()) return Truth::kUnknown;
  bool null_listed = false;
  for (const Value& v : values) {
    if (compareValues(field, CompareOp::kEq, v) == Truth::kTrue) return Truth::kTrue;
    null_listed = null_listed || v.isNull();
  }
  return null_listed ? Truth::kUnknown : Truth::kFalse;
}

}  // namespace

Truth evaluate(const ExprNode& node, const uint8_t* buffer) {
  using Kind = ExprNode::Kind;
  switch (node.kind) {
    case Kind::kTrue:
      return Truth::kTrue;
    case Kind::kCompare:
      return compareValues(node.field->read(buffer), node.op, node.values.front());
    case Kind::kIn: {
      Truth t = evaluateIn(node.field->read(buffer), node.values);
      return node.negated ? negate(t) : t;
    }
    case Kind::kIsNull: {
      bool null = node.field->read(buffer).isNull();
      return null != node.negated ? Truth::kTrue : Truth::kFalse;
    }
    case Kind::kAnd: {
      Truth a = evaluate(*node.lhs, buffer);
      if (a == Truth::kFalse) return Truth::kFalse;
      Truth b = evaluate(*node.rhs, buffer);
      if (b == Truth::kFalse) return Truth::kFalse;
      return a == Truth::kTrue && b == Truth::kTrue ? Truth::kTrue : Truth::kUnknown;
    }
    case Kind::kOr: {
      Truth a = evaluate(*node.lhs, buffer);
      if (a == Truth::kTrue) return Truth::kTrue;
      Truth b = evaluate(*node.rhs, buffer);
      if (b == Truth::kTrue) return Truth::kTrue;
      return a == Truth::kFalse && b == Truth::kFalse ? Truth::kFalse : Truth::kUnknown;
    }
    case Kind::kNot:
      return negate(evaluate(*node.lhs, buffer));
  }
  return Truth::kUnknown;
}

}  // namespace flatstore::internal
