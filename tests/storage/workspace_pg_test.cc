// The same application code on both engines: every test body runs once on a SQLite file
// and once on a PostgreSQL database (a schema of its own on the server that
// FLATSTORE_TEST_PG names; skipped without one), through the public API and the
// generated classes only, as a team moving its application from one engine to the other
// would check it: writes and reads, queries against a brute-force filter, count,
// snapshots, changesSince, latestVersionstamp, chunked work, the dictionary,
// compare-and-set, unique violations, rollback, subscriptions, and a second workspace on
// the same database standing for another client. Then what only a PostgreSQL URI can meet at open.
#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/pg_schema.h"
#include "runtime/postgres.h"
#include "tests/support/pg_schema.h"
#include "tests/support/random.h"
#include "tests/support/status_macros.h"
#include "tests/support/wait.h"

namespace flatstore::test::game {
namespace {

using ::flatstore::bench::Doc;
using ::flatstore::bench::DocChangeRequest;
using ::flatstore::testing::Engine;
using ::flatstore::testing::engineName;
using ::flatstore::testing::kBoundedWait;
using ::flatstore::testing::PgTestSchema;
using ::flatstore::testing::Rng;
using ::flatstore::testing::TestDatabase;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;
using F = MonsterFields;
using Key = std::pair<std::string, int32_t>;

Key keyOf(const MonsterEntity& m) { return {std::string(m.name()), m.realm()}; }

std::vector<Key> keysOf(const FetchedResult<Monster>& r) {
  std::vector<Key> out;
  for (const auto& m : r) out.push_back(keyOf(*m));
  return out;
}

std::string show(const std::vector<Key>& keys) {
  return absl::StrJoin(keys, " ", [](std::string* out, const Key& k) {
    absl::StrAppend(out, "(", k.first, ",", k.second, ")");
  });
}

MonsterChangeRequest monster(std::string_view name, int32_t realm, int16_t hp) {
  auto r = MonsterChangeRequest::creation();
  r.setName(name).setRealm(realm).setHp(hp);
  return r;
}

// A closure that submits `requests` in order and stops at the first error.
std::function<absl::Status(TransactionContext&)> submitAll(
    std::vector<MonsterChangeRequest> requests) {
  return [requests = std::move(requests)](TransactionContext& txn) -> absl::Status {
    for (const auto& r : requests) FLATSTORE_RETURN_IF_ERROR(txn.submit(r).status());
    return absl::OkStatus();
  };
}

// A fixture whose workspace `ws_` is a fresh database of the engine the test is
// instantiated with. open() opens another workspace on the same database: another client.
class SameCodeTest : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override {
    db_ = std::make_unique<TestDatabase>(GetParam(), "same_code");
    if (!db_->available()) GTEST_SKIP() << PgTestSchema::kSkipReason;
    ASSERT_TRUE(db_->ok());
    ws_ = open();
    ASSERT_NE(ws_, nullptr);
  }

  // Workspaces close before the database goes (their connections hold its locks).
  void TearDown() override {
    ws_.reset();
    db_.reset();
  }

  std::unique_ptr<Workspace> open(WorkspaceOptions options = {}) {
    auto ws = Workspace::open(db_->location(), options);
    EXPECT_OK(ws);
    return ws.ok() ? std::move(*ws) : nullptr;
  }

  // The committed Monsters, by key.
  std::map<Key, std::shared_ptr<const MonsterEntity>> monsters(Workspace& ws) {
    std::map<Key, std::shared_ptr<const MonsterEntity>> out;
    auto all = ws.fetch<Monster>().all();
    EXPECT_OK(all);
    if (all.ok()) {
      for (const auto& m : *all) out.emplace(keyOf(*m), m);
    }
    return out;
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<Workspace> ws_;
};

INSTANTIATE_TEST_SUITE_P(Engines, SameCodeTest,
                         ::testing::Values(Engine::kSqlite, Engine::kPostgres), engineName);

// ---------------------------------------------------------------------------------------
// Writes and reads

TEST_P(SameCodeTest, InsertGetUpdateDeleteThroughTheGeneratedClasses) {
  auto inserted =
      ws_->performChangesAndWait<Monster, Event>([](TransactionContext& txn) -> absl::Status {
        auto orc = monster("orc", 1, 30);
        orc.setColor(Color::Red).setPos(common::Vec3(1.5f, 2, 3)).setEmail("orc@example");
        WeaponT axe;
        axe.name = "axe";
        axe.damage = 12;
        orc.setEquipped(std::move(axe)).setScore(7);
        EXPECT_EQ(*txn.submit(orc), SubmitOutcome::kInserted);
        EXPECT_EQ(*txn.submit(monster("troll", 1, 120)), SubmitOutcome::kInserted);
        auto spawn = EventChangeRequest::creation();
        spawn.setKind("spawn").setAt(5);
        EXPECT_EQ(*txn.submit(spawn), SubmitOutcome::kInserted);
        return absl::OkStatus();
      });
  ASSERT_OK(inserted);
  EXPECT_EQ(inserted->inserted, 3);
  EXPECT_GT(inserted->versionstamp, Versionstamp());

  auto orc = ws_->get<Monster>("orc", 1);
  ASSERT_OK(orc);
  ASSERT_NE(*orc, nullptr);
  EXPECT_EQ((*orc)->hp(), 30);
  EXPECT_EQ((*orc)->color(), Color::Red);
  EXPECT_EQ((*orc)->pos()->x(), 1.5f);
  EXPECT_EQ((*orc)->email(), "orc@example");
  EXPECT_EQ((*orc)->equippedAsWeapon()->damage(), 12);
  EXPECT_EQ((*orc)->score(), 7);
  EXPECT_EQ((*orc)->mana(), 150) << "untouched fields keep the schema's defaults";
  EXPECT_EQ((*orc)->versionstamp(), inserted->versionstamp);
  EXPECT_GT((*orc)->rowid(), 0);
  EXPECT_EQ(*ws_->get<Monster>("orc", 2), nullptr);

  auto events = ws_->fetch<Event>().all();
  ASSERT_OK(events);
  ASSERT_EQ(events->size(), 1u);
  const int64_t event_id = (*events)[0]->rowid();
  EXPECT_GT(event_id, 0);
  auto by_id = ws_->get<Event>(event_id);
  ASSERT_OK(by_id);
  ASSERT_NE(*by_id, nullptr);
  EXPECT_EQ((*by_id)->kind(), "spawn");

  // A change applies the touched fields only; setting a field to its value is no change.
  auto updated = ws_->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
    auto hurt = MonsterChangeRequest::changeOf(**orc);
    hurt.setHp(3);
    EXPECT_EQ(*txn.submit(hurt), SubmitOutcome::kUpdated);
    EXPECT_EQ(*txn.submit(hurt), SubmitOutcome::kUnchanged);
    auto up = MonsterChangeRequest::upsert();
    up.setName("imp").setRealm(2).setHp(8);
    EXPECT_EQ(*txn.submit(up), SubmitOutcome::kInserted);
    return absl::OkStatus();
  });
  ASSERT_OK(updated);
  EXPECT_EQ(updated->updated, 1);
  EXPECT_EQ(updated->inserted, 1);
  EXPECT_GT(updated->versionstamp, inserted->versionstamp);
  auto hurt = ws_->get<Monster>("orc", 1);
  ASSERT_OK(hurt);
  EXPECT_EQ((*hurt)->hp(), 3);
  EXPECT_EQ((*hurt)->color(), Color::Red);
  EXPECT_EQ((*hurt)->email(), "orc@example");
  EXPECT_EQ((*hurt)->rowid(), (*orc)->rowid());
  EXPECT_EQ((*hurt)->versionstamp(), updated->versionstamp);

  auto deleted =
      ws_->performChangesAndWait<Monster, Event>([&](TransactionContext& txn) -> absl::Status {
        EXPECT_EQ(*txn.submit(MonsterChangeRequest::deletion("orc", 1)), SubmitOutcome::kDeleted);
        EXPECT_EQ(*txn.submit(EventChangeRequest::deletion(event_id)), SubmitOutcome::kDeleted);
        auto again = txn.submit(MonsterChangeRequest::deletion("orc", 1));
        EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound) << again.status();
        return absl::OkStatus();
      });
  ASSERT_OK(deleted);
  EXPECT_EQ(deleted->deleted, 2);
  EXPECT_EQ(*ws_->get<Monster>("orc", 1), nullptr);
  EXPECT_EQ(*ws_->get<Event>(event_id), nullptr);
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 2);
  EXPECT_EQ(*ws_->fetch<Event>().count(), 0);
  auto latest = ws_->latestVersionstamp();
  ASSERT_OK(latest);
  EXPECT_GE(*latest, deleted->versionstamp);
}

// A closure's queries and lookups see its own pending inserts, changes and deletions
// over the committed state, in both tables it declared.
TEST_P(SameCodeTest, AClosureReadsItsOwnWrites) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>(
      submitAll({monster("orc", 1, 30), monster("elf", 1, 50)})));
  auto done =
      ws_->performChangesAndWait<Monster, Event>([](TransactionContext& txn) -> absl::Status {
        FLATSTORE_RETURN_IF_ERROR(txn.submit(monster("imp", 1, 40)).status());
        auto elf = MonsterChangeRequest::upsert();
        elf.setName("elf").setRealm(1).setHp(10);
        FLATSTORE_RETURN_IF_ERROR(txn.submit(elf).status());
        FLATSTORE_RETURN_IF_ERROR(txn.submit(MonsterChangeRequest::deletion("orc", 1)).status());
        auto by_hp = txn.fetch<Monster>().orderBy(F::hp.descending()).all();
        FLATSTORE_RETURN_IF_ERROR(by_hp.status());
        EXPECT_THAT(keysOf(*by_hp), ElementsAre(Key{"imp", 1}, Key{"elf", 1}));
        EXPECT_EQ(*txn.fetch<Monster>().where(F::hp >= 30).count(), 1);
        EXPECT_EQ(*txn.get<Monster>("orc", 1), nullptr);
        EXPECT_EQ((*txn.get<Monster>("elf", 1))->hp(), 10);
        auto tick = EventChangeRequest::creation();
        tick.setKind("tick").setAt(3);
        FLATSTORE_RETURN_IF_ERROR(txn.submit(tick).status());
        EXPECT_EQ(*txn.fetch<Event>().where(EventFields::at > 2).count(), 1);
        return absl::OkStatus();
      });
  ASSERT_OK(done);
  auto after = ws_->fetch<Monster>().orderBy(F::hp.descending()).all();
  ASSERT_OK(after);
  EXPECT_THAT(keysOf(*after), ElementsAre(Key{"imp", 1}, Key{"elf", 1}));
  EXPECT_EQ(*ws_->fetch<Event>().count(), 1);
}

