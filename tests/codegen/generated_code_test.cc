// Compile-and-run tests of the code flatstore-codegen generates for schemas/game.fbs:
// change requests build and encode objects, entities decode them and read every field
// back, keys and index values come out of key paths, and field descriptors evaluate
// predicates in memory with three-valued logic.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flatstore::test::game {
namespace {

using ::flatstore::test::common::TagT;
using ::flatstore::test::common::Vec3;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using F = MonsterFields;

std::shared_ptr<const MonsterEntity> build(const MonsterChangeRequest& request,
                                           const MonsterEntity* base = nullptr) {
  auto encoded = request.encodeOver(base == nullptr ? nullptr : base->data());
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_TRUE(encoded->changed);
  auto entity = MonsterEntity::fromBytes(encoded->bytes.span(), 7, Versionstamp(3, 1));
  EXPECT_TRUE(entity.ok()) << entity.status();
  return *entity;
}

MonsterChangeRequest orc() {
  auto r = MonsterChangeRequest::creation();
  r.setName("orc").setRealm(3).setHp(30).setColor(Color::Red);
  return r;
}

TEST(GeneratedEntity, DefaultsAndAbsentFields) {
  auto m = build(MonsterChangeRequest::creation().setName("blank"));
  EXPECT_EQ(m->name(), "blank");
  EXPECT_EQ(m->realm(), 0);
  EXPECT_EQ(m->hp(), 100);
  EXPECT_EQ(m->mana(), 150);
  EXPECT_EQ(m->color(), Color::Blue);
  EXPECT_TRUE(m->alive());
  EXPECT_DOUBLE_EQ(m->speed(), 1.5);
  EXPECT_EQ(m->score(), std::nullopt);
  EXPECT_FALSE(m->hasEmail());
  EXPECT_EQ(m->email(), "");
  EXPECT_EQ(m->pos(), nullptr);
  EXPECT_EQ(m->stats(), nullptr);
  EXPECT_EQ(m->inventory(), nullptr);
  EXPECT_EQ(m->equippedType(), Equipment::NONE);
  EXPECT_EQ(m->equippedAsWeapon(), nullptr);
  EXPECT_EQ(m->rowid(), 7);
  EXPECT_EQ(m->versionstamp(), Versionstamp(3, 1));
}

TEST(GeneratedEntity, EveryFieldRoundTrips) {
  auto r = orc();
  WeaponT axe;
  axe.name = "axe";
  axe.damage = 12;
  StatsT stats;
  stats.level = 4;
  stats.xp = 1234567890123;
  stats.mentor = std::make_unique<StatsT>();
  stats.mentor->level = 9;
  TagT badge;
  badge.label = "gold";
  badge.weight = 3;
  std::vector<std::unique_ptr<WeaponT>> weapons;
  weapons.push_back(std::make_unique<WeaponT>(axe));
  std::vector<EquipmentUnion> kit(2);
  kit[0].Set(axe);
  ShieldT shield;
  shield.armor = 5;
  kit[1].Set(shield);
  r.setMana(7)
      .setPos(Vec3(1.5f, -2.0f, 3.25f))
      .setInventory({1, 2, 3})
      .setWeapons(std::move(weapons))
      .setEquipped(axe)
      .setStats(std::move(stats))
      .setPath({Vec3(0, 0, 0), Vec3(1, 1, 1)})
      .setTags({"big", "green"})
      .setEmail("orc@example.org")
      .setScore(-5)
      .setKit(std::move(kit))
      .setAlive(false)
      .setSpeed(2.75)
      .setBig(18446744073709551615ull)
      .setBadge(badge);
  auto m = build(r);
  EXPECT_EQ(m->name(), "orc");
  EXPECT_EQ(m->realm(), 3);
  EXPECT_EQ(m->hp(), 30);
  EXPECT_EQ(m->mana(), 7);
  EXPECT_EQ(m->color(), Color::Red);
  ASSERT_NE(m->pos(), nullptr);
  EXPECT_FLOAT_EQ(m->pos()->x(), 1.5f);
  EXPECT_FLOAT_EQ(m->pos()->z(), 3.25f);
  ASSERT_NE(m->inventory(), nullptr);
  EXPECT_THAT(std::vector<uint8_t>(m->inventory()->begin(), m->inventory()->end()),
              ElementsAre(1, 2, 3));
  ASSERT_EQ(m->weapons()->size(), 1u);
  EXPECT_EQ(m->weapons()->Get(0)->damage(), 12);
  EXPECT_EQ(m->equippedType(), Equipment::Weapon);
  ASSERT_NE(m->equippedAsWeapon(), nullptr);
  EXPECT_EQ(m->equippedAsWeapon()->name()->str(), "axe");
  EXPECT_EQ(m->equippedAsShield(), nullptr);
  ASSERT_NE(m->stats(), nullptr);
  EXPECT_EQ(m->stats()->level(), 4);
  EXPECT_EQ(m->stats()->xp(), 1234567890123);
  EXPECT_EQ(m->stats()->mentor()->level(), 9);
  EXPECT_EQ(m->path()->size(), 2u);
  EXPECT_EQ(m->tags()->Get(1)->str(), "green");
  EXPECT_EQ(m->email(), "orc@example.org");
  EXPECT_EQ(m->score(), -5);
  ASSERT_EQ(m->kit()->size(), 2u);
  EXPECT_EQ(m->kitType()->Get(0), Equipment::Weapon);
  EXPECT_EQ(m->kitType()->Get(1), Equipment::Shield);
  EXPECT_EQ(static_cast<const Shield*>(m->kit()->Get(1))->armor(), 5);
  EXPECT_FALSE(m->alive());
  EXPECT_DOUBLE_EQ(m->speed(), 2.75);
  EXPECT_EQ(m->big(), 18446744073709551615ull);
  EXPECT_EQ(m->badge()->label()->str(), "gold");

  // The object API copy carries the same values.
  MonsterT copy = m->unpack();
  EXPECT_EQ(copy.name, "orc");
  EXPECT_EQ(copy.equipped.AsWeapon()->damage, 12);
}

TEST(GeneratedChangeRequest, ChangeAppliesOnlyTouchedFields) {
  auto base = build(orc().setMana(11).setEmail("a@b"));
  auto change = MonsterChangeRequest::changeOf(*base);
  change.setHp(99);
  EXPECT_EQ(change.kind(), ChangeKind::kChange);
  EXPECT_EQ(change.targetRowid(), 7);
  EXPECT_THAT(change.targetKey(), ElementsAre(Value::text("orc"), Value::integer(3)));

  // Someone else changed mana meanwhile: the change must not undo it.
  auto newer = build(MonsterChangeRequest::changeOf(*base).setMana(12), base.get());
  auto changed = build(change, newer.get());
  EXPECT_EQ(changed->hp(), 99);
  EXPECT_EQ(changed->mana(), 12);
  EXPECT_EQ(changed->email(), "a@b");
  EXPECT_EQ(changed->name(), "orc");
}

TEST(GeneratedChangeRequest, UnchangedObjectIsDetected) {
  auto base = build(orc().setStats(StatsT()));
  auto same = MonsterChangeRequest::changeOf(*base);
  same.setHp(30).setColor(Color::Red).setStats(StatsT());
  auto encoded = same.encodeOver(base->data());
  ASSERT_TRUE(encoded.ok());
  EXPECT_FALSE(encoded->changed);

  auto nothing = MonsterChangeRequest::changeOf(*base);
  EXPECT_FALSE(nothing.touchesAnything());
  EXPECT_FALSE(nothing.encodeOver(base->data())->changed);

  auto different = MonsterChangeRequest::changeOf(*base);
  StatsT s;
  s.level = 2;
  different.setStats(s);
  EXPECT_TRUE(different.encodeOver(base->data())->changed);
}

TEST(GeneratedChangeRequest, ChangedFieldsAreTheTopLevelFieldsThatDiffer) {
  auto base = build(orc().setStats(StatsT()));
  // Field ids in game.fbs: hp 2, color 4, stats 11 (queries name them by id path).
  ASSERT_EQ(F::color.info().id_path, "4");
  auto change = MonsterChangeRequest::changeOf(*base);
  StatsT s;
  s.level = 2;
  change.setHp(30).setColor(Color::Green).setStats(s);  // hp as it was
  auto encoded = change.encodeOver(base->data());
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(encoded->changed_fields, (uint64_t{1} << 4) | (uint64_t{1} << 11));
  // A new object: every field counts as changed.
  EXPECT_EQ(orc().encodeOver(nullptr)->changed_fields, ~uint64_t{0});
}

TEST(GeneratedChangeRequest, StoredScalarsAreWrittenIntoACopyOfTheObject) {
  auto base = build(orc().setMana(12).setSpeed(2.5));
  auto decode = [](const EncodedObject& e) {
    auto entity = MonsterEntity::fromBytes(e.bytes.span(), 7, Versionstamp(3, 1));
    EXPECT_TRUE(entity.ok()) << entity.status();
    return *entity;
  };

  auto change = MonsterChangeRequest::changeOf(*base);
  change.setHp(31).setColor(Color::Green).setSpeed(0.5).setMana(12);  // mana as it was
  auto encoded = change.encodeOver(base->bytes());
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_TRUE(encoded->changed);
  EXPECT_TRUE(encoded->in_place);
  EXPECT_EQ(encoded->bytes.size(), base->bytes().size());
  EXPECT_EQ(
      encoded->changed_fields & ((uint64_t{1} << 2) | (uint64_t{1} << 3) | (uint64_t{1} << 4)),
      (uint64_t{1} << 2) | (uint64_t{1} << 4));
  // The same object as the full encoding makes, and as verified.
  auto full = change.encodeOver(base->data());
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE(full->in_place);
  EXPECT_EQ(encoded->changed_fields, full->changed_fields);
  auto m = decode(*encoded);
  EXPECT_EQ(m->hp(), 31);
  EXPECT_EQ(m->color(), Color::Green);
  EXPECT_DOUBLE_EQ(m->speed(), 0.5);
  EXPECT_EQ(m->mana(), 12);
  EXPECT_EQ(m->name(), "orc");
  EXPECT_EQ(m->realm(), 3);
  EXPECT_TRUE(m->unpack() == decode(*full)->unpack());
  // The base object is left as it was.
  EXPECT_EQ(base->hp(), 30);

  // A scalar the object does not store (it has its default) has no slot: encoded again.
  auto revive = MonsterChangeRequest::changeOf(*base);
  revive.setAlive(false);
  auto revived = revive.encodeOver(base->bytes());
  ASSERT_TRUE(revived.ok());
  EXPECT_FALSE(revived->in_place);
  EXPECT_FALSE(decode(*revived)->alive());

  // A field other than a scalar: encoded again.
  auto renamed = MonsterChangeRequest::changeOf(*base);
  renamed.setHp(5).setEmail("a@b");
  auto with_email = renamed.encodeOver(base->bytes());
  ASSERT_TRUE(with_email.ok());
  EXPECT_FALSE(with_email->in_place);
  EXPECT_EQ(decode(*with_email)->hp(), 5);
  EXPECT_EQ(decode(*with_email)->email(), "a@b");

  // Nothing differs: nothing to write.
  auto same = MonsterChangeRequest::changeOf(*base);
  same.setHp(30).setSpeed(2.5);
  EXPECT_FALSE(same.encodeOver(base->bytes())->changed);
}

TEST(GeneratedChangeRequest, ClearersRemoveOptionalParts) {
  auto base = build(orc().setPos(Vec3(1, 2, 3)).setScore(4).setEquipped(ShieldT()));
  auto cleared = build(
      MonsterChangeRequest::changeOf(*base).clearPos().clearScore().clearEquipped(), base.get());
  EXPECT_EQ(cleared->pos(), nullptr);
  EXPECT_EQ(cleared->score(), std::nullopt);
  EXPECT_EQ(cleared->equippedType(), Equipment::NONE);
}

TEST(GeneratedChangeRequest, DeletionKinds) {
  auto base = build(orc());
  auto byObject = MonsterChangeRequest::deletionOf(*base);
  EXPECT_EQ(byObject.kind(), ChangeKind::kDeletion);
  EXPECT_EQ(byObject.targetRowid(), 7);
  auto byKey = MonsterChangeRequest::deletion("orc", 3);
  EXPECT_EQ(byKey.targetRowid(), 0);
  EXPECT_EQ(byKey.targetKey(), byObject.targetKey());
  auto byId = EventChangeRequest::deletion(42);
  EXPECT_EQ(byId.targetRowid(), 42);
  EXPECT_TRUE(byId.targetKey().empty());
  EXPECT_EQ(MonsterChangeRequest::upsert().kind(), ChangeKind::kUpsert);
}

TEST(GeneratedDescription, CompositeKeyAndIndexes) {
  const TableDescription& d = MonsterEntity::description();
  EXPECT_EQ(d.entity_name, "flatstore.test.game.Monster");
  ASSERT_EQ(d.key_columns.size(), 2u);
  EXPECT_EQ(d.key_columns[0].column, "k0");
  EXPECT_EQ(d.key_columns[0].field_path, "name");
  EXPECT_EQ(d.key_columns[0].type, ColumnType::kText);
  EXPECT_EQ(d.key_columns[1].column, "k1");
  EXPECT_EQ(d.key_columns[1].type, ColumnType::kInteger);
  EXPECT_FALSE(d.hasAutomaticId());
  EXPECT_THAT(std::string(d.create_table_sql), HasSubstr("UNIQUE(\"k0\", \"k1\")"));

  std::vector<std::string> paths;
  for (const IndexDescription& i : d.indexes) {
    paths.push_back(std::string(i.field_path) + "@" + std::string(i.id_path));
  }
  // Index tables are named by field id (a union takes two ids: type and value); key
  // paths reach into structs, union members
  // and nested tables; the recursive `stats.mentor` is followed once (a table appears
  // at most twice on a key path), so `stats.mentor.mentor` is not.
  EXPECT_THAT(paths, ElementsAre("hp@2", "color@4", "pos.x@5.0", "equipped.Weapon.damage@10u1.1",
                                 "stats.level@11.0", "stats.mentor.level@11.2.0", "email@14",
                                 "badge.label@21.0"));
  const IndexDescription& email = d.indexes[6];
  EXPECT_TRUE(email.unique);
  EXPECT_EQ(email.table, "flatstore.test.game.Monster$14");
  EXPECT_THAT(std::string(email.create_index_sql), HasSubstr("CREATE UNIQUE INDEX"));
  EXPECT_FALSE(d.indexes[0].unique);
  EXPECT_FALSE(d.binary_schema.empty());

  EXPECT_TRUE(EventEntity::description().hasAutomaticId());
  EXPECT_NE(EventEntity::description().schema_hash, d.schema_hash);
}

TEST(GeneratedDescription, KeyAndIndexValuesOfAnObject) {
  WeaponT axe;
  axe.damage = 12;
  StatsT stats;
  stats.level = 4;
  stats.mentor = std::make_unique<StatsT>();
  stats.mentor->level = 7;
  auto m = build(orc().setPos(Vec3(1.5f, 0, 0)).setEquipped(axe).setStats(std::move(stats)));
  const TableDescription& d = MonsterEntity::description();
  std::vector<Value> key;
  d.key_of(m->data(), &key);
  EXPECT_THAT(key, ElementsAre(Value::text("orc"), Value::integer(3)));
  std::vector<Value> index;
  d.index_values_of(m->data(), &index);
  EXPECT_THAT(index, ElementsAre(Value::integer(30), Value::integer(0), Value::real(1.5),
                                 Value::integer(12), Value::integer(4), Value::integer(7), Value(),
                                 Value()));

  // A different union member makes the union key path null.
  auto shielded = build(orc().setEquipped(ShieldT()));
  index.clear();
  d.index_values_of(shielded->data(), &index);
  EXPECT_EQ(index[3], Value());
  EXPECT_EQ(index[4], Value());  // no stats: the nested path is null
}

TEST(GeneratedDescription, CorruptBytesAreDataLoss) {
  std::vector<uint8_t> garbage = {0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4};
  auto m = MonsterEntity::fromBytes(garbage, 42);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("flatstore.test.game.Monster"));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("rowid 42"));
}

