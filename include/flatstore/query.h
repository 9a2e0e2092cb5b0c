// Typed query fields, predicates and orderings.
//
// The code generator emits, for each entity `Monster`, a `MonsterFields` struct whose
// members are Field<Monster, V> descriptors, one per queryable field: scalars, enums,
// bools and strings of the root table, and key paths into structs, nested tables and
// union members (`MonsterFields::pos.x`, `MonsterFields::equipped.asWeapon.damage`).
//
//   using F = game::MonsterFields;
//   flatstore::Predicate<game::Monster> p = F::hp > 10 && F::color == game::Color::Red;
//
// Comparing a field with a value of the wrong type does not compile: an integer field
// takes integers, a floating-point field numbers, a bool field bools, an enum field
// values of its enum, a string field strings.
//
// A predicate evaluates with SQL's three-valued logic: a comparison with an absent
// (null) field is unknown, `!unknown` is unknown, `false && unknown` is false and
// `true || unknown` is true. An object matches when the predicate is true.
//
// Thread-safety: descriptors are constants; predicates and orderings are immutable
// values and may be shared across threads.
#ifndef FLATSTORE_QUERY_H_
#define FLATSTORE_QUERY_H_

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "flatstore/entity.h"
#include "flatstore/value.h"

namespace flatstore {

// Where SQL can find a field's value.
enum class FieldStorage {
  kPrimaryKey,  // a primary-key column of the entity table; `slot` is its position
  kIndexed,     // an index table; `slot` is the index's position in the description
  kUnindexed,   // only in the object: evaluated in memory
};

// The untyped description of one queryable field or key path.
struct FieldInfo {
  std::string_view path;     // schema names from the root table: "pos.x"
  std::string_view id_path;  // FlatBuffers field ids: "5.0"; union members as "9u1"
  FieldStorage storage;
  int slot;
  // Reads the field from the verified root object in `buffer`; null when absent.
  Value (*read)(const uint8_t* buffer);
};

enum class CompareOp { kEq, kNe, kLt, kLe, kGt, kGe };

// SQL's three truth values.
enum class Truth { kFalse, kTrue, kUnknown };

namespace internal {

// One node of a predicate tree. Built only through Field and Predicate operators.
struct ExprNode {
  enum class Kind { kTrue, kCompare, kIn, kIsNull, kAnd, kOr, kNot };
  Kind kind = Kind::kTrue;
  CompareOp op = CompareOp::kEq;        // kCompare
  bool negated = false;                 // kIn: notIn; kIsNull: isNotNull
  const FieldInfo* field = nullptr;     // kCompare, kIn, kIsNull
  std::vector<Value> values;            // kCompare: one; kIn: the list
  std::shared_ptr<const ExprNode> lhs;  // kAnd, kOr, kNot
  std::shared_ptr<const ExprNode> rhs;  // kAnd, kOr
};

// Evaluates `node` on the verified root object in `buffer`.
Truth evaluate(const ExprNode& node, const uint8_t* buffer);

// Compares a non-null field value with an operand, as SQL does.
Truth compareValues(const Value& field, CompareOp op, const Value& operand);

template <class V, class U>
concept ComparableWith = (std::is_same_v<V, std::string_view> &&
                          std::is_convertible_v<const U&, std::string_view>) ||
                         (std::is_same_v<V, bool> && std::is_same_v<U, bool>) ||
                         (std::is_enum_v<V> && std::is_same_v<U, V>) ||
                         (std::is_integral_v<V> && !std::is_same_v<V, bool> &&
                          std::is_integral_v<U> && !std::is_same_v<U, bool>) ||
                         (std::is_floating_point_v<V> && std::is_arithmetic_v<U> &&
                          !std::is_same_v<U, bool>);

}  // namespace internal

template <class T>
class Predicate;

// One sort key: a field and a direction. Nulls sort first ascending, last descending
// (SQLite's order); ties are broken by rowid.
template <class T>
struct Ordering {
  const FieldInfo* field;
  bool descending;
};

// A typed descriptor of a queryable field of entity T with C++ value type V
// (std::string_view for strings).
template <class T, class V>
class Field {
 public:
  using Entity = T;
  using ValueType = V;

  constexpr explicit Field(const FieldInfo& info) : info_(&info) {}

  const FieldInfo& info() const { return *info_; }

  // The field's value in a verified object; null when absent.
  Value valueIn(const EntityBase& object) const { return info_->read(object.data()); }

  Ordering<T> ascending() const { return {info_, false}; }
  Ordering<T> descending() const { return {info_, true}; }

