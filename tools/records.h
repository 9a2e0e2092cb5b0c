// Stored objects as the tool prints them: one JSON object per line with the object's
// rowid, versionstamp, primary key and the object in flatc's JSON.
#ifndef FLATSTORE_TOOLS_RECORDS_H_
#define FLATSTORE_TOOLS_RECORDS_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flatstore/entity.h"
#include "runtime/dynamic_table.h"

namespace flatstore::cli {

// {"rowid":..,"versionstamp":"..","key":{"path":value,...},"object":{..}} ("key" only for
// tables with a primary key). `bytes` must be verified.
absl::StatusOr<std::string> recordJson(internal::DynamicTable& table, int64_t rowid,
                                       Versionstamp versionstamp, const uint8_t* bytes);

// Copies `blob` into `scratch` (aligned for the verifier) and verifies it as an object
// of `table`; the aligned bytes, or DataLoss naming the table and rowid.
absl::StatusOr<const uint8_t*> verifyAligned(const internal::DynamicTable& table,
                                             std::span<const uint8_t> blob, int64_t rowid,
                                             std::vector<uint64_t>* scratch);

// Streams every object of `table` in rowid order (at most `limit` when set) to `out`,
// one record per line, inside the caller's read transaction. Objects that fail
// verification are reported on standard error as "flatstore: FILE: ..." and skipped;
// returns how many were, or an error that stopped the scan.
absl::StatusOr<int64_t> streamTable(internal::Connection& c, internal::DynamicTable& table,
                                    std::optional<int64_t> limit, bool quiet, FILE* out,
                                    bool json_array);

}  // namespace flatstore::cli

#endif  // FLATSTORE_TOOLS_RECORDS_H_