TEST(GeneratedFields, EvaluateInMemory) {
  StatsT stats;
  stats.level = 4;
  auto m = build(orc().setPos(Vec3(1.5f, 0, 0)).setStats(std::move(stats)).setScore(9));
  EXPECT_TRUE((F::hp > 10).matches(*m));
  EXPECT_FALSE((F::hp > 30).matches(*m));
  EXPECT_TRUE((F::hp >= 30 && F::color == Color::Red).matches(*m));
  EXPECT_TRUE((F::name == "orc").matches(*m));
  EXPECT_TRUE((F::name < "pig").matches(*m));
  EXPECT_TRUE((F::pos.x > 1.0).matches(*m));
  EXPECT_TRUE((F::stats.level == 4).matches(*m));
  EXPECT_TRUE((F::badge.label.isNull()).matches(*m));
  EXPECT_TRUE((F::score.in({1, 9, 27})).matches(*m));
  EXPECT_TRUE((F::realm.notIn({1, 2})).matches(*m));
  EXPECT_TRUE((F::alive == true).matches(*m));
  EXPECT_TRUE((F::speed < 2).matches(*m));
  EXPECT_EQ(F::hp.valueIn(*m), Value::integer(30));
  EXPECT_EQ(F::stats.level.info().storage, FieldStorage::kIndexed);
  EXPECT_EQ(F::name.info().storage, FieldStorage::kPrimaryKey);
  EXPECT_EQ(F::mana.info().storage, FieldStorage::kUnindexed);
}

