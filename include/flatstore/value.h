// Value: one queryable value (a primary-key column, an index entry, a query operand).
//
// Values follow SQLite's storage classes, because the same value is bound into SQL and
// compared in memory, and both paths must agree:
//   - null: an absent string, nested table, struct or union member, or optional scalar;
//     and a NaN float or double (see below);
//   - integer: every integral field, bools (0/1) and enums (their underlying value);
//   - real: float and double fields that are numbers, infinities included;
//   - text: strings, compared bytewise like SQLite's BINARY collation.
// A uint64 field is stored as the int64 with the same bits, so values above 2^63 - 1
// sort below zero; this matches what SQLite can store.
//
// NaN is null. SQLite has no NaN: it stores and binds one as NULL, so an index or key
// column holding a NaN field holds NULL. Value::real(NaN) is therefore the null value,
// and every query path treats a NaN field or operand alike: it equals nothing, compares
// as unknown with every operator (also !=), is matched by isNull(), never by in() or
// notIn(), and sorts with the nulls. The object itself keeps its NaN; only queries see
// null. +inf and -inf are ordinary reals (above and below every other number), and
// -0.0 equals 0.0 (ties are broken by rowid).
//
// Thread-safety: a Value is a plain value type; distinct objects may be used from
// distinct threads freely.
#ifndef FLATSTORE_VALUE_H_
#define FLATSTORE_VALUE_H_

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace flatstore {

class Value {
 public:
  enum class Kind { kNull, kInteger, kReal, kText };

  // A null value.
  Value() = default;

  static Value integer(int64_t v) {
    Value r(Kind::kInteger);
    r.number_.integer = v;
    return r;
  }
  // The null value when `v` is NaN (see above).
  static Value real(double v) {
    // `v != v` only for a NaN; this header leaves out <cmath> for std::isnan, since
    // every generated header includes it.
    if (v != v) return Value();
    Value r(Kind::kReal);
    r.number_.real = v;
    return r;
  }
  static Value text(std::string v) {
    Value r(Kind::kText);
    r.text_ = std::move(v);
    return r;
  }

  // Converts a field value of any queryable C++ type: arithmetic types, bools, enums and
  // anything convertible to std::string_view.
  template <class T>
  static Value of(const T& v) {
    using D = std::decay_t<T>;
    if constexpr (std::is_enum_v<D>) {
      return integer(static_cast<int64_t>(v));
    } else if constexpr (std::is_integral_v<D>) {
      return integer(static_cast<int64_t>(v));
    } else if constexpr (std::is_floating_point_v<D>) {
      return real(static_cast<double>(v));
    } else {
      static_assert(std::is_convertible_v<const T&, std::string_view>,
                    "Value::of takes arithmetic, enum or string-like values");
      return text(std::string(std::string_view(v)));
    }
  }

  Kind kind() const { return kind_; }
  bool isNull() const { return kind_ == Kind::kNull; }

  // REQUIRES: the matching kind().
  int64_t asInteger() const { return number_.integer; }
  double asReal() const { return number_.real; }
  const std::string& asText() const { return text_; }

  // SQL-style comparison of two non-null values: integers and reals compare
  // numerically, texts bytewise, and any number sorts before any text (SQLite's rule).
  // Returns nullopt when either side is null.
  friend std::optional<std::strong_ordering> compare(const Value& a, const Value& b);

  // Total order used for sorting: null first, then as compare().
  friend std::strong_ordering sortOrder(const Value& a, const Value& b);

  // Exact equality of kind and content (null == null here, unlike SQL).
  friend bool operator==(const Value& a, const Value& b) {
    if (a.kind_ != b.kind_) return false;
    switch (a.kind_) {
      case Kind::kNull:
        return true;
      case Kind::kInteger:
        return a.number_.integer == b.number_.integer;
      case Kind::kReal:
        return a.number_.real == b.number_.real;
      case Kind::kText:
        return a.text_ == b.text_;
    }
    return false;
  }

  // A readable rendering for messages: NULL, 42, 1.5, "text".
  std::string toString() const;

 private:
  explicit Value(Kind kind) : kind_(kind) {}

  // A tagged union by hand rather than std::variant: every file that includes a
  // generated header includes this one, and instantiating std::variant<..., std::string>
  // and its members costs such a file about a tenth of the time flatc's header does.
  // `number_` is meaningful for kInteger and kReal, `text_` for kText (empty otherwise).
  Kind kind_ = Kind::kNull;
  union Number {
    int64_t integer;
    double real;
  } number_{};
  std::string text_;
};

}  // namespace flatstore

#endif  // FLATSTORE_VALUE_H_
