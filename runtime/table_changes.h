// TableChanges: what one commit changed in one observed table, prepared for the
// subscriptions on it; and FieldRange, what a query's filter says about one field, which
// lets a subscription look only at the changed objects that may concern it.
//
// Changed objects are sorted once per event by the value of each field that some
// subscription's filter bounds, so a subscription evaluates only the changes inside its
// range, plus those of objects it holds.
//
// Thread-safety: hub thread only; the functions are pure.
#ifndef FLATSTORE_RUNTIME_TABLE_CHANGES_H_
#define FLATSTORE_RUNTIME_TABLE_CHANGES_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "flatstore/entity.h"
#include "flatstore/fetch.h"
#include "flatstore/query.h"
#include "flatstore/value.h"
#include "runtime/catalog.h"
#include "runtime/commit_event.h"

namespace flatstore::internal {

using EntityPtr = std::shared_ptr<const EntityBase>;
using EntityFactory = EntityPtr (*)(ObjectBuffer buffer, int64_t rowid, Versionstamp vs);

// A necessary condition of a query's filter: every object the filter accepts has a
// value of `field` within the bounds (each optional, inclusive or not, ordered as
// compare() orders values; a null value is never within). Without a field nothing is
// known and every object may match.
struct FieldRange {
  const FieldInfo* field = nullptr;
  std::optional<Value> low;
  std::optional<Value> high;
  bool low_inclusive = true;
  bool high_inclusive = true;
  // The conjuncts of the filter that the range does not decide: an object whose value
  // is ordered (not NaN) and within the range matches exactly when all of these are
  // true. Nodes of the filter's tree, which must outlive the range.
  std::vector<const ExprNode*> residual;
};

// The range that the comparisons and `in` lists of `where`'s top-level conjunction
// imply, for one field (one bounded on both sides if any is). Terms under || or !,
// `!=`, `notIn` and null or NaN operands are not used: compare() is a total order only
// without NaN.
FieldRange filterRange(const ExprNode* where);

// The top-level fields that `spec`'s filter and order read, as a mask of FlatBuffers
// field ids like EncodedObject::changed_fields.
uint64_t queryFields(const QuerySpec& spec);

// A value that compare() orders totally against every other such value: not null, not
// NaN.
bool ordered(const Value& v);
// Raises `r`'s low bound to `v` (inclusive or not) if that bound is higher; likewise
// lowers its high bound.
void raiseLow(FieldRange* r, const Value& v, bool inclusive);
void lowerHigh(FieldRange* r, const Value& v, bool inclusive);

// Positions by rowid: open addressing in one array, no allocation per entry. Sized for
// a known number of entries.
class RowidIndex {
 public:
  static constexpr size_t kAbsent = SIZE_MAX;

  explicit RowidIndex(size_t n) {
    size_t slots = 4;
    while (slots < 2 * n) slots <<= 1;
    mask_ = slots - 1;
    slots_.assign(slots, {0, kAbsent});
  }
  // Sets the position of `rowid`. REQUIRES: at most n distinct rowids in all.
  void assign(int64_t rowid, size_t position) {
    size_t i = start(rowid);
    while (slots_[i].second != kAbsent && slots_[i].first != rowid) i = (i + 1) & mask_;
    slots_[i] = {rowid, position};
  }
  // The position of `rowid`, or kAbsent.
  size_t find(int64_t rowid) const {
    for (size_t i = start(rowid);; i = (i + 1) & mask_) {
      if (slots_[i].second == kAbsent || slots_[i].first == rowid) return slots_[i].second;
    }
  }

 private:
  size_t start(int64_t rowid) const {
    // Fibonacci hashing: rowids are often consecutive.
    return static_cast<size_t>((static_cast<uint64_t>(rowid) * 0x9E3779B97F4A7C15u) >> 32) & mask_;
  }

  size_t mask_ = 0;
  std::vector<std::pair<int64_t, size_t>> slots_;
};

// One observed table's changes in one event, as the hub applies them: the committed
// objects as shared entities, the latest change of each rowid, and, built on first use,
// the changes ordered by the value of a field that a subscription's range names.
// Hub thread only.
class TableChanges {
 public:
  static constexpr size_t kNone = SIZE_MAX;

  // Takes the bytes out of `changes`, which must outlive this object.
  TableChanges(std::vector<ChangedObject>& changes, EntityFactory factory);

  size_t size() const { return entities_.size(); }
  const ChangedObject& change(size_t k) const { return *entities_[k].first; }
  // The new version; null for a deletion.
  const EntityPtr& entity(size_t k) const { return entities_[k].second; }
  // The latest change of `rowid` in this event, or kNone.
  size_t find(int64_t rowid) const;
  bool latest(size_t k) const { return find(change(k).rowid) == k; }
  // The latest changes whose new version may lie in `range`: in `within` those whose
  // value of its field is ordered and within the bounds (with the value), in
  // `unordered` those whose value is NaN. Without a field, every latest change but
  // deletions, in `unordered`. Valid while this object lives.
  struct Candidates {
    std::span<const std::pair<Value, size_t>> within;
    std::span<const size_t> unordered;
  };
  Candidates candidates(const FieldRange& range);
  // One byte per change for a subscription's scratch use; all zero between uses.
  std::vector<uint8_t>& marks() { return marks_; }

 private:
  // Latest non-deleted changes with a non-null value of one field: those whose value is
  // ordered by compare() sorted by it, NaN reals apart (candidates for every range).
  struct ByField {
    std::vector<std::pair<Value, size_t>> ordered;
    std::vector<size_t> unordered;
  };
  const ByField& byField(const FieldInfo* field);

  std::vector<std::pair<ChangedObject*, EntityPtr>> entities_;
  RowidIndex latest_;
  std::vector<size_t> live_;  // latest changes but deletions
  std::map<const FieldInfo*, ByField> by_field_;
  std::vector<uint8_t> marks_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_TABLE_CHANGES_H_