TEST(GeneratedFields, ThreeValuedLogic) {
  auto m = build(orc());  // no email, no equipment
  auto unknown = F::email == "x";
  EXPECT_EQ(unknown.evaluate(*m), Truth::kUnknown);
  EXPECT_EQ((!unknown).evaluate(*m), Truth::kUnknown);
  EXPECT_FALSE((!unknown).matches(*m));
  EXPECT_EQ((unknown && F::hp > 100).evaluate(*m), Truth::kFalse);
  EXPECT_EQ((unknown && F::hp > 10).evaluate(*m), Truth::kUnknown);
  EXPECT_EQ((unknown || F::hp > 10).evaluate(*m), Truth::kTrue);
  EXPECT_EQ((unknown || F::hp > 100).evaluate(*m), Truth::kUnknown);
  EXPECT_EQ(F::email.in({"a"}).evaluate(*m), Truth::kUnknown);
  EXPECT_EQ(F::email.notIn({"a"}).evaluate(*m), Truth::kUnknown);
  EXPECT_EQ(F::email.in(std::vector<std::string>{}).evaluate(*m), Truth::kFalse);
  EXPECT_EQ(F::email.isNull().evaluate(*m), Truth::kTrue);
  EXPECT_EQ(F::email.isNotNull().evaluate(*m), Truth::kFalse);
  EXPECT_EQ((F::equipped.asWeapon.damage > 0).evaluate(*m), Truth::kUnknown);
  EXPECT_EQ(Predicate<Monster>().evaluate(*m), Truth::kTrue);
}

