// Round-trips one object through the generated code of an installed flatstore.
// Exits 0 if and only if the fields read back are the ones that were set.
#include <cstdio>
#include <string_view>

#include "absl/status/statusor.h"  // the generated header only declares StatusOr
#include "note_flatstore.h"

int main() {
  auto note = consumer::NoteChangeRequest::creation();
  note.setId(7).setTitle("installed");
  absl::StatusOr<flatstore::EncodedObject> encoded = note.encodeOver(nullptr);
  if (!encoded.ok()) {
    std::fprintf(stderr, "encodeOver: %s\n", encoded.status().ToString().c_str());
    return 1;
  }
  auto entity = consumer::NoteEntity::fromBytes(encoded->bytes.span());
  if (!entity.ok()) {
    std::fprintf(stderr, "fromBytes: %s\n", entity.status().ToString().c_str());
    return 1;
  }
  const std::string_view title = (*entity)->title();
  std::printf("id=%lld title=%.*s stars=%d\n", static_cast<long long>((*entity)->id()),
              static_cast<int>(title.size()), title.data(), static_cast<int>((*entity)->stars()));
  return (*entity)->id() == 7 && title == "installed" && (*entity)->stars() == 3 ? 0 : 1;
}
