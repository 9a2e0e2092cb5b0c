// The chunked import that the multi-process chunk test runs in mp_helper ("chunked"
// mode, killed at random moments) and then finishes in the test process.
#ifndef FLATSTORE_TESTS_MULTIPROCESS_CHUNKED_IMPORT_H_
#define FLATSTORE_TESTS_MULTIPROCESS_CHUNKED_IMPORT_H_

#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"

namespace flatstore::testing {

inline constexpr int kImportTotal = 20000;
inline constexpr int kImportChunk = 250;
inline constexpr char kImportName[] = "import";

// The key of import object `i`.
inline std::string importId(int i) {
  char id[32];
  std::snprintf(id, sizeof id, "import-%06d", i);
  return id;
}

// One chunk: creates objects [cursor, cursor + kImportChunk) and moves the cursor. They
// are creations, so a chunk run twice over committed objects fails with AlreadyExists.
inline absl::StatusOr<bool> importChunk(TransactionContext& txn, std::string& cursor) {
  int next = 0;
  if (!cursor.empty() && !absl::SimpleAtoi(cursor, &next)) {
    return absl::DataLossError("bad import cursor '" + cursor + "'");
  }
  int end = next + kImportChunk < kImportTotal ? next + kImportChunk : kImportTotal;
  for (int i = next; i < end; ++i) {
    auto r = bench::DocChangeRequest::creation();
    r.setId(importId(i)).setRank(i).setBody(std::string(100, 'x'));
    auto submitted = txn.submit(r);
    if (!submitted.ok()) return submitted.status();
  }
  cursor = std::to_string(end);
  return end < kImportTotal;
}

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_MULTIPROCESS_CHUNKED_IMPORT_H_
