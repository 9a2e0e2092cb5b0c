// Entities: immutable stored objects, their owned bytes and their versionstamps.
//
// Every generated entity class (for a root table `Monster`, the class `MonsterEntity`)
// derives from EntityBase. An entity owns the verified FlatBuffers bytes of one object
// and reads its fields straight from them. Entities are immutable and are handed out as
// std::shared_ptr<const E>, so one object can be shared by many results and threads.
//
// Thread-safety: all const methods may be called concurrently.
#ifndef FLATSTORE_ENTITY_H_
#define FLATSTORE_ENTITY_H_

#include <compare>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "flatstore/detail/status_fwd.h"

namespace flatstore {

// The place of a transaction in the global commit order: the commit sequence (assigned
// by the writer under SQLite's write lock, one per group commit) and the position of
// the transaction inside that group commit: its index among the transactions the
// writer took into the group, from 0, counting those that failed or wrote nothing (so
// the positions of one commit may skip numbers; a group holds at most
// WorkspaceOptions::max_group_transactions, never more than 65535). Every object a transaction
// inserts or changes gets the same versionstamp, the one TransactionResult reports. Versionstamps
// are strictly increasing in commit order, across processes. Stored as one SQLite integer (sequence
// << 16 | position) and printed as 20 lowercase hex digits.
class Versionstamp {
 public:
  // The zero versionstamp, before every commit.
  constexpr Versionstamp() = default;
  constexpr Versionstamp(uint64_t commit_sequence, uint16_t position)
      : commit_sequence_(commit_sequence), position_(position) {}

  constexpr uint64_t commitSequence() const { return commit_sequence_; }
  constexpr uint16_t position() const { return position_; }

  // The stored form: sequence << 16 | position. Sequences beyond 2^47 do not fit.
  constexpr int64_t packed() const {
    return static_cast<int64_t>((commit_sequence_ << 16) | position_);
  }
  static constexpr Versionstamp fromPacked(int64_t packed) {
    return Versionstamp(static_cast<uint64_t>(packed) >> 16,
                        static_cast<uint16_t>(packed & 0xffff));
  }

  // 20 lowercase hex digits: 16 for the sequence, 4 for the position.
  std::string toString() const;
  // Parses what toString() prints; InvalidArgument otherwise.
  static absl::StatusOr<Versionstamp> parse(std::string_view text);

  friend constexpr auto operator<=>(const Versionstamp&, const Versionstamp&) = default;

 private:
  uint64_t commit_sequence_ = 0;
  uint16_t position_ = 0;
};

// Owned bytes of one FlatBuffers object, aligned for every scalar FlatBuffers can hold
// (the verifier checks alignment, and readers load scalars in place).
class ObjectBuffer {
 public:
  ObjectBuffer() = default;
  // A copy of `bytes`.
  static ObjectBuffer copyOf(std::span<const uint8_t> bytes);
  const uint8_t* data() const { return data_.get(); }
  // For the code that fills a buffer nothing else holds yet (a generated encodeOver()
  // writing a changed scalar into its copy of an object); never for a buffer an entity
  // or a transaction has.
  uint8_t* mutableData() { return data_.get(); }
  size_t size() const { return size_; }
  // Defined out of line, like copyOf() and EntityBase::bytes(): constructing a std::span
  // checks the contiguous_iterator concept, which would cost every file that includes a
  // generated header more than the rest of this header does.
  std::span<const uint8_t> span() const;

 private:
  // operator new[] aligns to __STDCPP_DEFAULT_NEW_ALIGNMENT__ (16 on the platforms we
  // build for), enough for every FlatBuffers scalar.
  std::unique_ptr<uint8_t[]> data_;
  size_t size_ = 0;
};

// The data every entity carries. Generated entity classes add typed accessors.
class EntityBase {
 public:
  // The object's FlatBuffers bytes (verified).
  std::span<const uint8_t> bytes() const;
  const uint8_t* data() const { return buffer_.data(); }
  // The SQLite rowid of the object; 0 for an object not read from a database.
  int64_t rowid() const { return rowid_; }
  // The versionstamp of the object's last change; zero for an object not yet stored.
  Versionstamp versionstamp() const { return versionstamp_; }

 protected:
  EntityBase(ObjectBuffer buffer, int64_t rowid, Versionstamp versionstamp)
      : buffer_(std::move(buffer)), rowid_(rowid), versionstamp_(versionstamp) {}

 private:
  ObjectBuffer buffer_;
  int64_t rowid_;
  Versionstamp versionstamp_;
};

// Maps a FlatBuffers root table type (the type users name in performChanges<T> and
// fetch<T>) to its generated flatstore types. Specialized by generated headers with
// `Entity`, `ChangeRequest`, `Fields`, `Key` (a std::tuple of the primary key's types)
// and `description()`.
template <class T>
struct EntityTraits;

}  // namespace flatstore

#endif  // FLATSTORE_ENTITY_H_