// ---------------------------------------------------------------------------------------
// Queries

const char* const kNames[] = {"orc",  "Orc", "ORC", "troll", "Troll", "\xc3\xa9lan", "zed", "Zed",
                              "_imp", "a b", "a",   "ab",    "b"};

// Monster i of the query tests: a key from kNames and a realm, and fields spread so that
// filters on them select various parts, with nulls and ties.
MonsterChangeRequest queryMonster(int i, Rng& rng) {
  constexpr int kNameCount = static_cast<int>(std::size(kNames));
  auto r =
      monster(kNames[i % kNameCount], i / kNameCount, static_cast<int16_t>(rng.range(-20, 200)));
  r.setMana(static_cast<int16_t>(rng.range(0, 5) * 40))
      .setColor(rng.pick(std::vector<Color>{Color::Red, Color::Green, Color::Blue}))
      .setSpeed(static_cast<double>(rng.range(-4, 4)) / 4);
  if (rng.chance(0.8)) {
    r.setPos(common::Vec3(static_cast<float>(rng.range(-8, 8)) / 4, 0, 0));
  }
  if (rng.chance(0.6)) r.setScore(static_cast<int32_t>(rng.range(-3, 30)));
  if (rng.chance(0.3)) r.setEmail(absl::StrCat("m", i, "@example"));
  if (rng.chance(0.4)) {
    WeaponT w;
    w.name = absl::StrCat("w", i % 5);
    w.damage = static_cast<int16_t>(rng.range(0, 20));
    r.setEquipped(std::move(w));
  } else if (rng.chance(0.5)) {
    ShieldT s;
    s.armor = static_cast<int32_t>(rng.range(0, 9));
    r.setEquipped(std::move(s));
  }
  if (rng.chance(0.5)) {
    StatsT stats;
    stats.level = static_cast<int32_t>(rng.range(1, 6));
    r.setStats(std::move(stats));
  }
  return r;
}

struct Window {
  std::optional<int64_t> limit;
  int64_t offset = 0;
};

// What a query must return, computed here from every object: kept when the predicate is
// true, sorted by the orderings (nulls first ascending), ties by rowid, then windowed.
std::vector<Key> bruteForce(const std::vector<std::shared_ptr<const MonsterEntity>>& all,
                            const Predicate<Monster>& where,
                            const std::vector<Ordering<Monster>>& order, const Window& w) {
  std::vector<const MonsterEntity*> rows;
  for (const auto& m : all) {
    if (where.matches(*m)) rows.push_back(m.get());
  }
  std::sort(rows.begin(), rows.end(), [&](const MonsterEntity* a, const MonsterEntity* b) {
    for (const Ordering<Monster>& o : order) {
      auto x = sortOrder(o.field->read(a->data()), o.field->read(b->data()));
      if (x != 0) return o.descending ? x > 0 : x < 0;
    }
    return a->rowid() < b->rowid();
  });
  size_t begin = std::min(rows.size(), static_cast<size_t>(w.offset));
  size_t end = w.limit ? std::min(rows.size(), begin + static_cast<size_t>(*w.limit)) : rows.size();
  std::vector<Key> out;
  for (size_t i = begin; i < end; ++i) out.push_back(keyOf(*rows[i]));
  return out;
}

Query<Monster> build(Query<Monster> q, const Predicate<Monster>& where,
                     const std::vector<Ordering<Monster>>& order, const Window& w) {
  q.where(where);
  for (const Ordering<Monster>& o : order) q.orderBy(o);
  if (w.limit) q.limit(*w.limit);
  q.offset(w.offset);
  return q;
}

// Filters on key columns, indexes (also through structs, unions and nested tables) and
// unindexed fields, with nulls, negation, in() and string ranges; orderings with ties
// and nulls; windows. Each query's answer and count equal the brute-force answer over
// every object, through fetch and through a snapshot.
TEST_P(SameCodeTest, QueriesAgreeWithABruteForceFilter) {
  constexpr int kObjects = 260;
  Rng rng(20261207);
  std::vector<MonsterChangeRequest> creations;
  for (int i = 0; i < kObjects; ++i) creations.push_back(queryMonster(i, rng));
  ASSERT_OK(ws_->performChangesAndWait<Monster>(submitAll(std::move(creations))));
  // Changes after the insert: index entries updated and removed, rowids with gaps.
  ASSERT_OK(ws_->performChangesAndWait<Monster>([](TransactionContext& txn) -> absl::Status {
    auto all = txn.fetch<Monster>().all();
    FLATSTORE_RETURN_IF_ERROR(all.status());
    for (size_t i = 0; i < all->size(); i += 7) {
      FLATSTORE_RETURN_IF_ERROR(txn.submit(MonsterChangeRequest::deletionOf(*(*all)[i])).status());
    }
    for (size_t i = 3; i < all->size(); i += 11) {
      if (i % 7 == 0) continue;  // deleted above
      auto c = MonsterChangeRequest::changeOf(*(*all)[i]);
      c.setHp(static_cast<int16_t>(i % 97 - 10)).setColor(Color::Green).clearScore();
      FLATSTORE_RETURN_IF_ERROR(txn.submit(c).status());
    }
    return absl::OkStatus();
  }));
  auto everything = ws_->fetch<Monster>().all();
  ASSERT_OK(everything);
  ASSERT_GT(everything->size(), 200u);
  const std::vector<std::shared_ptr<const MonsterEntity>>& all = everything->objects();

  const std::vector<std::pair<std::string, Predicate<Monster>>> filters = {
      {"all", Predicate<Monster>()},
      {"hp > 100", F::hp > 100},
      {"hp >= 10 && color == Red", F::hp >= 10 && F::color == Color::Red},
      {"color in (Red, Green) || hp < 0", F::color.in({Color::Red, Color::Green}) || F::hp < 0},
      {"!(hp > 50)", !(F::hp > 50)},
      {"hp not in", F::hp.notIn({0, 1, 2, 50, 100})},
      {"key realm", F::realm == 2 || F::realm >= 15},
      {"key name range", F::name >= "a" && F::name < "o"},
      {"key name equal", F::name == "orc" && F::realm != 3},
      {"pos.x < 0.5", F::pos.x < 0.5},
      {"pos.x null", F::pos.x.isNull()},
      {"union member", F::equipped.asWeapon.damage > 5},
      {"nested table", F::stats.level >= 3 && F::hp < 150},
      {"score null", F::score.isNull()},
      {"score > 10", F::score > 10},
      {"!(score > 10)", !(F::score > 10)},
      {"unindexed and indexed", F::mana < 100 && F::color != Color::Blue},
      {"unique email", F::email.isNotNull() && F::email > "m1"},
      {"speed", F::speed <= 0 || F::alive == false},
  };
  const std::vector<std::pair<std::string, std::vector<Ordering<Monster>>>> orders = {
      {"rowid", {}},
      {"hp desc", {F::hp.descending()}},
      {"name, realm desc", {F::name.ascending(), F::realm.descending()}},
      {"pos.x", {F::pos.x.ascending()}},
      {"score desc, hp", {F::score.descending(), F::hp.ascending()}},
      {"color, mana desc", {F::color.ascending(), F::mana.descending()}},
  };
  const std::vector<Window> windows = {
      {}, {.limit = 7}, {.limit = 10, .offset = 5}, {.offset = 1000}};

  int nonempty = 0;
  for (const auto& [filter_name, where] : filters) {
    for (const auto& [order_name, order] : orders) {
      for (const Window& w : windows) {
        SCOPED_TRACE(absl::StrCat(filter_name, " order by ", order_name, " limit ",
                                  w.limit.value_or(-1), " offset ", w.offset));
        std::vector<Key> expected = bruteForce(all, where, order, w);
        nonempty += expected.empty() ? 0 : 1;
        auto got = build(ws_->fetch<Monster>(), where, order, w).all();
        ASSERT_OK(got);
        ASSERT_EQ(keysOf(*got), expected)
            << "got " << show(keysOf(*got)) << "\nexpected " << show(expected);
        auto n = build(ws_->fetch<Monster>(), where, order, w).count();
        ASSERT_OK(n);
        EXPECT_EQ(*n, static_cast<int64_t>(expected.size()));
      }
    }
  }
  EXPECT_GT(nonempty, 300) << "the filters should select something";

  // The same through one snapshot, and first().
  ASSERT_OK(ws_->snapshot([&](Workspace::Snapshot& s) -> absl::Status {
    for (const auto& [filter_name, where] : filters) {
      SCOPED_TRACE(filter_name);
      std::vector<Key> expected = bruteForce(all, where, {F::hp.descending()}, {});
      auto got = build(s.fetch<Monster>(), where, {F::hp.descending()}, {}).all();
      EXPECT_OK(got);
      if (got.ok()) EXPECT_EQ(keysOf(*got), expected);
      auto first = s.fetch<Monster>().where(where).orderBy(F::hp.descending()).first();
      EXPECT_OK(first);
      if (first.ok() && !expected.empty() && *first != nullptr) {
        EXPECT_EQ(keyOf(**first), expected[0]);
      }
      if (first.ok()) EXPECT_EQ(*first == nullptr, expected.empty());
    }
    return absl::OkStatus();
  }));

  auto negative = ws_->fetch<Monster>().limit(-1).all();
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(negative.status().message()), HasSubstr("flatstore.test.game.Monster"));
}

