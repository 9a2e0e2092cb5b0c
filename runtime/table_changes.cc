#include "runtime/table_changes.h"

#include <algorithm>
#include <cmath>

#include "runtime/sql_terms.h"

namespace flatstore::internal {

// ---------------------------------------------------------------------------------------
// Ranges of filters and the changes they select

// (Value::real makes a NaN null, so queries treat it as null everywhere; the NaN test only
// guards the order.)
bool ordered(const Value& v) {
  return !v.isNull() && !(v.kind() == Value::Kind::kReal && std::isnan(v.asReal()));
}

void raiseLow(FieldRange* r, const Value& v, bool inclusive) {
  if (r->low.has_value()) {
    std::strong_ordering c = *compare(v, *r->low);
    if (c < 0 || (c == 0 && (inclusive || !r->low_inclusive))) return;
  }
  r->low = v;
  r->low_inclusive = inclusive;
}

void lowerHigh(FieldRange* r, const Value& v, bool inclusive) {
  if (r->high.has_value()) {
    std::strong_ordering c = *compare(v, *r->high);
    if (c > 0 || (c == 0 && (inclusive || !r->high_inclusive))) return;
  }
  r->high = v;
  r->high_inclusive = inclusive;
}

namespace {

// Narrows `r` (on n.field) by what one conjunct requires for a true result; false when
// the conjunct bounds nothing usable. compareValues() is true only for a non-null field
// whose compare() with the operand has the operator's sign; `in` is true only when the
// field equals one of the listed values.
bool narrowBy(const ExprNode& n, FieldRange* r) {
  using Kind = ExprNode::Kind;
  if (n.kind == Kind::kCompare) {
    const Value& v = n.values.front();
    if (!ordered(v)) return false;
    switch (n.op) {
      case CompareOp::kEq:
        raiseLow(r, v, true);
        lowerHigh(r, v, true);
        return true;
      case CompareOp::kLt:
        lowerHigh(r, v, false);
        return true;
      case CompareOp::kLe:
        lowerHigh(r, v, true);
        return true;
      case CompareOp::kGt:
        raiseLow(r, v, false);
        return true;
      case CompareOp::kGe:
        raiseLow(r, v, true);
        return true;
      case CompareOp::kNe:
        return false;
    }
    return false;
  }
  if (n.kind == Kind::kIn && !n.negated && !n.values.empty()) {
    // Null values never equal anything; a NaN one would break the order.
    const Value* least = nullptr;
    const Value* greatest = nullptr;
    for (const Value& v : n.values) {
      if (v.isNull()) continue;
      if (!ordered(v)) return false;
      if (least == nullptr || *compare(v, *least) < 0) least = &v;
      if (greatest == nullptr || *compare(v, *greatest) > 0) greatest = &v;
    }
    if (least == nullptr) return false;
    raiseLow(r, *least, true);
    lowerHigh(r, *greatest, true);
    return true;
  }
  return false;
}

}  // namespace

namespace {

// The bit of the top-level field that `field`'s id path ("5.0", "9u1") starts with.
uint64_t topLevelBit(const FieldInfo& field) {
  int id = 0;
  for (char c : field.id_path) {
    if (c < '0' || c > '9') break;
    id = std::min(id * 10 + (c - '0'), 63);
  }
  return uint64_t{1} << id;
}

uint64_t filterFields(const ExprNode* node) {
  if (node == nullptr) return 0;
  uint64_t bits = node->field != nullptr ? topLevelBit(*node->field) : 0;
  return bits | filterFields(node->lhs.get()) | filterFields(node->rhs.get());
}

}  // namespace

uint64_t queryFields(const QuerySpec& spec) {
  uint64_t bits = filterFields(spec.where.get());
  for (const auto& [field, descending] : spec.order) bits |= topLevelBit(*field);
  return bits;
}

FieldRange filterRange(const ExprNode* where) {
  std::vector<const ExprNode*> terms;
  andTerms(where, &terms);
  // A conjunction is true only when every conjunct is: the ranges of one field intersect.
  std::vector<FieldRange> ranges;
  for (const ExprNode* t : terms) {
    if (t->field == nullptr) continue;
    auto it = std::find_if(ranges.begin(), ranges.end(),
                           [&](const FieldRange& r) { return r.field == t->field; });
    FieldRange narrowed;
    if (it != ranges.end()) {
      narrowed = *it;
    } else {
      narrowed.field = t->field;
    }
    if (!narrowBy(*t, &narrowed)) continue;
    if (it != ranges.end()) {
      *it = std::move(narrowed);
    } else {
      ranges.push_back(std::move(narrowed));
    }
  }
  if (ranges.empty()) return FieldRange();
  auto chosen = std::find_if(ranges.begin(), ranges.end(), [](const FieldRange& r) {
    return r.low.has_value() && r.high.has_value();
  });
  FieldRange out = chosen != ranges.end() ? std::move(*chosen) : std::move(ranges.front());
  // Within the range every comparison on its field is true; an `in` list is not decided
  // by its hull.
  for (const ExprNode* t : terms) {
    FieldRange probe;
    probe.field = t->field;
    bool decided =
        t->kind == ExprNode::Kind::kCompare && t->field == out.field && narrowBy(*t, &probe);
    if (!decided) out.residual.push_back(t);
  }
  return out;
}

TableChanges::TableChanges(std::vector<ChangedObject>& changes, EntityFactory factory)
    : latest_(changes.size()) {
  // The committed objects are used as they are, one shared entity per object.
  entities_.reserve(changes.size());
  for (ChangedObject& c : changes) {
    EntityPtr e = c.deleted ? nullptr : factory(std::move(c.bytes), c.rowid, c.versionstamp);
    latest_.assign(c.rowid, entities_.size());
    entities_.emplace_back(&c, std::move(e));
  }
  marks_.assign(entities_.size(), 0);
  for (size_t k = 0; k < entities_.size(); ++k) {
    if (entities_[k].second != nullptr && latest(k)) live_.push_back(k);
  }
}

size_t TableChanges::find(int64_t rowid) const { return latest_.find(rowid); }

const TableChanges::ByField& TableChanges::byField(const FieldInfo* field) {
  auto [it, inserted] = by_field_.try_emplace(field);
  ByField& b = it->second;
  if (!inserted) return b;
  for (size_t k : live_) {
    Value v = field->read(entities_[k].second->data());
    if (v.isNull()) continue;  // never within a range
    if (ordered(v)) {
      b.ordered.emplace_back(std::move(v), k);
    } else {
      b.unordered.push_back(k);
    }
  }
  std::sort(b.ordered.begin(), b.ordered.end(), [](const auto& x, const auto& y) {
    std::strong_ordering c = *compare(x.first, y.first);
    return c != 0 ? c < 0 : x.second < y.second;
  });
  return b;
}

TableChanges::Candidates TableChanges::candidates(const FieldRange& range) {
  if (range.field == nullptr) return {{}, live_};
  const ByField& b = byField(range.field);
  auto first = b.ordered.begin();
  auto last = b.ordered.end();
  if (range.low.has_value()) {
    first = std::partition_point(first, last, [&](const auto& e) {
      std::strong_ordering c = *compare(e.first, *range.low);
      return c < 0 || (c == 0 && !range.low_inclusive);
    });
  }
  if (range.high.has_value()) {
    last = std::partition_point(first, last, [&](const auto& e) {
      std::strong_ordering c = *compare(e.first, *range.high);
      return c < 0 || (c == 0 && range.high_inclusive);
    });
  }
  return {std::span(first, last), b.unordered};
}

}  // namespace flatstore::internal
