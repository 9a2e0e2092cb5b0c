// Monsters of the test schemas (game.fbs), made the shortest way, for tests whose theme
// is something else (faults, watchers) and that only need objects in a table.
#ifndef FLATSTORE_TESTS_SUPPORT_MONSTERS_H_
#define FLATSTORE_TESTS_SUPPORT_MONSTERS_H_

#include <string>

#include "absl/status/status.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"

namespace flatstore::testing {

// Creates the Monster `name` of realm 0 in a transaction of its own and waits for it.
inline absl::Status createMonster(Workspace& ws, const std::string& name) {
  return ws
      .performChangesAndWait<test::game::Monster>([&](TransactionContext& txn) {
        auto r = test::game::MonsterChangeRequest::creation();
        r.setName(name).setRealm(0);
        return txn.submit(r).status();
      })
      .status();
}

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_SUPPORT_MONSTERS_H_