// ---------------------------------------------------------------------------------------
// Snapshots, the change log, the latest versionstamp

TEST_P(SameCodeTest, ASnapshotSeesOneStateWhileCommitsGoOn) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>(submitAll({monster("orc", 1, 30)})));
  ASSERT_OK(ws_->snapshot([&](Workspace::Snapshot& s) -> absl::Status {
    EXPECT_EQ(*s.fetch<Monster>().count(), 1);
    EXPECT_OK(ws_->performChangesAndWait<Monster>([](TransactionContext& txn) -> absl::Status {
      FLATSTORE_RETURN_IF_ERROR(txn.submit(monster("imp", 1, 3)).status());
      auto orc = MonsterChangeRequest::upsert();
      orc.setName("orc").setRealm(1).setHp(99);
      return txn.submit(orc).status();
    }));
    EXPECT_EQ(*s.fetch<Monster>().count(), 1);
    EXPECT_EQ(*s.get<Monster>("imp", 1), nullptr);
    EXPECT_EQ((*s.get<Monster>("orc", 1))->hp(), 30);
    EXPECT_EQ(*s.fetch<Monster>().where(F::hp > 50).count(), 0);
    return absl::OkStatus();
  }));
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 2);
  EXPECT_EQ((*ws_->get<Monster>("orc", 1))->hp(), 99);
  // The callback's error is snapshot()'s.
  absl::Status failed =
      ws_->snapshot([](Workspace::Snapshot&) { return absl::CancelledError("enough"); });
  EXPECT_EQ(failed.code(), absl::StatusCode::kCancelled);
}

// changesSince lists each changed object once in its current version and the keys of
// deleted ones, only of its table; `through` covers every commit so far and none after,
// and passing it on lists only what came after.
TEST_P(SameCodeTest, ChangesSinceIsCompleteAndThroughAdvances) {
  auto start = ws_->latestVersionstamp();
  ASSERT_OK(start);
  auto none = ws_->changesSince<Monster>(*start);
  ASSERT_OK(none);
  EXPECT_THAT(none->changed, IsEmpty());
  EXPECT_THAT(none->deleted, IsEmpty());

  auto first = ws_->performChangesAndWait<Monster>(
      submitAll({monster("a", 1, 1), monster("b", 1, 2), monster("c", 1, 3)}));
  ASSERT_OK(first);
  auto event = ws_->performChangesAndWait<Event>([](TransactionContext& txn) {
    auto e = EventChangeRequest::creation();
    e.setKind("tick").setAt(1);
    return txn.submit(e).status();
  });
  ASSERT_OK(event);
  auto c1 = ws_->changesSince<Monster>(*start);
  ASSERT_OK(c1);
  std::map<Key, int16_t> changed;
  for (const auto& m : c1->changed) {
    EXPECT_TRUE(changed.emplace(keyOf(*m), m->hp()).second) << "listed twice: " << m->name();
    EXPECT_EQ(m->versionstamp(), first->versionstamp);
  }
  EXPECT_EQ(changed, (std::map<Key, int16_t>{{{"a", 1}, 1}, {{"b", 1}, 2}, {{"c", 1}, 3}}));
  EXPECT_THAT(c1->deleted, IsEmpty());
  EXPECT_GE(c1->through, event->versionstamp) << "through covers the commits of every table";

  auto second = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) -> absl::Status {
    auto b = MonsterChangeRequest::upsert();
    b.setName("b").setRealm(1).setHp(20);
    FLATSTORE_RETURN_IF_ERROR(txn.submit(b).status());
    FLATSTORE_RETURN_IF_ERROR(txn.submit(MonsterChangeRequest::deletion("c", 1)).status());
    return txn.submit(monster("d", 1, 4)).status();
  });
  ASSERT_OK(second);
  auto c2 = ws_->changesSince<Monster>(c1->through);
  ASSERT_OK(c2);
  changed.clear();
  for (const auto& m : c2->changed) {
    changed.emplace(keyOf(*m), m->hp());
    EXPECT_EQ(m->versionstamp(), second->versionstamp);
  }
  EXPECT_EQ(changed, (std::map<Key, int16_t>{{{"b", 1}, 20}, {{"d", 1}, 4}}));
  ASSERT_EQ(c2->deleted.size(), 1u);
  EXPECT_THAT(c2->deleted[0], ElementsAre(Value::text("c"), Value::integer(1)));
  EXPECT_LT(c1->through, second->versionstamp) << "a later commit is after through";
  EXPECT_GE(c2->through, second->versionstamp);
  EXPECT_GT(c2->through, c1->through);

  // Nothing after the latest; the Events' log has its own entries.
  auto c3 = ws_->changesSince<Monster>(c2->through);
  ASSERT_OK(c3);
  EXPECT_THAT(c3->changed, IsEmpty());
  EXPECT_THAT(c3->deleted, IsEmpty());
  EXPECT_EQ(c3->through, c2->through);
  auto events = ws_->changesSince<Event>(*start);
  ASSERT_OK(events);
  ASSERT_EQ(events->changed.size(), 1u);
  EXPECT_EQ(events->changed[0]->kind(), "tick");
  const int64_t event_id = events->changed[0]->rowid();
  ASSERT_OK(ws_->performChangesAndWait<Event>([event_id](TransactionContext& txn) {
    return txn.submit(EventChangeRequest::deletion(event_id)).status();
  }));
  auto gone = ws_->changesSince<Event>(events->through);
  ASSERT_OK(gone);
  EXPECT_THAT(gone->changed, IsEmpty());
  ASSERT_EQ(gone->deleted.size(), 1u);
  EXPECT_THAT(gone->deleted[0], ElementsAre(Value::integer(event_id)));
}

// The documented value, exactly: latestVersionstamp() is the versionstamp of the latest
// commit, here the one just made (nothing else commits meanwhile).
// Right after each commit, its versionstamp is the latest. On PostgreSQL this holds under
// unrelated load on the same server too: another application's transactions, each of
// which ends at once, and a workspace of another database, running all the while.
TEST_P(SameCodeTest, LatestVersionstampIsTheLatestCommits) {
  std::unique_ptr<TestDatabase> other_db;
  std::unique_ptr<Workspace> other;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> unrelated[2] = {0, 0};
  std::vector<std::thread> load;
  absl::Cleanup stop_load = [&] {
    stop = true;
    for (std::thread& t : load) t.join();
  };
  if (GetParam() == Engine::kPostgres) {
    other_db = std::make_unique<TestDatabase>(Engine::kPostgres, "unrelated");
    ASSERT_TRUE(other_db->ok());
    auto o = Workspace::open(other_db->location());
    ASSERT_OK(o);
    other = std::move(*o);
    for (int k = 0; k < 2; ++k) {
      load.emplace_back([&] {
        auto conn = internal::PgConnection::connect(PgTestSchema::serverUri());
        while (conn.ok() && !stop.load()) {
          if ((*conn)->execute("SELECT pg_current_xact_id()").ok()) unrelated[0]++;
        }
      });
    }
    load.emplace_back([&] {
      for (int i = 0; !stop.load(); ++i) {
        if (other->performChangesAndWait<Monster>(submitAll({monster("u", i, 1)})).ok()) {
          unrelated[1]++;
        }
      }
    });
  }
  for (int i = 0; i < 150; ++i) {
    auto done = ws_->performChangesAndWait<Monster>(submitAll({monster("m", i, 1)}));
    ASSERT_OK(done);
    auto latest = ws_->latestVersionstamp();
    ASSERT_OK(latest);
    EXPECT_EQ(latest->toString(), done->versionstamp.toString()) << "commit " << i;
  }
  std::move(stop_load).Invoke();
  if (GetParam() == Engine::kPostgres) {
    EXPECT_GT(unrelated[0].load(), 0);
    EXPECT_GT(unrelated[1].load(), 0);
  }
}

// The log keeps change_log_retention commits (pruned every 256 commits): a versionstamp
// older than that is OutOfRange, a recent one still reads.
TEST_P(SameCodeTest, ChangesSinceOfAPrunedVersionstampIsOutOfRange) {
  ws_.reset();
  ws_ = open({.change_log_retention = 10});
  ASSERT_NE(ws_, nullptr);
  auto first = ws_->performChangesAndWait<Monster>(submitAll({monster("m", 0, 0)}));
  ASSERT_OK(first);
  Versionstamp recent;
  for (int i = 1; i <= 300; ++i) {
    auto r = ws_->performChangesAndWait<Monster>([i](TransactionContext& txn) {
      auto u = MonsterChangeRequest::upsert();
      u.setName("m").setRealm(0).setHp(static_cast<int16_t>(i));
      return txn.submit(u).status();
    });
    ASSERT_OK(r);
    if (i == 295) recent = r->versionstamp;
  }
  auto old = ws_->changesSince<Monster>(first->versionstamp);
  EXPECT_EQ(old.status().code(), absl::StatusCode::kOutOfRange) << old.status();
  auto fresh = ws_->changesSince<Monster>(recent);
  ASSERT_OK(fresh);
  ASSERT_EQ(fresh->changed.size(), 1u);
  EXPECT_EQ(fresh->changed[0]->hp(), 300);
}

// ---------------------------------------------------------------------------------------
// Bulk work in chunks

