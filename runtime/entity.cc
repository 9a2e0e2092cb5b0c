#include "flatstore/entity.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "flatstore/table_description.h"
#include "runtime/absl_compat.h"

namespace flatstore {

std::string Versionstamp::toString() const {
  return absl::StrFormat("%016x%04x", commit_sequence_, position_);
}

absl::StatusOr<Versionstamp> Versionstamp::parse(std::string_view text) {
  if (text.size() != 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("versionstamp '", internal::av(text), "' must be 20 hex digits"));
  }
  uint64_t seq = 0;
  uint32_t pos = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("versionstamp '", internal::av(text),
                       "' has a character that is not a lowercase hex digit"));
    }
    if (i < 16) {
      seq = seq << 4 | static_cast<uint64_t>(d);
    } else {
      pos = pos << 4 | static_cast<uint32_t>(d);
    }
  }
  return Versionstamp(seq, static_cast<uint16_t>(pos));
}

ObjectBuffer ObjectBuffer::copyOf(std::span<const uint8_t> bytes) {
  ObjectBuffer b;
  b.size_ = bytes.size();
  b.data_.reset(new uint8_t[bytes.size() == 0 ? 1 : bytes.size()]);
  if (!bytes.empty()) std::memcpy(b.data_.get(), bytes.data(), bytes.size());
  return b;
}

std::span<const uint8_t> ObjectBuffer::span() const { return {data_.get(), size_}; }

std::span<const uint8_t> EntityBase::bytes() const { return buffer_.span(); }

namespace internal {

absl::StatusOr<ObjectBuffer> verifiedCopy(const TableDescription& table,
                                          std::span<const uint8_t> bytes, int64_t rowid) {
  ObjectBuffer buffer = ObjectBuffer::copyOf(bytes);
  if (!table.verify(buffer.span())) {
    return absl::DataLossError(absl::StrCat(
        "table ", av(table.table_name), " rowid ", rowid, ": stored object (", bytes.size(),
        " bytes) is not a valid ", av(table.entity_name), " (FlatBuffers verification failed)"));
  }
  return buffer;
}

}  // namespace internal
}  // namespace flatstore