TEST(GeneratedFields, UnsignedAndRealComparisonsMatchSqlite) {
  // uint64 values above 2^63-1 are stored with their bits as int64, as SQLite would.
  auto m = build(orc().setBig(18446744073709551615ull).setSpeed(2.5));
  EXPECT_EQ(F::big.valueIn(*m), Value::integer(-1));
  EXPECT_TRUE((F::speed > 2).matches(*m));
  EXPECT_TRUE((F::speed < 3).matches(*m));
}

TEST(Versionstamps, PrintParseAndOrder) {
  Versionstamp v(0x123456789abcdefull, 0x2a);
  EXPECT_EQ(v.toString(), "0123456789abcdef002a");
  auto parsed = Versionstamp::parse("0123456789abcdef002a");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, v);
  EXPECT_EQ(Versionstamp::fromPacked(Versionstamp(5, 7).packed()), Versionstamp(5, 7));
  EXPECT_LT(Versionstamp(5, 7), Versionstamp(5, 8));
  EXPECT_LT(Versionstamp(5, 65535), Versionstamp(6, 0));
  auto bad = Versionstamp::parse("xyz");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Versionstamp::parse("0123456789ABCDEF002a").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Values, SqlOrdering) {
  EXPECT_EQ(*compare(Value::integer(1), Value::real(1.0)), std::strong_ordering::equal);
  EXPECT_EQ(*compare(Value::integer(2), Value::real(1.5)), std::strong_ordering::greater);
  EXPECT_EQ(*compare(Value::integer(-2), Value::real(-1.5)), std::strong_ordering::less);
  EXPECT_EQ(*compare(Value::integer(9007199254740993), Value::real(9007199254740992.0)),
            std::strong_ordering::greater);
  EXPECT_EQ(*compare(Value::integer(5), Value::text("1")), std::strong_ordering::less);
  EXPECT_EQ(*compare(Value::text("ab"), Value::text("b")), std::strong_ordering::less);
  EXPECT_EQ(*compare(Value::text("\xff"), Value::text("a")), std::strong_ordering::greater);
  EXPECT_FALSE(compare(Value(), Value::integer(1)).has_value());
  EXPECT_EQ(sortOrder(Value(), Value::integer(-5)), std::strong_ordering::less);
  EXPECT_EQ(Value::text("a\"b").toString(), "\"a\\\"b\"");
}

