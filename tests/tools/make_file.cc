// flatstore-make-file PATH N: writes N Monsters of the test schema (the tool tests'
// pattern, names m-0 .. m-<N-1>) to a new file, in transactions of 10,000, for measuring
// the tool on large tables:
//   flatstore-make-file big.db 1000000 && time flatstore check big.db
#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "flatstore/workspace.h"
#include "tests/tools/seed.h"

int main(int argc, char** argv) {
  int64_t n = 0;
  if (argc != 3 || !absl::SimpleAtoi(argv[2], &n) || n < 0) {
    std::fprintf(stderr, "usage: flatstore-make-file PATH N\n");
    return 2;
  }
  auto ws = flatstore::Workspace::open(argv[1]);
  if (!ws.ok()) {
    std::fprintf(stderr, "flatstore-make-file: %s\n", std::string(ws.status().message()).c_str());
    return 2;
  }
  constexpr int64_t kPerTransaction = 10000;
  for (int64_t start = 0; start < n; start += kPerTransaction) {
    auto r = (*ws)->performChangesAndWait<flatstore::test::game::Monster>(
        [&](flatstore::TransactionContext& txn) -> absl::Status {
          for (int64_t i = start; i < std::min(n, start + kPerTransaction); ++i) {
            FLATSTORE_RETURN_IF_ERROR(
                txn.submit(flatstore::testing::seedMonster(static_cast<int>(i))).status());
          }
          return absl::OkStatus();
        });
    if (!r.ok()) {
      std::fprintf(stderr, "flatstore-make-file: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
  }
  return (*ws)->shutdown().ok() ? 0 : 1;
}
