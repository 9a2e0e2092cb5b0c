#include "flatstore/value.h"

#include <cmath>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace flatstore {
namespace {

// Orders an integer against a real exactly (as SQLite does), without the rounding that
// converting a large int64 to double would bring. `r` is never NaN (Value::real makes
// a NaN null).
std::strong_ordering compareIntReal(int64_t i, double r) {
  if (r >= 9223372036854775808.0) return std::strong_ordering::less;
  if (r < -9223372036854775808.0) return std::strong_ordering::greater;
  double whole = std::trunc(r);
  int64_t ri = static_cast<int64_t>(whole);
  if (i != ri) return i <=> ri;
  if (r > whole) return std::strong_ordering::less;
  if (r < whole) return std::strong_ordering::greater;
  return std::strong_ordering::equal;
}

// Neither is NaN (Value::real makes a NaN null), so this order is total; -0.0 == 0.0.
std::strong_ordering compareReals(double a, double b) {
  if (a < b) return std::strong_ordering::less;
  if (a > b) return std::strong_ordering::greater;
  return std::strong_ordering::equal;
}

}  // namespace

std::optional<std::strong_ordering> compare(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.isNull() || b.isNull()) return std::nullopt;
  K ka = a.kind();
  K kb = b.kind();
  if (ka == K::kText || kb == K::kText) {
    if (ka != kb)
      return ka == K::kText ? std::strong_ordering::greater : std::strong_ordering::less;
    int c = a.asText().compare(b.asText());
    return c < 0 ? std::strong_ordering::less
                 : (c > 0 ? std::strong_ordering::greater : std::strong_ordering::equal);
  }
  if (ka == K::kInteger && kb == K::kInteger) return a.asInteger() <=> b.asInteger();
  if (ka == K::kReal && kb == K::kReal) return compareReals(a.asReal(), b.asReal());
  if (ka == K::kInteger) return compareIntReal(a.asInteger(), b.asReal());
  return 0 <=> compareIntReal(b.asInteger(), a.asReal());
}

std::strong_ordering sortOrder(const Value& a, const Value& b) {
  if (a.isNull() || b.isNull()) return !a.isNull() <=> !b.isNull();
  return *compare(a, b);
}

std::string Value::toString() const {
  switch (kind()) {
    case Kind::kNull:
      return "NULL";
    case Kind::kInteger:
      return absl::StrCat(asInteger());
    case Kind::kReal:
      return absl::StrCat(asReal());
    case Kind::kText:
      return absl::StrCat("\"", absl::CEscape(asText()), "\"");
  }
  return "?";
}

}  // namespace flatstore
