// Internal: what generated change requests call to write scalar fields into a copy of a
// stored object (ChangeRequest::encodeOver(std::span<const uint8_t>)). Not part of the
// API.
#ifndef FLATSTORE_DETAIL_SCALAR_REWRITE_H_
#define FLATSTORE_DETAIL_SCALAR_REWRITE_H_

#include <cstdint>
#include <span>
#include <utility>

#include "flatbuffers/flatbuffers.h"
#include "flatstore/entity.h"

namespace flatstore::detail {

// A copy of the verified object `current`, whose root table is `table` (inside
// `current`), with stored scalars rewritten in their slots. The layout is the
// original's, so the result needs no second verification.
class ScalarRewrite {
 public:
  ScalarRewrite(std::span<const uint8_t> current, const ::flatbuffers::Table* table)
      : table_(table),
        bytes_(ObjectBuffer::copyOf(current)),
        start_(bytes_.mutableData() + (reinterpret_cast<const uint8_t*>(table) - current.data())) {}

  // Writes `value` as a `Stored` into the slot of the field at vtable offset `field`, if
  // the object stores that field (a field left at its default has no slot).
  template <class Stored, class V>
  void write(::flatbuffers::voffset_t field, const V& value) {
    if (::flatbuffers::voffset_t at = table_->GetOptionalFieldOffset(field)) {
      ::flatbuffers::WriteScalar(start_ + at, static_cast<Stored>(value));
    }
  }

  // The rewritten object, with the top-level fields the change altered.
  EncodedObject done(uint64_t changed_fields) && {
    return EncodedObject{std::move(bytes_), true, changed_fields, true};
  }

 private:
  const ::flatbuffers::Table* table_;
  ObjectBuffer bytes_;
  uint8_t* start_;
};

}  // namespace flatstore::detail

#endif  // FLATSTORE_DETAIL_SCALAR_REWRITE_H_