// An import of Events in chunks of 40: each chunk its own commit, its cursor saved with
// it, so that an import stopped by an error resumes where it stopped, in another
// workspace.
TEST_P(SameCodeTest, ChunkedWorkResumesFromItsSavedCursor) {
  static constexpr int kEvents = 300;
  static constexpr int kChunk = 40;
  // Imports chunk after chunk; fails in the chunk that would start at `fail_at`.
  auto import = [](int fail_at) {
    return [fail_at](TransactionContext& txn, std::string& cursor) -> absl::StatusOr<bool> {
      int next = cursor.empty() ? 0 : std::stoi(cursor);
      if (next == fail_at) return absl::UnavailableError("the source went away");
      int end = std::min(next + kChunk, kEvents);
      for (int i = next; i < end; ++i) {
        auto e = EventChangeRequest::creation();
        e.setKind("imported").setAt(i);
        FLATSTORE_RETURN_IF_ERROR(txn.submit(e).status());
      }
      cursor = std::to_string(end);
      return end < kEvents;
    };
  };
  auto stopped = ws_->performChunked<Event>("events", import(3 * kChunk)).wait();
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kUnavailable) << stopped.status();
  EXPECT_EQ(*ws_->fetch<Event>().count(), 3 * kChunk);
  ws_.reset();
  ws_ = open();
  ASSERT_NE(ws_, nullptr);
  auto resumed = ws_->performChunked<Event>("events", import(-1)).wait();
  ASSERT_OK(resumed);
  EXPECT_EQ(resumed->inserted, kEvents - 3 * kChunk);

  auto events = ws_->fetch<Event>().orderBy(EventFields::at.ascending()).all();
  ASSERT_OK(events);
  ASSERT_EQ(events->size(), static_cast<size_t>(kEvents));
  std::set<Versionstamp> commits;
  for (int i = 0; i < kEvents; ++i) {
    EXPECT_EQ((*events)[i]->at(), i);
    commits.insert((*events)[i]->versionstamp());
  }
  EXPECT_EQ(commits.size(), static_cast<size_t>((kEvents + kChunk - 1) / kChunk))
      << "one commit per chunk";
}

// ---------------------------------------------------------------------------------------
// The dictionary

// Values of every kind written by one client are read by the other (of the same kind
// only), and outlive both workspaces.
TEST_P(SameCodeTest, DictionaryKeepsTypedValuesForEveryClient) {
  std::unique_ptr<Workspace> other = open();
  ASSERT_NE(other, nullptr);
  Dictionary& mine = ws_->dictionary();
  Dictionary& theirs = other->dictionary();
  const std::vector<uint8_t> blob = {0, 1, 2, 255, 0};
  auto boss_request = monster("boss", 9, 700);
  auto boss = MonsterEntity::fromBytes(boss_request.encodeOver(nullptr)->bytes.span());
  ASSERT_OK(boss);
  for (Dictionary* writer : {&mine, &theirs}) {
    Dictionary& reader = writer == &mine ? theirs : mine;
    SCOPED_TRACE(writer == &mine ? "written here" : "written by the other client");
    ASSERT_OK(writer->setString("name", "flatstore"));
    ASSERT_OK(writer->setInteger("count", writer == &mine ? -42 : 42));
    ASSERT_OK(writer->setDouble("ratio", 0.25));
    ASSERT_OK(writer->setBytes("blob", blob));
    ASSERT_OK(writer->setObject("boss", **boss));
    EXPECT_EQ(reader.getString("name").value_or(std::nullopt), "flatstore");
    EXPECT_EQ(reader.getInteger("count").value_or(std::nullopt), writer == &mine ? -42 : 42);
    EXPECT_EQ(reader.getDouble("ratio").value_or(std::nullopt), 0.25);
    EXPECT_EQ(reader.getBytes("blob").value_or(std::nullopt), blob);
    auto object = reader.getObject<MonsterEntity>("boss");
    ASSERT_OK(object);
    ASSERT_NE(*object, nullptr);
    EXPECT_EQ((*object)->hp(), 700);
    auto as_integer = reader.getInteger("name");
    EXPECT_EQ(as_integer.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(as_integer.status().message()), HasSubstr("'name' holds a string"));
    ASSERT_OK(writer->erase("ratio"));
    EXPECT_EQ(reader.getDouble("ratio").value_or(0.5), std::nullopt);
  }
  EXPECT_EQ(*mine.getString("absent"), std::nullopt);
  ASSERT_OK(mine.erase("never there"));

  other.reset();
  ws_.reset();
  ws_ = open();
  ASSERT_NE(ws_, nullptr);
  EXPECT_EQ(ws_->dictionary().getInteger("count").value_or(std::nullopt), 42);
  auto kept = ws_->dictionary().getObject<MonsterEntity>("boss");
  ASSERT_OK(kept);
  ASSERT_NE(*kept, nullptr);
  EXPECT_EQ((*kept)->name(), "boss");
}

// ---------------------------------------------------------------------------------------
// Conflicts, unique violations, rollback

// requireVersionstamp holds against the newest version, also when another client wrote
// it; requireAbsent refuses a taken key.
TEST_P(SameCodeTest, CompareAndSetSeesOtherClientsCommits) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>(submitAll({monster("orc", 1, 30)})));
  auto read = ws_->get<Monster>("orc", 1);
  ASSERT_OK(read);
  std::shared_ptr<const MonsterEntity> stale = *read;

  std::unique_ptr<Workspace> other = open();
  ASSERT_NE(other, nullptr);
  auto theirs = other->performChangesAndWait<Monster>([](TransactionContext& txn) {
    auto u = MonsterChangeRequest::upsert();
    u.setName("orc").setRealm(1).setHp(31);
    return txn.submit(u).status();
  });
  ASSERT_OK(theirs);

  auto lost = ws_->performChangesAndWait<Monster>([&](TransactionContext& txn) {
    auto c = MonsterChangeRequest::changeOf(*stale);
    c.setMana(1).requireVersionstamp(stale->versionstamp());
    return txn.submit(c).status();
  });
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kFailedPrecondition) << lost.status();
  EXPECT_THAT(std::string(lost.status().message()), HasSubstr("at versionstamp"));
  EXPECT_EQ((*ws_->get<Monster>("orc", 1))->mana(), 150);

  auto taken = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    auto c = monster("orc", 1, 1);
    c.requireAbsent();
    return txn.submit(c).status();
  });
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kFailedPrecondition) << taken.status();
  EXPECT_THAT(std::string(taken.status().message()), HasSubstr("requires that no object has key"));

  auto won = ws_->performChangesAndWait<Monster>([&](TransactionContext& txn) {
    auto c = MonsterChangeRequest::changeOf(*stale);
    c.setMana(1).requireVersionstamp(theirs->versionstamp);
    return txn.submit(c).status();
  });
  ASSERT_OK(won);
  auto now = other->get<Monster>("orc", 1);
  ASSERT_OK(now);
  EXPECT_EQ((*now)->hp(), 31);
  EXPECT_EQ((*now)->mana(), 1);
  EXPECT_EQ((*now)->versionstamp(), won->versionstamp);
}

// A closure's snapshot is taken at its first read: another client's commit before that
// read is in what the closure sees, and is no conflict. (Run by a worker: a caller that
// waits may run its closure inside the write transaction, where the other client could
// not commit.)
TEST_P(SameCodeTest, AClosuresSnapshotIsTakenAtItsFirstRead) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>(submitAll({monster("orc", 1, 30)})));
  std::unique_ptr<Workspace> other = open();
  ASSERT_NE(other, nullptr);
  int runs = 0;
  absl::Status theirs;
  auto done = ws_->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
                   runs += 1;
                   if (runs == 1) {
                     theirs = other
                                  ->performChangesAndWait<Monster>([](TransactionContext& t) {
                                    auto u = MonsterChangeRequest::upsert();
                                    u.setName("orc").setRealm(1).setHp(31);
                                    return t.submit(u).status();
                                  })
                                  .status();
                   }
                   auto orc = txn.get<Monster>("orc", 1);
                   if (!orc.ok()) return orc.status();
                   auto c = MonsterChangeRequest::changeOf(**orc);
                   c.setHp(static_cast<int16_t>((*orc)->hp() + 1));
                   return txn.submit(c).status();
                 })
                  .wait();
  ASSERT_OK(done);
  ASSERT_OK(theirs);
  EXPECT_EQ(runs, 1);
  auto orc = other->get<Monster>("orc", 1);
  ASSERT_OK(orc);
  EXPECT_EQ((*orc)->hp(), 32);
}

// A closure that reads nothing (it creates an object whose key the commit checks)
// depends on no snapshot: another client's commit to its table while it runs is no
// conflict, and it runs once. One that creates a key the other client took meanwhile
// still fails with AlreadyExists.
TEST_P(SameCodeTest, AClosureThatReadsNothingRunsOnceBesideOtherClientsCommits) {
  std::unique_ptr<Workspace> other = open();
  ASSERT_NE(other, nullptr);
  ASSERT_OK(other->performChangesAndWait<Monster>(submitAll({monster("warg", 1, 3)})));
  int runs = 0;
  absl::Status theirs;
  auto done = ws_->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
                   runs += 1;
                   FLATSTORE_RETURN_IF_ERROR(txn.submit(monster("goblin", 1, 5)).status());
                   if (runs == 1) {
                     theirs =
                         other->performChangesAndWait<Monster>(submitAll({monster("troll", 1, 9)}))
                             .status();
                   }
                   return absl::OkStatus();
                 })
                  .wait();
  ASSERT_OK(done);
  ASSERT_OK(theirs);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(monsters(*other).size(), 3u);

  auto taken =
      ws_->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
           FLATSTORE_RETURN_IF_ERROR(txn.submit(monster("ogre", 1, 5)).status());
           theirs.Update(
               other->performChangesAndWait<Monster>(submitAll({monster("ogre", 1, 6)})).status());
           return absl::OkStatus();
         })
          .wait();
  ASSERT_OK(theirs);
  EXPECT_TRUE(absl::IsAlreadyExists(taken.status())) << taken.status();
  auto ogre = ws_->get<Monster>("ogre", 1);
  ASSERT_OK(ogre);
  EXPECT_EQ((*ogre)->hp(), 6);
}

