// What every generated ChangeRequest shares.
//
// For each entity `Monster` the code generator emits `MonsterChangeRequest`, a value
// that describes one change and is submitted inside a transaction:
//
//   auto orc = game::MonsterChangeRequest::creation();   // a new object
//   orc.setName("orc").setHp(30);
//   auto hurt = game::MonsterChangeRequest::changeOf(*orc_entity);  // touched fields only
//   hurt.setHp(10);
//   auto up = game::MonsterChangeRequest::upsert();      // insert, or change if the key exists
//   auto gone = game::MonsterChangeRequest::deletionOf(*orc_entity);
//
// Setters record which fields they touched. A change or upsert applies only the touched
// fields onto the object as the transaction sees it, so a request built from an older
// copy of an object does not undo other fields' newer values. A creation starts from the
// schema's defaults.
//
// Encoding (FlatBuffers bytes, key and index values) happens on the thread that submits,
// never under the database's write lock.
//
// Thread-safety: a change request is a plain value; use one object from one thread at a
// time.
#ifndef FLATSTORE_CHANGE_REQUEST_H_
#define FLATSTORE_CHANGE_REQUEST_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "flatstore/entity.h"
#include "flatstore/value.h"

namespace flatstore {

enum class ChangeKind {
  kCreation,  // insert a new object; fails with AlreadyExists if its key is taken
  kChange,    // apply the touched fields to an existing object
  kUpsert,    // kChange if the key exists, otherwise kCreation
  kDeletion,  // remove an existing object
};

// The result of applying a change request to the current state of its object.
struct EncodedObject {
  ObjectBuffer bytes;
  // False when the request left the object exactly as it was (nothing to write).
  bool changed = true;
  // For a request applied over an existing object: which of its top-level fields now
  // differ, bit i for FlatBuffers field id i (ids of 63 and above share bit 63). All
  // bits set when not known. Observers use it to skip fields nothing changed.
  uint64_t changed_fields = ~uint64_t{0};
  // True when `bytes` are the verified current object's with scalars rewritten in the
  // slots it has: they verify as it did, and are not verified again.
  bool in_place = false;
};

// The part of every generated ChangeRequest that is not about fields: its kind, its
// target and its compare-and-set condition. `Derived` is the generated class.
template <class Derived>
class ChangeRequestBase {
 public:
  ChangeKind kind() const { return kind_; }
  // The rowid of the target object of a change or deletion, when known (0 otherwise).
  int64_t targetRowid() const { return target_rowid_; }
  // The primary key of the target object of a change or deletion.
  const std::vector<Value>& targetKey() const { return target_key_; }

  // Compare-and-set: the request applies only if the object still has versionstamp
  // `vs` (as read, say, by an earlier fetch); otherwise submit() fails with
  // FailedPrecondition and nothing is recorded. Across processes, a transaction whose
  // tables another process changed is run again, so the check sees the newest object.
  Derived& requireVersionstamp(Versionstamp vs) {
    required_versionstamp_ = vs;
    return static_cast<Derived&>(*this);
  }
  // For creations and upserts: apply only if no object has the key (FailedPrecondition
  // otherwise, rather than AlreadyExists or an update).
  Derived& requireAbsent() {
    require_absent_ = true;
    return static_cast<Derived&>(*this);
  }
  const std::optional<Versionstamp>& requiredVersionstamp() const { return required_versionstamp_; }
  bool requiresAbsent() const { return require_absent_; }

 protected:
  explicit ChangeRequestBase(ChangeKind kind) : kind_(kind) {}

  ChangeKind kind_;
  int64_t target_rowid_ = 0;
  std::vector<Value> target_key_;
  std::optional<Versionstamp> required_versionstamp_;
  bool require_absent_ = false;
};

namespace internal {

// A generated encodeOver() keeps its thread's FlatBufferBuilder, and the buffer in it,
// for the next call, unless the object it built was larger than this.
inline constexpr size_t kKeptBuilderBytes = 64 * 1024;

// Deep copies and comparisons over FlatBuffers object-API ("native") values, whose
// nested tables are held by unique_ptr.
template <class X>
struct IsUniquePtr : std::false_type {};
template <class X>
struct IsUniquePtr<std::unique_ptr<X>> : std::true_type {};
template <class X>
struct IsVectorOfUniquePtr : std::false_type {};
template <class X, class A>
struct IsVectorOfUniquePtr<std::vector<std::unique_ptr<X>, A>> : std::true_type {};

template <class X>
X deepCopy(const X& x) {
  if constexpr (IsUniquePtr<X>::value) {
    using E = typename X::element_type;
    return x ? std::make_unique<E>(*x) : nullptr;
  } else if constexpr (IsVectorOfUniquePtr<X>::value) {
    X out;
    out.reserve(x.size());
    for (const auto& e : x) out.push_back(deepCopy(e));
    return out;
  } else {
    return x;
  }
}

template <class X>
bool deepEqual(const X& a, const X& b) {
  if constexpr (IsUniquePtr<X>::value) {
    return a == b || (a && b && *a == *b);
  } else if constexpr (IsVectorOfUniquePtr<X>::value) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!deepEqual(a[i], b[i])) return false;
    }
    return true;
  } else {
    return a == b;
  }
}

}  // namespace internal
}  // namespace flatstore

#endif  // FLATSTORE_CHANGE_REQUEST_H_
