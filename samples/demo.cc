// flatstore demo: a small game world stored in one SQLite file.
//
// Several threads perform changes at once: spawners create monsters, a healer and a
// combat thread change them, a logger records events in a second table. Closures on
// one table run in order, closures on different tables in parallel, and one writer
// commits them in groups. At the end the demo queries the store and prints a summary.
//
//   flatstore-demo [DATABASE]      (default: a file in the temp directory)
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "flatstore/workspace.h"
#include "game_flatstore.h"

namespace game = flatstore::test::game;
using flatstore::TransactionContext;
using F = game::MonsterFields;

namespace {

constexpr int kSpawners = 3;
constexpr int kMonstersPerSpawner = 200;

absl::Status spawn(TransactionContext& txn, int spawner, int i) {
  auto orc = game::MonsterChangeRequest::creation();
  static const game::Color kColors[] = {game::Color::Red, game::Color::Green, game::Color::Blue};
  orc.setName("monster-" + std::to_string(spawner) + "-" + std::to_string(i))
      .setRealm(spawner)
      .setHp(static_cast<int16_t>(20 + (i * 37) % 180))
      .setColor(kColors[(i + spawner) % 3]);
  game::WeaponT weapon;
  weapon.name = i % 2 == 0 ? "club" : "bow";
  weapon.damage = static_cast<int16_t>(1 + i % 12);
  orc.setEquipped(std::move(weapon));
  return txn.submit(orc).status();
}

absl::Status logEvent(TransactionContext& txn, std::string kind, int64_t at) {
  auto e = game::EventChangeRequest::creation();
  e.setKind(kind).setAt(at);
  return txn.submit(e).status();
}

int fail(const absl::Status& s) {
  std::fprintf(stderr, "flatstore-demo: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path =
      argc > 1 ? argv[1] : (std::filesystem::temp_directory_path() / "flatstore-demo.db").string();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);

  auto opened = flatstore::Workspace::open(path, {.synchronous = flatstore::Synchronous::kNormal});
  if (!opened.ok()) return fail(opened.status());
  flatstore::Workspace& ws = **opened;
  std::printf("flatstore demo: %s\n\n", path.c_str());

  // Spawners: one small transaction per monster, all on the Monster table, from three
  // threads at once. Each also logs an event, in a transaction over both tables.
  std::vector<std::thread> threads;
  for (int s = 0; s < kSpawners; ++s) {
    threads.emplace_back([&ws, s] {
      std::vector<flatstore::TransactionHandle> handles;
      for (int i = 0; i < kMonstersPerSpawner; ++i) {
        handles.push_back(ws.performChanges<game::Monster>(
            [s, i](TransactionContext& txn) { return spawn(txn, s, i); },
            flatstore::TransactionOptions::named("spawn")));
        if (i % 50 == 49) {
          handles.push_back(ws.performChanges<game::Monster, game::Event>(
              [s, i](TransactionContext& txn) -> absl::Status {
                auto count = txn.fetch<game::Monster>().where(F::realm == s).count();
                if (!count.ok()) return count.status();
                return logEvent(txn, "realm " + std::to_string(s) + " census", *count);
              },
              flatstore::TransactionOptions::named("census")));
        }
      }
      for (auto& h : handles) {
        if (auto r = h.wait(); !r.ok())
          std::fprintf(stderr, "spawn failed: %s\n", r.status().ToString().c_str());
      }
    });
  }
  for (auto& t : threads) t.join();
  threads.clear();

  // A healer and a combat thread change monsters concurrently; an auditor writes only
  // events, so it runs in parallel with both.
  threads.emplace_back([&ws] {
    auto r = ws.performChangesAndWait<game::Monster>(
        [](TransactionContext& txn) -> absl::Status {
          auto weak = txn.fetch<game::Monster>().where(F::hp < 50).all();
          if (!weak.ok()) return weak.status();
          for (const auto& m : *weak) {
            auto heal = game::MonsterChangeRequest::changeOf(*m);
            heal.setHp(static_cast<int16_t>(m->hp() + 50));
            if (auto s = txn.submit(heal); !s.ok()) return s.status();
          }
          return absl::OkStatus();
        },
        flatstore::TransactionOptions::named("heal"));
    if (r.ok()) std::printf("healer: %lld monsters healed\n", static_cast<long long>(r->updated));
  });
  threads.emplace_back([&ws] {
    auto r = ws.performChangesAndWait<game::Monster>(
        [](TransactionContext& txn) -> absl::Status {
          auto victims =
              txn.fetch<game::Monster>()
                  .where(F::color == game::Color::Green && F::equipped.asWeapon.damage < 3)
                  .all();
          if (!victims.ok()) return victims.status();
          for (const auto& m : *victims) {
            if (auto s = txn.submit(game::MonsterChangeRequest::deletionOf(*m)); !s.ok())
              return s.status();
          }
          return absl::OkStatus();
        },
        flatstore::TransactionOptions::named("combat"));
    if (r.ok()) std::printf("combat: %lld monsters defeated\n", static_cast<long long>(r->deleted));
  });
  threads.emplace_back([&ws] {
    for (int i = 0; i < 100; ++i) {
      auto r = ws.performChangesAndWait<game::Event>(
          [i](TransactionContext& txn) { return logEvent(txn, "audit", i); },
          flatstore::TransactionOptions::named("audit"));
      if (!r.ok()) std::fprintf(stderr, "audit failed: %s\n", r.status().ToString().c_str());
    }
    std::printf("auditor: 100 events logged\n");
  });
  for (auto& t : threads) t.join();

  // Queries: typed predicates, compiled to SQL over indexes where possible.
  auto total = ws.fetch<game::Monster>().count();
  auto strongest = ws.fetch<game::Monster>()
                       .where(F::color == game::Color::Red)
                       .orderBy(F::hp.descending(), F::name.ascending())
                       .limit(5)
                       .all();
  auto events = ws.fetch<game::Event>().count();
  if (!total.ok()) return fail(total.status());
  if (!strongest.ok()) return fail(strongest.status());
  if (!events.ok()) return fail(events.status());

  std::printf("\nmonsters: %lld, events: %lld, last commit: %llu\n", static_cast<long long>(*total),
              static_cast<long long>(*events),
              static_cast<unsigned long long>(ws.lastCommitSequence()));
  std::printf("\nstrongest red monsters:\n%-16s %5s %4s %7s  %s\n", "name", "realm", "hp", "weapon",
              "versionstamp");
  for (const auto& m : *strongest) {
    std::printf("%-16.*s %5d %4d %7s  %s\n", static_cast<int>(m->name().size()), m->name().data(),
                m->realm(), m->hp(),
                m->equippedAsWeapon() != nullptr ? m->equippedAsWeapon()->name()->c_str() : "-",
                m->versionstamp().toString().c_str());
  }
  for (int realm = 0; realm < kSpawners; ++realm) {
    auto n = ws.fetch<game::Monster>().where(F::realm == realm && F::hp >= 100).count();
    if (!n.ok()) return fail(n.status());
    std::printf("realm %d: %lld monsters with hp >= 100\n", realm, static_cast<long long>(*n));
  }
  std::printf("\n%s", ws.metrics().toText().c_str());
  if (auto s = ws.shutdown(); !s.ok()) return fail(s);
  return 0;
}
