// The objects the tool tests and the tool's measurements write: deterministic, and
// varied enough to cover defaults, nulls, unions, structs and nested tables.
#ifndef FLATSTORE_TESTS_TOOLS_SEED_H_
#define FLATSTORE_TESTS_TOOLS_SEED_H_

#include "absl/strings/str_cat.h"
#include "game_flatstore.h"

namespace flatstore::testing {

// Monster number `i` of the seeded files: fields set or left out in a pattern that
// covers defaults, nulls, unions, structs and nested tables.
inline test::game::MonsterChangeRequest seedMonster(int i) {
  using namespace test::game;
  auto m = MonsterChangeRequest::creation();
  m.setName(absl::StrCat("m-", i)).setRealm(i % 3).setHp(static_cast<int16_t>((i * 37) % 200));
  if (i % 2 == 1) m.setMana(static_cast<int16_t>(i));
  m.setColor(static_cast<Color>(i % 3));
  if (i % 4 != 0) m.setPos(test::common::Vec3(static_cast<float>(i) * 0.5f, 1, 2));
  if (i % 3 == 0) {
    WeaponT w;
    w.name = absl::StrCat("w", i % 4);
    w.damage = static_cast<int16_t>(i % 7);
    m.setEquipped(w);
  } else if (i % 3 == 1) {
    ShieldT s;
    s.armor = i;
    m.setEquipped(s);
  }
  if (i % 2 == 0) {
    StatsT s;
    s.level = i % 5;
    s.xp = i * 1000;
    m.setStats(s);
  }
  if (i % 5 != 0) m.setEmail(absl::StrCat("m", i, "@example.org"));
  if (i % 4 == 0) m.setScore(i);
  m.setAlive(i % 6 != 0).setSpeed(i * 0.25);
  return m;
}

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_TOOLS_SEED_H_