// A taken primary key or unique value fails that transaction alone with AlreadyExists
// naming the table, the field and the value; transactions committed beside it are not
// affected.
// Many creations in one closure. Their keys are taken as free, so the closure waits for
// no round trip; a key that was taken still fails its creation with AlreadyExists,
// which the closure sees and may handle: the table refuses it when the changes are
// written, and the closure runs again asking key by key.
TEST_P(SameCodeTest, ManyCreationsInOneClosureAndATakenKeyAmongThem) {
  const bool postgres = GetParam() == Engine::kPostgres;
  ASSERT_OK(ws_->performChangesAndWait<Monster>(submitAll({monster("m250", 1, 7)})));
  // Round trips the closure's thread waited for during each run, and the creations that
  // found their key taken.
  struct Run {
    int64_t round_trips;
    int taken;
  };
  auto create = [](int from, int count, std::vector<Run>* runs) {
    return [=](TransactionContext& txn) -> absl::Status {
      const int64_t before = internal::PgConnection::roundTripsOnThisThread();
      int taken = 0;
      for (int i = from; i < from + count; ++i) {
        auto r = txn.submit(monster(absl::StrCat("m", i), 1, 1));
        if (absl::IsAlreadyExists(r.status())) {
          taken += 1;
          continue;
        }
        FLATSTORE_RETURN_IF_ERROR(r.status());
      }
      runs->push_back({internal::PgConnection::roundTripsOnThisThread() - before, taken});
      return absl::OkStatus();
    };
  };

  std::vector<Run> runs;
  auto done = ws_->performChangesAndWait<Monster>(create(0, 600, &runs));
  ASSERT_OK(done);
  EXPECT_EQ(done->inserted, 599);
  // Both engines take the keys as free in the first run (the table refuses the taken
  // one at commit), and ask key by key in the second, inside the write transaction.
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].taken, 0);
  if (postgres) {
    EXPECT_EQ(runs[0].round_trips, 0) << "the first run takes the keys as free";
    EXPECT_GE(runs[1].round_trips, 600) << "the second asks key by key";
  }
  EXPECT_EQ(runs.back().taken, 1);
  auto kept = ws_->get<Monster>("m250", 1);
  ASSERT_OK(kept);
  ASSERT_NE(*kept, nullptr);
  EXPECT_EQ((*kept)->hp(), 7);

  // Fresh keys only: one run, no round trip while it runs.
  runs.clear();
  done = ws_->performChangesAndWait<Monster>(create(600, 600, &runs));
  ASSERT_OK(done);
  EXPECT_EQ(done->inserted, 600);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].round_trips, 0);
  EXPECT_EQ(runs[0].taken, 0);
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 1200);

  // A key taken by a creation earlier in the same closure is known without the batch.
  auto twice = ws_->performChangesAndWait<Monster>(
      submitAll({monster("twice", 1, 1), monster("twice", 1, 2)}));
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kAlreadyExists) << twice.status();
  EXPECT_EQ(*ws_->get<Monster>("twice", 1), nullptr);
}

TEST_P(SameCodeTest, UniqueViolationsAreAlreadyExistsNamingTheTable) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    auto r = monster("orc", 1, 30);
    r.setEmail("orc@x");
    return txn.submit(r).status();
  }));
  auto key = ws_->performChangesAndWait<Monster>(submitAll({monster("orc", 1, 9)}));
  EXPECT_EQ(key.status().code(), absl::StatusCode::kAlreadyExists) << key.status();
  EXPECT_THAT(std::string(key.status().message()), HasSubstr("flatstore.test.game.Monster"));
  EXPECT_THAT(std::string(key.status().message()), HasSubstr("(\"orc\", 1)"));

  auto unique = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    auto r = monster("orc2", 1, 30);
    r.setEmail("orc@x");
    return txn.submit(r).status();
  });
  EXPECT_EQ(unique.status().code(), absl::StatusCode::kAlreadyExists) << unique.status();
  EXPECT_THAT(std::string(unique.status().message()), HasSubstr("flatstore.test.game.Monster"));
  EXPECT_THAT(std::string(unique.status().message()), HasSubstr("email"));
  EXPECT_THAT(std::string(unique.status().message()), HasSubstr("\"orc@x\""));

  // Many transactions at once, one of them taking the email: it fails, the others commit.
  std::vector<TransactionHandle> handles;
  for (int i = 0; i < 24; ++i) {
    handles.push_back(ws_->performChanges<Monster>([i](TransactionContext& txn) {
      auto r = monster(absl::StrCat("g", i), 1, static_cast<int16_t>(i));
      r.setEmail(i == 11 ? std::string("orc@x") : absl::StrCat("g", i, "@x"));
      return txn.submit(r).status();
    }));
  }
  ASSERT_TRUE(testing::waitAll(handles));
  for (int i = 0; i < 24; ++i) {
    auto r = handles[i].wait();
    if (i == 11) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists) << r.status();
      EXPECT_THAT(std::string(r.status().message()), HasSubstr("flatstore.test.game.Monster"));
    } else {
      EXPECT_OK(r);
    }
  }
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 24);
  EXPECT_EQ(*ws_->get<Monster>("g11", 1), nullptr);
  EXPECT_EQ(*ws_->fetch<Monster>().where(F::email == "orc@x").count(), 1);
}

// shutdown() inside a closure or an onComplete callback would wait for itself: on both
// engines it fails with FailedPrecondition there, and the workspace goes on.
TEST_P(SameCodeTest, ShutdownInsideAClosureOrCallbackIsFailedPrecondition) {
  absl::Status in_closure, in_callback;
  absl::Notification registered, called;
  TransactionHandle h = ws_->performChanges<Monster>([&](TransactionContext& txn) {
    // The callback is registered before the commit, so it runs where the commit does.
    registered.WaitForNotification();
    in_closure = ws_->shutdown();
    return txn.submit(monster("orc", 1, 5)).status();
  });
  h.onComplete([&](const absl::StatusOr<TransactionResult>&) {
    in_callback = ws_->shutdown();
    called.Notify();
  });
  registered.Notify();
  ASSERT_OK(h.wait());
  ASSERT_TRUE(called.WaitForNotificationWithTimeout(kBoundedWait));
  EXPECT_TRUE(absl::IsFailedPrecondition(in_closure)) << in_closure;
  EXPECT_TRUE(absl::IsFailedPrecondition(in_callback)) << in_callback;
  EXPECT_OK(ws_->performChangesAndWait<Monster>(
      [](TransactionContext& txn) { return txn.submit(monster("elf", 1, 7)).status(); }));
  EXPECT_OK(ws_->shutdown());
}

// A closure that fails after writing to two tables leaves both as they were, whether it
// returns an error, aborts, throws, or its commit is refused.
TEST_P(SameCodeTest, AFailedTransactionRollsBackEverything) {
  auto seeded = ws_->performChangesAndWait<Monster, Event>([](TransactionContext& txn) {
    auto a = monster("a", 1, 1);
    a.setEmail("a@x");
    EXPECT_OK(txn.submit(a));
    auto e = EventChangeRequest::creation();
    e.setKind("seed").setAt(1);
    return txn.submit(e).status();
  });
  ASSERT_OK(seeded);
  const auto before = monsters(*ws_);
  const int64_t event_id = (*ws_->fetch<Event>().first())->rowid();

  // Writes to both tables, then whatever `end` makes of it.
  auto attempt = [&](std::function<absl::Status(TransactionContext&)> end) {
    return ws_->performChangesAndWait<Monster, Event>(
        [&end, event_id](TransactionContext& txn) -> absl::Status {
          FLATSTORE_RETURN_IF_ERROR(txn.submit(monster("b", 1, 2)).status());
          auto a = MonsterChangeRequest::upsert();
          a.setName("a").setRealm(1).setHp(99);
          FLATSTORE_RETURN_IF_ERROR(txn.submit(a).status());
          FLATSTORE_RETURN_IF_ERROR(txn.submit(EventChangeRequest::deletion(event_id)).status());
          auto e = EventChangeRequest::creation();
          e.setKind("late").setAt(2);
          FLATSTORE_RETURN_IF_ERROR(txn.submit(e).status());
          return end(txn);
        });
  };
  auto returned = attempt([](TransactionContext&) { return absl::InternalError("app failed"); });
  EXPECT_EQ(returned.status().code(), absl::StatusCode::kInternal) << returned.status();
  EXPECT_THAT(std::string(returned.status().message()), HasSubstr("app failed"));
  auto aborted = attempt([](TransactionContext& txn) { return txn.abort("changed my mind"); });
  EXPECT_EQ(aborted.status().code(), absl::StatusCode::kAborted) << aborted.status();
  auto thrown =
      attempt([](TransactionContext&) -> absl::Status { throw std::runtime_error("boom"); });
  EXPECT_EQ(thrown.status().code(), absl::StatusCode::kAborted) << thrown.status();
  // The last change takes a unique value: the database refuses the whole transaction.
  auto refused = attempt([](TransactionContext& txn) {
    auto c = monster("c", 1, 3);
    c.setEmail("a@x");
    return txn.submit(c).status();
  });
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists) << refused.status();

  const auto after = monsters(*ws_);
  ASSERT_EQ(after.size(), before.size());
  for (const auto& [key, m] : before) {
    ASSERT_TRUE(after.contains(key)) << key.first;
    EXPECT_EQ(after.at(key)->hp(), m->hp());
    EXPECT_EQ(after.at(key)->versionstamp(), m->versionstamp());
  }
  auto events = ws_->fetch<Event>().all();
  ASSERT_OK(events);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0]->rowid(), event_id);
  auto monster_log = ws_->changesSince<Monster>(seeded->versionstamp);
  ASSERT_OK(monster_log);
  EXPECT_THAT(monster_log->changed, IsEmpty());
  auto event_log = ws_->changesSince<Event>(seeded->versionstamp);
  ASSERT_OK(event_log);
  EXPECT_THAT(event_log->changed, IsEmpty());
  EXPECT_THAT(event_log->deleted, IsEmpty());
  // The workspace goes on.
  ASSERT_OK(attempt([](TransactionContext&) { return absl::OkStatus(); }));
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 2);
}

// ---------------------------------------------------------------------------------------
// Subscriptions

// One row of a delivered result: enough to tell objects and their versions apart.
struct Row {
  Key key;
  Versionstamp vs;
  int16_t hp;
  friend bool operator==(const Row&, const Row&) = default;
};

std::vector<Row> rowsOf(const FetchedResult<Monster>& r) {
  std::vector<Row> out;
  for (const auto& m : r) out.push_back({keyOf(*m), m->versionstamp(), m->hp()});
  return out;
}

