// Writes a database with the older schema (schemas/evolve/v1), for backfill_test.
//   evolve_writer PATH COUNT
#include <cstdio>
#include <cstdlib>
#include <string>

#include "flatstore/workspace.h"
#include "item_flatstore.h"

namespace evolve = flatstore::test::evolve;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: evolve_writer PATH COUNT\n");
    return 2;
  }
  int count = std::atoi(argv[2]);
  auto ws = flatstore::Workspace::open(argv[1]);
  if (!ws.ok()) {
    std::fprintf(stderr, "%s\n", ws.status().ToString().c_str());
    return 1;
  }
  auto done =
      (*ws)->performChangesAndWait<evolve::Item>([count](flatstore::TransactionContext& txn) {
        for (int i = 0; i < count; ++i) {
          auto r = evolve::ItemChangeRequest::creation();
          r.setId("item-" + std::to_string(i))
              .setLevel(i % 17)
              .setTag(i % 3 == 0 ? "" : "t" + std::to_string(i % 5));
          auto s = txn.submit(r);
          if (!s.ok()) return s.status();
        }
        return absl::OkStatus();
      });
  if (!done.ok()) {
    std::fprintf(stderr, "%s\n", done.status().ToString().c_str());
    return 1;
  }
  return 0;
}