// operator== compares kind and content exactly (null == null, unlike SQL; an integer
// never equals a real), and copies and moves keep both.
TEST(Values, EqualityIsKindAndContent) {
  EXPECT_EQ(Value(), Value());
  EXPECT_EQ(Value::real(std::numeric_limits<double>::quiet_NaN()), Value());
  EXPECT_EQ(Value::integer(7), Value::integer(7));
  EXPECT_NE(Value::integer(7), Value::integer(8));
  EXPECT_NE(Value::integer(1), Value::real(1.0));
  EXPECT_NE(Value::integer(0), Value());
  EXPECT_NE(Value::text(""), Value());
  EXPECT_EQ(Value::real(-0.0), Value::real(0.0));
  EXPECT_NE(Value::real(1.5), Value::real(2.5));
  EXPECT_EQ(Value::text("abc"), Value::of(std::string_view("abc")));
  EXPECT_NE(Value::text("abc"), Value::text("abd"));
  EXPECT_NE(Value::text("1"), Value::integer(1));

  Value text = Value::text("a long enough text to be stored out of line");
  Value copy = text;
  EXPECT_EQ(copy, text);
  EXPECT_EQ(copy.kind(), Value::Kind::kText);
  Value moved = std::move(copy);
  EXPECT_EQ(moved.asText(), "a long enough text to be stored out of line");
  Value assigned = Value::integer(3);
  assigned = moved;
  EXPECT_EQ(assigned, text);
  assigned = Value::real(2.5);
  EXPECT_EQ(assigned.kind(), Value::Kind::kReal);
  EXPECT_EQ(assigned.asReal(), 2.5);
  EXPECT_EQ(assigned.toString(), "2.5");
}