std::string show(const std::vector<Row>& rows) {
  return absl::StrJoin(rows, " ", [](std::string* out, const Row& r) {
    absl::StrAppend(out, r.key.first, "/", r.key.second, "@", r.vs.toString(), ":", r.hp);
  });
}

Query<Monster> strongOnes(Workspace& ws) {
  return ws.fetch<Monster>().where(F::hp > 10).orderBy(F::hp.descending());
}

// The rows a fresh fetch of the subscribed query returns.
std::vector<Row> fresh(Workspace& ws) {
  auto r = strongOnes(ws).all();
  EXPECT_OK(r);
  return r.ok() ? rowsOf(*r) : std::vector<Row>{};
}

// The deliveries of one subscription to strongOnes(). Each changeset is checked as it arrives:
// applied to the previous result it gives the new one, `updated` lists exactly the
// objects that kept their place with a new version.
class Deliveries {
 public:
  // Subscribes to strongOnes(ws), from a result fetched now.
  absl::StatusOr<SubscriptionToken> follow(Workspace& ws) {
    FLATSTORE_ASSIGN_OR_RETURN(auto initial, strongOnes(ws).all());
    {
      absl::MutexLock lock(&mu_);
      last_ = rowsOf(initial);
    }
    return ws.subscribe(
        initial, [this](const FetchedResult<Monster>& r, const Changeset& c) { deliver(r, c); });
  }

  void deliver(const FetchedResult<Monster>& result, const Changeset& changes) {
    std::vector<Row> next = rowsOf(result);
    absl::MutexLock lock(&mu_);
    deliveries_ += 1;
    std::string problem = check(last_, next, changes);
    if (!problem.empty()) {
      problems_.push_back(absl::StrCat(problem, "\n  old: ", show(last_), "\n  new: ", show(next),
                                       "\n  deleted ", absl::StrJoin(changes.deleted, ","),
                                       " inserted ", absl::StrJoin(changes.inserted, ","),
                                       " updated ", absl::StrJoin(changes.updated, ",")));
    }
    last_ = std::move(next);
  }

  // Waits until the latest delivered result is `expected`; false after `timeout`.
  bool awaitResult(const std::vector<Row>& expected, absl::Duration timeout = kBoundedWait) {
    absl::MutexLock lock(&mu_);
    auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return last_ == expected; };
    return mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout);
  }

  std::vector<Row> last() const {
    absl::MutexLock lock(&mu_);
    return last_;
  }
  int deliveries() const {
    absl::MutexLock lock(&mu_);
    return deliveries_;
  }
  std::vector<std::string> problems() const {
    absl::MutexLock lock(&mu_);
    return problems_;
  }

 private:
  static std::string check(const std::vector<Row>& old, const std::vector<Row>& next,
                           const Changeset& c) {
    std::vector<Row> applied = old;
    std::vector<size_t> deleted = c.deleted;
    std::sort(deleted.rbegin(), deleted.rend());
    for (size_t i : deleted) {
      if (i >= applied.size()) return absl::StrCat("deleted index ", i, " out of range");
      applied.erase(applied.begin() + static_cast<ptrdiff_t>(i));
    }
    std::vector<bool> fresh(next.size(), false);
    for (size_t i : c.inserted) {
      if (i >= next.size() || i > applied.size()) {
        return absl::StrCat("inserted index ", i, " out of range");
      }
      applied.insert(applied.begin() + static_cast<ptrdiff_t>(i), next[i]);
      fresh[i] = true;
    }
    if (applied.size() != next.size()) return "the changeset does not give the new size";
    std::vector<bool> updated(next.size(), false);
    for (size_t i : c.updated) {
      if (i >= next.size()) return absl::StrCat("updated index ", i, " out of range");
      updated[i] = true;
    }
    for (size_t i = 0; i < next.size(); ++i) {
      if (applied[i].key != next[i].key) return absl::StrCat("object ", i, " is misplaced");
      if (fresh[i]) continue;
      if (updated[i] && applied[i].vs == next[i].vs) {
        return absl::StrCat("object ", i, " is listed as updated but did not change");
      }
      if (!updated[i] && applied[i] != next[i]) {
        return absl::StrCat("object ", i, " changed but is not listed as updated");
      }
    }
    return "";
  }

  mutable absl::Mutex mu_;
  std::vector<Row> last_ ABSL_GUARDED_BY(mu_);
  int deliveries_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> problems_ ABSL_GUARDED_BY(mu_);
};

TEST_P(SameCodeTest, AQuerySubscriptionSeesInsertsUpdatesAndDeletes) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>(
      submitAll({monster("orc", 1, 30), monster("imp", 1, 5), monster("troll", 1, 120)})));
  Deliveries seen;
  auto token = seen.follow(*ws_);
  ASSERT_OK(token);

  // Each step a commit; after each, the subscription's result is what a fetch returns.
  const std::vector<std::function<absl::Status(TransactionContext&)>> steps = {
      submitAll({monster("elf", 1, 60), monster("rat", 1, 2)}),  // one in, one not
      [](TransactionContext& txn) {                              // moves within the result
        auto u = MonsterChangeRequest::upsert();
        u.setName("orc").setRealm(1).setHp(200);
        return txn.submit(u).status();
      },
      [](TransactionContext& txn) {  // changes a member in place
        auto u = MonsterChangeRequest::upsert();
        u.setName("elf").setRealm(1).setMana(3);
        return txn.submit(u).status();
      },
      [](TransactionContext& txn) -> absl::Status {  // one leaves by filter, one joins
        auto out = MonsterChangeRequest::upsert();
        out.setName("troll").setRealm(1).setHp(4);
        FLATSTORE_RETURN_IF_ERROR(txn.submit(out).status());
        auto in = MonsterChangeRequest::upsert();
        in.setName("imp").setRealm(1).setHp(70);
        return txn.submit(in).status();
      },
      [](TransactionContext& txn) {  // a member is deleted
        return txn.submit(MonsterChangeRequest::deletion("elf", 1)).status();
      },
      [](TransactionContext& txn) {  // an outsider is deleted: no delivery needed
        return txn.submit(MonsterChangeRequest::deletion("rat", 1)).status();
      },
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("step ", i));
    ASSERT_OK(ws_->performChangesAndWait<Monster>(steps[i]));
    ws_->awaitObservers();
    std::vector<Row> expected = fresh(*ws_);
    ASSERT_TRUE(seen.awaitResult(expected))
        << "delivered " << show(seen.last()) << "\nfetched " << show(expected);
  }
  EXPECT_THAT(seen.problems(), IsEmpty());
  EXPECT_GE(seen.deliveries(), 5);
  std::vector<Key> keys;
  for (const Row& r : seen.last()) keys.push_back(r.key);
  EXPECT_THAT(keys, ElementsAre(Key{"orc", 1}, Key{"imp", 1}));
  EXPECT_TRUE(token->active());
  EXPECT_OK(token->status());
}

// Each step waits for its delivery before the next commit: a subscriber that lags
// gets only the newest version.
TEST_P(SameCodeTest, AnObjectSubscriptionFollowsItUntilDeleted) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>(submitAll({monster("orc", 1, 30)})));
  auto orc = ws_->get<Monster>("orc", 1);
  ASSERT_OK(orc);
  absl::Mutex mu;
  std::vector<int> versions;  // hp of each delivered version, -1 for deletion
  auto token = ws_->subscribe(*orc, [&](std::shared_ptr<const MonsterEntity> now) {
    absl::MutexLock lock(&mu);
    versions.push_back(now == nullptr ? -1 : now->hp());
  });
  ASSERT_OK(token);
  auto delivered = [&](int hp) {
    absl::MutexLock lock(&mu);
    auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return !versions.empty() && versions.back() == hp;
    };
    return mu.AwaitWithTimeout(absl::Condition(&arrived), kBoundedWait);
  };
  ASSERT_OK(ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    auto u = MonsterChangeRequest::upsert();
    u.setName("orc").setRealm(1).setHp(31);
    return txn.submit(u).status();
  }));
  ASSERT_TRUE(delivered(31));
  ASSERT_OK(ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    return txn.submit(MonsterChangeRequest::deletion("orc", 1)).status();
  }));
  ASSERT_TRUE(delivered(-1));
  absl::MutexLock lock(&mu);
  EXPECT_THAT(versions, ElementsAre(31, -1));
  EXPECT_FALSE(token->active());
}

// ---------------------------------------------------------------------------------------
// Another client on the same database

