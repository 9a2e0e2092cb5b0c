// flatstore demo: builds objects of schemas/game.fbs with generated change requests,
// decodes them as entities, and filters them with a typed query evaluated in memory.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "game_flatstore.h"

namespace game = flatstore::test::game;

int main() {
  struct Spec {
    const char* name;
    int realm;
    int16_t hp;
    game::Color color;
  };
  const Spec specs[] = {{"orc", 1, 30, game::Color::Red},
                        {"troll", 1, 120, game::Color::Green},
                        {"imp", 2, 8, game::Color::Red},
                        {"dragon", 3, 900, game::Color::Red}};

  std::vector<std::shared_ptr<const game::MonsterEntity>> monsters;
  for (const Spec& s : specs) {
    auto request = game::MonsterChangeRequest::creation();
    request.setName(s.name).setRealm(s.realm).setHp(s.hp).setColor(s.color);
    game::WeaponT weapon;
    weapon.name = "claws";
    weapon.damage = static_cast<int16_t>(s.hp / 10);
    request.setEquipped(std::move(weapon));
    auto encoded = request.encodeOver(nullptr);
    if (!encoded.ok()) {
      std::fprintf(stderr, "encode failed: %s\n", encoded.status().ToString().c_str());
      return 1;
    }
    auto entity = game::MonsterEntity::fromBytes(encoded->bytes.span());
    if (!entity.ok()) {
      std::fprintf(stderr, "decode failed: %s\n", entity.status().ToString().c_str());
      return 1;
    }
    monsters.push_back(*entity);
  }

  std::printf("%-8s %5s %4s %6s %7s %6s\n", "name", "realm", "hp", "color", "weapon", "bytes");
  for (const auto& m : monsters) {
    std::printf("%-8.*s %5d %4d %6s %7d %6zu\n", static_cast<int>(m->name().size()),
                m->name().data(), m->realm(), m->hp(), game::EnumNameColor(m->color()),
                m->equippedAsWeapon()->damage(), m->bytes().size());
  }

  using F = game::MonsterFields;
  auto strongRed = F::hp > 10 && F::color == game::Color::Red;
  std::printf("\nmatching hp > 10 && color == Red:");
  for (const auto& m : monsters) {
    if (strongRed.matches(*m))
      std::printf(" %.*s", static_cast<int>(m->name().size()), m->name().data());
  }
  std::printf("\n");
  const auto& d = game::MonsterEntity::description();
  std::printf("table %.*s: %zu key columns, %zu indexes\n", static_cast<int>(d.table_name.size()),
              d.table_name.data(), d.key_columns.size(), d.indexes.size());
  return 0;
}
