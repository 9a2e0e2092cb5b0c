// Checks an object a transaction encoded before it is recorded, so that submit never
// lets through an object that reads would later refuse as DataLoss (design: "an object
// that would not pass the verifier is refused at submit").
//
// The generated verifier (TableDescription::verify) decides, with the newest schema's
// for fields the program does not know; when it refuses, the
// entity's stored reflection schema is used to say why: nesting deeper than the
// verifier's limit, too many tables, or a `nested_flatbuffer` field whose bytes are not
// a valid buffer of their type.
//
// Thread-safety: a pure function; call it from any thread.
#ifndef FLATSTORE_RUNTIME_OBJECT_CHECK_H_
#define FLATSTORE_RUNTIME_OBJECT_CHECK_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "flatstore/table_description.h"

namespace flatstore::internal {

class VersionBridge;

// OK when `bytes` pass the FlatBuffers verifier as an object of `table` and, given a
// bridge (an object re-composed with fields the program does not know), the reflection
// verifier over the file's newest schema; otherwise InvalidArgument naming the table
// and what failed.
absl::Status checkEncodedObject(const TableDescription& table, std::span<const uint8_t> bytes,
                                const VersionBridge* bridge = nullptr);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_OBJECT_CHECK_H_