// NaN is null (SQLite stores and binds a NaN as NULL); infinities and -0.0 are numbers.
TEST(Values, NanIsNullInfinitiesAreNumbers) {
  constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(Value::real(kNan).isNull());
  EXPECT_TRUE(Value::of(std::numeric_limits<float>::quiet_NaN()).isNull());
  EXPECT_FALSE(compare(Value::real(kNan), Value::real(kNan)).has_value());
  EXPECT_FALSE(compare(Value::integer(0), Value::real(kNan)).has_value());
  EXPECT_EQ(*compare(Value::real(kInf), Value::integer(std::numeric_limits<int64_t>::max())),
            std::strong_ordering::greater);
  EXPECT_EQ(*compare(Value::real(-kInf), Value::integer(std::numeric_limits<int64_t>::min())),
            std::strong_ordering::less);
  EXPECT_EQ(*compare(Value::real(-0.0), Value::real(0.0)), std::strong_ordering::equal);
  EXPECT_EQ(*compare(Value::real(-0.0), Value::integer(0)), std::strong_ordering::equal);

  // In memory, on an object: a NaN field is null to every operator.
  auto m = build(orc().setSpeed(kNan));
  EXPECT_TRUE(std::isnan(m->speed())) << "the object keeps its NaN";
  EXPECT_EQ((F::speed == kNan).evaluate(*m), Truth::kUnknown);
  EXPECT_EQ((F::speed != 0).evaluate(*m), Truth::kUnknown);
  EXPECT_EQ((F::speed == 0).evaluate(*m), Truth::kUnknown);
  EXPECT_EQ((F::speed < kInf).evaluate(*m), Truth::kUnknown);
  EXPECT_EQ(F::speed.isNull().evaluate(*m), Truth::kTrue);
  EXPECT_EQ(F::speed.in({1.0}).evaluate(*m), Truth::kUnknown);
  EXPECT_EQ(F::speed.notIn({1.0}).evaluate(*m), Truth::kUnknown);
  // A NaN operand in a list is a NULL in it, as in SQL.
  auto one = build(orc().setSpeed(1.0));
  EXPECT_EQ(F::speed.in({kNan, 1.0}).evaluate(*one), Truth::kTrue);
  EXPECT_EQ(F::speed.in({kNan, 2.0}).evaluate(*one), Truth::kUnknown);
  EXPECT_EQ(F::speed.notIn({kNan, 2.0}).evaluate(*one), Truth::kUnknown);
  EXPECT_EQ((F::speed != kNan).evaluate(*one), Truth::kUnknown);
}

// get<T>(key...) takes the primary key's fields, in number and type, as
// deletion(key...) does; tests/codegen/compile_fail/get_key.cc shows the compiler's
// refusal.
template <class T, class... K>
concept Gettable = requires(Workspace& ws, TransactionContext& txn, const K&... key) {
  ws.get<T>(key...);
  txn.get<T>(key...);
};
static_assert(Gettable<Monster, const char*, int>);
static_assert(Gettable<Monster, std::string, int64_t>);
static_assert(Gettable<Event, int64_t>);
static_assert(!Gettable<Monster, const char*>);
static_assert(!Gettable<Monster, const char*, int, int>);
static_assert(!Gettable<Monster, const char*, double>);
static_assert(!Gettable<Monster, int, int>);
static_assert(!Gettable<Event, const char*>);
static_assert(!Gettable<Event>);

}  // namespace
}  // namespace flatstore::test::game