// A second workspace stands for another application server: its commits reach this
// one's subscriptions (with correct changesets), changesSince, latestVersionstamp and
// reads.
TEST_P(SameCodeTest, AnotherClientsCommitsReachSubscriptionsAndChangesSince) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>(submitAll({monster("orc", 1, 30)})));
  std::unique_ptr<Workspace> other = open();
  ASSERT_NE(other, nullptr);
  Deliveries seen;
  auto token = seen.follow(*ws_);
  ASSERT_OK(token);
  auto since = ws_->latestVersionstamp();
  ASSERT_OK(since);

  std::vector<Versionstamp> theirs;
  const std::vector<std::function<absl::Status(TransactionContext&)>> steps = {
      submitAll({monster("elf", 1, 60), monster("rat", 1, 2)}),
      [](TransactionContext& txn) {
        auto u = MonsterChangeRequest::upsert();
        u.setName("orc").setRealm(1).setHp(5);
        return txn.submit(u).status();
      },
      [](TransactionContext& txn) {
        auto u = MonsterChangeRequest::upsert();
        u.setName("elf").setRealm(1).setHp(61);
        return txn.submit(u).status();
      },
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("step ", i));
    auto r = other->performChangesAndWait<Monster>(steps[i]);
    ASSERT_OK(r);
    theirs.push_back(r->versionstamp);
    std::vector<Row> expected = fresh(*other);
    ASSERT_TRUE(seen.awaitResult(expected))
        << "delivered " << show(seen.last()) << "\nfetched by the other client " << show(expected);
  }
  EXPECT_THAT(seen.problems(), IsEmpty());
  for (size_t i = 1; i < theirs.size(); ++i) EXPECT_GT(theirs[i], theirs[i - 1]);

  auto latest = ws_->latestVersionstamp();
  ASSERT_OK(latest);
  EXPECT_GE(*latest, theirs.back());
  auto changes = ws_->changesSince<Monster>(*since);
  ASSERT_OK(changes);
  std::map<Key, std::pair<int16_t, Versionstamp>> changed;
  for (const auto& m : changes->changed) changed[keyOf(*m)] = {m->hp(), m->versionstamp()};
  EXPECT_EQ(changed,
            (std::map<Key, std::pair<int16_t, Versionstamp>>{{{"elf", 1}, {61, theirs[2]}},
                                                             {{"orc", 1}, {5, theirs[1]}},
                                                             {{"rat", 1}, {2, theirs[0]}}}));
  EXPECT_GE(changes->through, theirs.back());
  EXPECT_EQ((*ws_->get<Monster>("elf", 1))->hp(), 61);

  // And the other way round: this client's commit reaches the other's reads.
  auto ours = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    return txn.submit(MonsterChangeRequest::deletion("rat", 1)).status();
  });
  ASSERT_OK(ours);
  EXPECT_GT(ours->versionstamp, changes->through) << "a later commit is after through";
  EXPECT_EQ(*other->get<Monster>("rat", 1), nullptr);
  // On PostgreSQL changesSince reads only below the oldest flatstore transaction still
  // running on the server (through says how far), so the deletion may be reported by a
  // later call; it must be within the bounded wait, and exactly once.
  absl::StatusOr<Changes<Monster>> back = other->changesSince<Monster>(theirs.back());
  const absl::Time deadline = absl::Now() + kBoundedWait;
  while (back.ok() && back->deleted.empty() && back->through < ours->versionstamp &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
    back = other->changesSince<Monster>(theirs.back());
  }
  ASSERT_OK(back);
  ASSERT_EQ(back->deleted.size(), 1u) << "through " << back->through.toString() << ", the deletion "
                                      << ours->versionstamp.toString();
  EXPECT_THAT(back->deleted[0], ElementsAre(Value::text("rat"), Value::integer(1)));
}

// Read-increment-write from two clients at once, two threads each: the counter ends
// exact, and versionstamps of the committed increments follow the values they wrote.
TEST_P(SameCodeTest, TwoClientsIncrementOneCounterExactly) {
  constexpr int kPerThread = 25;
  // The default options: after two conflicts a closure runs under its tables' locks
  // (SQLite's write lock; the PostgreSQL session's table locks), where it cannot
  // conflict, so no increment may fail however hot the counter.
  ASSERT_OK(ws_->performChangesAndWait<Doc>([](TransactionContext& txn) {
    auto c = DocChangeRequest::creation();
    c.setId("counter").setRank(0);
    return txn.submit(c).status();
  }));
  std::unique_ptr<Workspace> other = open();
  ASSERT_NE(other, nullptr);
  absl::Mutex mu;
  std::map<Versionstamp, int32_t> history;  // versionstamp -> value written
  std::vector<std::string> failures;
  auto increment = [&](Workspace* ws) {
    for (int i = 0; i < kPerThread; ++i) {
      int32_t wrote = -1;
      auto r = ws->performChangesAndWait<Doc>([&wrote](TransactionContext& txn) -> absl::Status {
        auto c = txn.get<Doc>("counter");
        FLATSTORE_RETURN_IF_ERROR(c.status());
        auto change = DocChangeRequest::changeOf(**c);
        wrote = (*c)->rank() + 1;
        change.setRank(wrote);
        return txn.submit(change).status();
      });
      absl::MutexLock lock(&mu);
      if (!r.ok()) {
        failures.push_back(r.status().ToString());
      } else if (!history.emplace(r->versionstamp, wrote).second) {
        failures.push_back(absl::StrCat("versionstamp ", r->versionstamp.toString(), " twice"));
      }
    }
  };
  {
    std::vector<std::thread> threads;
    for (Workspace* ws : {ws_.get(), ws_.get(), other.get(), other.get()}) {
      threads.emplace_back(increment, ws);
    }
    for (auto& t : threads) t.join();
  }
  EXPECT_THAT(failures, IsEmpty());
  auto counter = ws_->get<Doc>("counter");
  ASSERT_OK(counter);
  EXPECT_EQ((*counter)->rank(), 4 * kPerThread);
  int32_t expected = 1;
  for (const auto& [vs, value] : history) {
    EXPECT_EQ(value, expected) << "commit " << vs.toString();
    expected += 1;
  }
  EXPECT_EQ(history.rbegin()->first, (*counter)->versionstamp());
}

// ---------------------------------------------------------------------------------------
// Closures that hand their tables on while earlier ones commit

// A workspace on a schema of its own, and the admin connection of the schema, which can
// hold a table's lock (as another client's session would) to keep this client's
// sessions on that table waiting.
class PostgresHandOnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (PgTestSchema::serverUri() == nullptr) GTEST_SKIP() << PgTestSchema::kSkipReason;
    schema_ = std::make_unique<PgTestSchema>("hand_on");
    ASSERT_TRUE(schema_->ok());
    ws_ = open();
    ASSERT_NE(ws_, nullptr);
    // Both tables registered before any lock is held.
    auto seeded = ws_->performChangesAndWait<Doc, Monster>([](TransactionContext& txn) {
      FLATSTORE_RETURN_IF_ERROR(txn.submit(doc("seed", 0)).status());
      return txn.submit(monster("seed", 0, 1)).status();
    });
    ASSERT_OK(seeded);
  }
  void TearDown() override {
    ws_.reset();
    schema_.reset();
  }

  std::unique_ptr<Workspace> open() {
    WorkspaceOptions options;
    options.worker_threads = 4;
    auto ws = Workspace::open(schema_->uri(), options);
    EXPECT_OK(ws);
    return ws.ok() ? std::move(*ws) : nullptr;
  }

  static DocChangeRequest doc(std::string_view id, int32_t rank) {
    auto r = DocChangeRequest::creation();
    r.setId(id).setRank(rank);
    return r;
  }

  // The lock key of the table described by `d` (pg_engine.h, Locks).
  int32_t keyOf(const TableDescription& d) {
    return internal::pgLockKey(schema_->name(), absl::StrCat("table ", std::string(d.table_name)));
  }
  // Takes or gives up the lock of key `key` on the admin connection.
  absl::Status lock(int32_t key, bool take) {
    return schema_->execute(absl::StrCat("SELECT ",
                                         take ? "pg_advisory_lock(" : "pg_advisory_unlock(",
                                         internal::pgLockSpace(schema_->name()), ", ", key, ")"));
  }

  // A closure on Doc that lasts until `submitted` is notified. The closures submitted
  // meanwhile queue behind it, so that each finds the next one waiting when it is done
  // (a closure that reads nothing is done at once) and hands the table on.
  TransactionHandle gateUntil(absl::Notification* submitted) {
    return ws_->performChanges<Doc>([submitted](TransactionContext&) -> absl::Status {
      if (submitted->WaitForNotificationWithTimeout(kBoundedWait)) return absl::OkStatus();
      return absl::DeadlineExceededError("the closures were never submitted");
    });
  }

  // Waits (bounded) until `count` reaches `n`.
  static bool reaches(const std::atomic<int>& count, int n) {
    const absl::Time deadline = absl::Now() + kBoundedWait;
    while (count.load() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
    return count.load() >= n;
  }

  std::unique_ptr<PgTestSchema> schema_;
  std::unique_ptr<Workspace> ws_;
};

// Closures on one table queued behind each other: the first hands the table on when its
// request is queued, so the next ones run while its session waits for the table's lock
// (held here, as by another client). The first session took what was queued when it
// began (the first request, and any that came before it was taken); the rest, which
// ran meanwhile, commit together in the next session. So six requests commit in at
// most two sessions, in the order they ran: within a session at positions 0, 1, ...
TEST_F(PostgresHandOnTest, ClosuresRunWhileAnEarlierOneWaitsAndCommitTogether) {
  ASSERT_OK(lock(keyOf(::flatstore::bench::DocEntity::description()), true));
  std::atomic<int> runs{0};
  absl::Notification submitted;
  TransactionHandle gate = gateUntil(&submitted);
  std::vector<TransactionHandle> handles;
  for (int i = 0; i < 6; ++i) {
    handles.push_back(ws_->performChanges<Doc>([i, &runs](TransactionContext& txn) {
      runs.fetch_add(1);
      return txn.submit(doc(absl::StrCat("d", i), i)).status();
    }));
  }
  submitted.Notify();
  ASSERT_OK(gate.wait());
  EXPECT_TRUE(reaches(runs, 6)) << runs.load() << " closures ran while the first one waited";
  ASSERT_OK(lock(keyOf(::flatstore::bench::DocEntity::description()), false));
  std::vector<Versionstamp> stamps;
  for (const TransactionHandle& h : handles) {
    auto r = h.wait();
    ASSERT_OK(r);
    stamps.push_back(r->versionstamp);
  }
  EXPECT_EQ(runs.load(), 6);
  std::set<uint64_t> sessions;
  for (int i = 0; i < 6; ++i) {
    sessions.insert(stamps[i].commitSequence());
    if (i == 0 || stamps[i].commitSequence() != stamps[i - 1].commitSequence()) {
      EXPECT_EQ(stamps[i].position(), 0) << i;
      if (i > 0) EXPECT_GT(stamps[i].commitSequence(), stamps[i - 1].commitSequence()) << i;
    } else {
      EXPECT_EQ(stamps[i].position(), stamps[i - 1].position() + 1) << i;
    }
  }
  EXPECT_LE(sessions.size(), 2u);
  EXPECT_GE(ws_->metrics().writer.group_size.max, 3);
  auto all = ws_->fetch<Doc>().all();
  ASSERT_OK(all);
  EXPECT_EQ(all->size(), 7u);
}