  template <class U>
  requires internal::ComparableWith<V, U> Predicate<T> in(std::initializer_list<U> values)
  const { return makeIn(values, false); }
  template <class U>
  requires internal::ComparableWith<V, U> Predicate<T> in(const std::vector<U>& values)
  const { return makeIn(values, false); }
  template <class U>
  requires internal::ComparableWith<V, U> Predicate<T> notIn(std::initializer_list<U> values)
  const { return makeIn(values, true); }
  template <class U>
  requires internal::ComparableWith<V, U> Predicate<T> notIn(const std::vector<U>& values)
  const { return makeIn(values, true); }
  Predicate<T> isNull() const { return makeIsNull(false); }
  Predicate<T> isNotNull() const { return makeIsNull(true); }

  // Builds a comparison node; used by the operators below.
  template <class U>
  Predicate<T> compare(CompareOp op, const U& operand) const {
    auto node = std::make_shared<internal::ExprNode>();
    node->kind = internal::ExprNode::Kind::kCompare;
    node->op = op;
    node->field = info_;
    node->values.push_back(toValue(operand));
    return Predicate<T>(std::move(node));
  }

 private:
  template <class U>
  static Value toValue(const U& u) {
    if constexpr (std::is_same_v<V, std::string_view>) {
      return Value::text(std::string(std::string_view(u)));
    } else {
      return Value::of(u);
    }
  }
  template <class Range>
  Predicate<T> makeIn(const Range& values, bool negated) const {
    auto node = std::make_shared<internal::ExprNode>();
    node->kind = internal::ExprNode::Kind::kIn;
    node->negated = negated;
    node->field = info_;
    for (const auto& v : values) node->values.push_back(toValue(v));
    return Predicate<T>(std::move(node));
  }
  Predicate<T> makeIsNull(bool negated) const {
    auto node = std::make_shared<internal::ExprNode>();
    node->kind = internal::ExprNode::Kind::kIsNull;
    node->negated = negated;
    node->field = info_;
    return Predicate<T>(std::move(node));
  }

  const FieldInfo* info_;
};

// A boolean expression over the fields of entity T.
template <class T>
class Predicate {
 public:
  // The predicate every object matches.
  Predicate() : node_(std::make_shared<internal::ExprNode>()) {}
  explicit Predicate(std::shared_ptr<const internal::ExprNode> node) : node_(std::move(node)) {}

  const internal::ExprNode& node() const { return *node_; }
  const std::shared_ptr<const internal::ExprNode>& shared() const { return node_; }

  // Three-valued evaluation on a verified object.
  Truth evaluate(const EntityBase& object) const {
    return internal::evaluate(*node_, object.data());
  }
  Truth evaluate(const uint8_t* buffer) const { return internal::evaluate(*node_, buffer); }
  // True when the predicate is true (not false, not unknown) for `object`.
  bool matches(const EntityBase& object) const { return evaluate(object) == Truth::kTrue; }

  friend Predicate operator&&(const Predicate& a, const Predicate& b) {
    return combine(internal::ExprNode::Kind::kAnd, a, b);
  }
  friend Predicate operator||(const Predicate& a, const Predicate& b) {
    return combine(internal::ExprNode::Kind::kOr, a, b);
  }
  friend Predicate operator!(const Predicate& a) {
    auto node = std::make_shared<internal::ExprNode>();
    node->kind = internal::ExprNode::Kind::kNot;
    node->lhs = a.node_;
    return Predicate(std::move(node));
  }

 private:
  static Predicate combine(internal::ExprNode::Kind kind, const Predicate& a, const Predicate& b) {
    auto node = std::make_shared<internal::ExprNode>();
    node->kind = kind;
    node->lhs = a.node_;
    node->rhs = b.node_;
    return Predicate(std::move(node));
  }

  std::shared_ptr<const internal::ExprNode> node_;
};

#define FLATSTORE_FIELD_OPERATOR_(op, code)               \
  template <class T, class V, class U>                    \
  requires internal::ComparableWith<V, U> Predicate<T>    \
  operator op(const Field<T, V>& field, const U& value) { \
    return field.compare(CompareOp::code, value);         \
  }
FLATSTORE_FIELD_OPERATOR_(==, kEq)
FLATSTORE_FIELD_OPERATOR_(!=, kNe)
FLATSTORE_FIELD_OPERATOR_(<, kLt)
FLATSTORE_FIELD_OPERATOR_(<=, kLe)
FLATSTORE_FIELD_OPERATOR_(>, kGt)
FLATSTORE_FIELD_OPERATOR_(>=, kGe)
#undef FLATSTORE_FIELD_OPERATOR_

}  // namespace flatstore

#endif  // FLATSTORE_QUERY_H_
