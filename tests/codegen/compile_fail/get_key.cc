// get<T>(key...) must not compile unless `key...` is T's primary key: as many values as
// it has fields, each of a type a query could compare with that field. Built once per
// FLATSTORE_CASE by the `compile_fail.get_key.*` tests: case 0 is the control (lookups
// that must compile); every other case must fail with an error about the constraint.
#include <cstdint>

#include "flatstore/workspace.h"
#include "game_flatstore.h"

using flatstore::test::game::Event;
using flatstore::test::game::Monster;

// Never called: only whether it compiles matters.
[[maybe_unused]] inline void lookUp(flatstore::Workspace& ws, flatstore::TransactionContext& txn) {
#if FLATSTORE_CASE == 0
  (void)ws.get<Monster>("main", 1);
  (void)ws.get<Monster>(std::string("main"), int64_t{1});
  (void)txn.get<Monster>("main", 1);
  (void)ws.get<Event>(int64_t{5});
#elif FLATSTORE_CASE == 1
  (void)ws.get<Monster>("main", 1, 2);  // one value too many
#elif FLATSTORE_CASE == 2
  (void)ws.get<Monster>("main");  // one value too few
#elif FLATSTORE_CASE == 3
  (void)txn.get<Monster>("main", 1.5);  // a floating-point value for an integer field
#elif FLATSTORE_CASE == 4
  (void)ws.get<Monster>(1, "main");  // the fields in the wrong order
#elif FLATSTORE_CASE == 5
  (void)ws.get<Event>("5");  // a string for an automatic id
#endif
}

int main() { return 0; }