// A thread commits at most four groups per call: when more are queued and no closure
// comes to commit them, the writer's relief thread commits the rest. Here 200 requests
// queue on one table while its lock is held, and form more groups (at most 32 requests
// each) than the thread that commits the first may take; all of them commit, in order.
TEST_F(PostgresHandOnTest, GroupsLeftByTheCommittingThreadAreCommittedByTheReliefThread) {
  constexpr int kClosures = 200;
  ASSERT_OK(lock(keyOf(::flatstore::bench::DocEntity::description()), true));
  std::atomic<int> runs{0};
  absl::Notification submitted;
  TransactionHandle gate = gateUntil(&submitted);
  std::vector<TransactionHandle> handles;
  for (int i = 0; i < kClosures; ++i) {
    handles.push_back(ws_->performChanges<Doc>([i, &runs](TransactionContext& txn) {
      runs.fetch_add(1);
      return txn.submit(doc(absl::StrCat("r", i), i)).status();
    }));
  }
  submitted.Notify();
  ASSERT_OK(gate.wait());
  // Every closure has run, so none comes later to commit what is queued.
  EXPECT_TRUE(reaches(runs, kClosures)) << runs.load() << " closures ran while the first waited";
  ASSERT_OK(lock(keyOf(::flatstore::bench::DocEntity::description()), false));
  ASSERT_TRUE(::flatstore::testing::waitAll(handles)) << "queued groups were left uncommitted";
  std::set<uint64_t> sessions;
  Versionstamp last;
  for (const TransactionHandle& h : handles) {
    auto r = h.wait();
    ASSERT_OK(r);
    EXPECT_LT(last, r->versionstamp);
    last = r->versionstamp;
    sessions.insert(r->versionstamp.commitSequence());
  }
  EXPECT_GT(sessions.size(), 4u) << "too few groups to leave any to the relief thread";
  EXPECT_EQ(ws_->fetch<Doc>().count().value_or(-1), kClosures + 1);
}

// A closure that read what the closure before it writes, while that one still waits to
// commit, runs again once it committed, and sees its write: increments of one counter,
// queued behind each other, all count.
TEST_F(PostgresHandOnTest, AClosureThatReadWhatAnEarlierOneWritesRunsAgain) {
  ASSERT_OK(lock(keyOf(::flatstore::bench::DocEntity::description()), true));
  std::vector<TransactionHandle> handles;
  for (int i = 0; i < 5; ++i) {
    handles.push_back(ws_->performChanges<Doc>([](TransactionContext& txn) -> absl::Status {
      auto c = txn.get<Doc>("seed");
      FLATSTORE_RETURN_IF_ERROR(c.status());
      auto change = DocChangeRequest::changeOf(**c);
      change.setRank((*c)->rank() + 1);
      return txn.submit(change).status();
    }));
  }
  ASSERT_OK(lock(keyOf(::flatstore::bench::DocEntity::description()), false));
  for (const TransactionHandle& h : handles) ASSERT_OK(h.wait());
  auto seed = ws_->get<Doc>("seed");
  ASSERT_OK(seed);
  EXPECT_EQ((*seed)->rank(), 5);
}

// A closure that handed its tables on and then meets another client's commit to a table
// it read runs again inside its session at once, keeping its place: it commits what it
// computed from the other client's value. Its tables are Doc and Monster; the one whose
// lock sessions take first is held here, so that its session waits holding no lock, and
// the other client commits to the other table meanwhile.
TEST_F(PostgresHandOnTest, AHandedOnClosureThatConflictsRunsAgainInItsSession) {
  const int32_t doc_key = keyOf(::flatstore::bench::DocEntity::description());
  const int32_t monster_key = keyOf(MonsterEntity::description());
  ASSERT_NE(doc_key, monster_key);
  // The counter lives in the table whose lock comes second.
  const bool counter_is_monster = doc_key < monster_key;
  auto read = [counter_is_monster](TransactionContext& txn) -> absl::StatusOr<int> {
    if (counter_is_monster) {
      auto m = txn.get<Monster>("seed", 0);
      FLATSTORE_RETURN_IF_ERROR(m.status());
      return (*m)->hp();
    }
    auto d = txn.get<Doc>("seed");
    FLATSTORE_RETURN_IF_ERROR(d.status());
    return (*d)->rank();
  };
  auto write = [counter_is_monster](TransactionContext& txn, int value) -> absl::Status {
    if (counter_is_monster) {
      auto m = txn.get<Monster>("seed", 0);
      FLATSTORE_RETURN_IF_ERROR(m.status());
      auto change = MonsterChangeRequest::changeOf(**m);
      change.setHp(static_cast<int16_t>(value));
      return txn.submit(change).status();
    }
    auto d = txn.get<Doc>("seed");
    FLATSTORE_RETURN_IF_ERROR(d.status());
    auto change = DocChangeRequest::changeOf(**d);
    change.setRank(value);
    return txn.submit(change).status();
  };
  ASSERT_OK(lock(counter_is_monster ? doc_key : monster_key, true));
  std::atomic<int> second_runs{0};
  // The first closure writes elsewhere; the second hands on behind it (the third waits
  // behind the second) and reads the counter.
  absl::Notification submitted;
  TransactionHandle gate = gateUntil(&submitted);
  auto first = ws_->performChanges<Doc, Monster>(
      [](TransactionContext& txn) { return txn.submit(doc("first", 1)).status(); });
  auto second =
      ws_->performChanges<Doc, Monster>([&, read, write](TransactionContext& txn) -> absl::Status {
        second_runs.fetch_add(1);
        FLATSTORE_ASSIGN_OR_RETURN(int value, read(txn));
        return write(txn, value + 1);
      });
  auto third = ws_->performChanges<Doc, Monster>(
      [](TransactionContext& txn) { return txn.submit(doc("third", 3)).status(); });
  submitted.Notify();
  ASSERT_OK(gate.wait());
  ASSERT_TRUE(reaches(second_runs, 1));
  // Another client changes the counter after the second closure's snapshot.
  std::unique_ptr<Workspace> other = open();
  ASSERT_NE(other, nullptr);
  if (counter_is_monster) {
    ASSERT_OK(other->performChangesAndWait<Monster>(
        [&](TransactionContext& txn) { return write(txn, 40); }));
  } else {
    ASSERT_OK(
        other->performChangesAndWait<Doc>([&](TransactionContext& txn) { return write(txn, 40); }));
  }
  ASSERT_OK(lock(counter_is_monster ? doc_key : monster_key, false));
  ASSERT_OK(first.wait());
  auto r = second.wait();
  ASSERT_OK(r);
  ASSERT_OK(third.wait());
  EXPECT_EQ(second_runs.load(), 2);
  int counter =
      counter_is_monster ? (*ws_->get<Monster>("seed", 0))->hp() : (*ws_->get<Doc>("seed"))->rank();
  EXPECT_EQ(counter, 41);
}

// ---------------------------------------------------------------------------------------
// Opening a PostgreSQL URI

class PostgresOpenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (PgTestSchema::serverUri() == nullptr) GTEST_SKIP() << PgTestSchema::kSkipReason;
    schema_ = std::make_unique<PgTestSchema>("open");
    ASSERT_TRUE(schema_->ok());
  }

  std::unique_ptr<PgTestSchema> schema_;
};

// A schema holding tables flatstore did not create is not a flatstore database: refused,
// as a SQLite file of another program is, and left as it was.
TEST_F(PostgresOpenTest, ASchemaWithForeignTablesIsRefused) {
  ASSERT_OK(schema_->execute(absl::StrCat("CREATE TABLE ", schema_->name(),
                                          ".orders(id int PRIMARY KEY); INSERT INTO ",
                                          schema_->name(), ".orders VALUES (1)")));
  auto ws = Workspace::open(schema_->uri());
  ASSERT_FALSE(ws.ok());
  EXPECT_EQ(ws.status().code(), absl::StatusCode::kFailedPrecondition) << ws.status();
  EXPECT_THAT(std::string(ws.status().message()), HasSubstr(schema_->name()));
  // Open added nothing: without the orders table, the schema is empty.
  ASSERT_OK(schema_->execute(absl::StrCat("DROP TABLE ", schema_->name(), ".orders")));
  ASSERT_OK(schema_->execute(absl::StrCat(
      "DO $$ BEGIN IF (SELECT count(*) FROM pg_tables WHERE schemaname = '", schema_->name(),
      "') <> 0 THEN RAISE EXCEPTION 'open left tables behind'; END IF; END $$")));
}

// A database written by a newer flatstore format is refused, as a file of one is.
TEST_F(PostgresOpenTest, ANewerFormatIsRefused) {
  {
    auto ws = Workspace::open(schema_->uri());
    ASSERT_OK(ws);
    ASSERT_OK((*ws)->performChangesAndWait<Monster>(submitAll({monster("orc", 1, 30)})));
  }
  ASSERT_OK(schema_->execute(absl::StrCat("UPDATE ", schema_->name(),
                                          ".flatstore_meta SET value = 99 WHERE key = 'format'")));
  auto ws = Workspace::open(schema_->uri());
  ASSERT_FALSE(ws.ok());
  EXPECT_EQ(ws.status().code(), absl::StatusCode::kFailedPrecondition) << ws.status();
  EXPECT_THAT(std::string(ws.status().message()), HasSubstr("newer flatstore (format 99)"));
}

// The same database opens again with what was committed, and path() is what it was
// opened with.
TEST_F(PostgresOpenTest, ReopensWithItsObjects) {
  {
    auto ws = Workspace::open(schema_->uri());
    ASSERT_OK(ws);
    EXPECT_EQ((*ws)->path(), schema_->uri());
    ASSERT_OK((*ws)->performChangesAndWait<Monster>(submitAll({monster("orc", 1, 30)})));
    ASSERT_OK((*ws)->shutdown());
  }
  auto ws = Workspace::open(schema_->uri());
  ASSERT_OK(ws);
  auto orc = (*ws)->get<Monster>("orc", 1);
  ASSERT_OK(orc);
  ASSERT_NE(*orc, nullptr);
  EXPECT_EQ((*orc)->hp(), 30);
}

}  // namespace
}  // namespace flatstore::test::game
