// Compile-and-run tests of the code generated for tests/codegen/schemas/constructs.v2.fbs:
// the constructs of schemas written for flatc that flatstore-codegen once turned into
// headers that did not compile, or into code that lost values; and of the header for a
// schema without entities (tests/codegen/good/no_entity.fbs).
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "constructs.v2_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "no_entity_flatstore.h"

// The conversions native_point.h declares for the `native_type` of Point.
namespace flatbuffers {
flatstore::test::constructs::Point Pack(const flatstore::test::native::Point& point) {
  return flatstore::test::constructs::Point(point.x, point.y);
}
const flatstore::test::native::Point UnPack(const flatstore::test::constructs::Point& point) {
  return flatstore::test::native::Point{point.x(), point.y()};
}
}  // namespace flatbuffers

namespace flatstore::test::constructs {
namespace {

using ::testing::ElementsAre;
using F = HeroFields;

std::shared_ptr<const HeroEntity> build(const HeroChangeRequest& request,
                                        const HeroEntity* base = nullptr) {
  auto encoded = request.encodeOver(base == nullptr ? nullptr : base->data());
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  auto entity = HeroEntity::fromBytes(encoded->bytes.span(), 5);
  EXPECT_TRUE(entity.ok()) << entity.status();
  return *entity;
}

// The value of the index on `path` for `hero`.
Value indexValue(const HeroEntity& hero, std::string_view path) {
  const TableDescription& d = HeroEntity::description();
  std::vector<Value> values;
  d.index_values_of(hero.data(), &values);
  for (size_t i = 0; i < d.indexes.size(); ++i) {
    if (d.indexes[i].field_path == path) return values[i];
  }
  ADD_FAILURE() << "no index on " << path;
  return Value();
}

// `union Alias { First: Card, Second: Card }`: flatc gives AliasUnion no Set(), so the
// union itself is set, and each name reads back as itself.
TEST(Constructs, UnionNamingOneTableTwice) {
  AliasUnion alias;
  alias.type = Alias::Second;
  auto card = std::make_unique<CardT>();
  card->title = "ace";
  alias.value = card.release();
  auto hero = build(HeroChangeRequest::creation().setR(1).setAlias(std::move(alias)));
  EXPECT_EQ(hero->aliasType(), Alias::Second);
  EXPECT_EQ(hero->aliasAsFirst(), nullptr);
  ASSERT_NE(hero->aliasAsSecond(), nullptr);
  EXPECT_EQ(hero->aliasAsSecond()->title()->str(), "ace");
  EXPECT_EQ(indexValue(*hero, "alias.Second.title"), Value::text("ace"));
  EXPECT_EQ(indexValue(*hero, "alias.First.title"), Value());
}

// Fields and union members named like C++ keywords read through flatc's own escaped
// names (module_, import_, Shape::int_); a field named like an entity member gets '_'
// in the accessor and in the field descriptors alike.
TEST(Constructs, KeywordAndReservedNames) {
  NoteT note;
  note.text = "hi";
  auto hero = build(HeroChangeRequest::creation()
                        .setR(2)
                        .setModule("core")
                        .setImport(3)
                        .setDescription("tall")
                        .setShape(std::move(note)));
  EXPECT_EQ(hero->module_(), "core");
  EXPECT_EQ(hero->import_(), 3);
  EXPECT_EQ(hero->description_(), "tall");
  EXPECT_EQ(hero->shapeType(), Shape::int_);
  ASSERT_NE(hero->shapeAsInt(), nullptr);
  EXPECT_EQ(hero->shapeAsInt()->text()->str(), "hi");
  EXPECT_TRUE((F::module_ == "core").matches(*hero));
  EXPECT_TRUE((F::description_ == "tall").matches(*hero));
  EXPECT_TRUE((F::shape.asInt.text == "hi").matches(*hero));
  EXPECT_EQ(F::description_.info().path, "description");
}

// The primary key is named `r`, as deletion()'s local once was.
TEST(Constructs, KeyNamedLikeALocal) {
  auto deletion = HeroChangeRequest::deletion(42);
  EXPECT_EQ(deletion.kind(), ChangeKind::kDeletion);
  EXPECT_THAT(deletion.targetKey(), ElementsAre(Value::integer(42)));
}

// A struct member of a union is a key path, and its indexed field is indexed.
TEST(Constructs, StructUnionMemberIsIndexed) {
  ShapeUnion shape;
  shape.type = Shape::Cell;
  shape.value = new Cell(4, 5);
  auto hero = build(HeroChangeRequest::creation().setR(3).setShape(std::move(shape)));
  ASSERT_NE(hero->shapeAsCell(), nullptr);
  EXPECT_EQ(hero->shapeAsCell()->col(), 5);
  EXPECT_EQ(F::shape.asCell.row.info().storage, FieldStorage::kIndexed);
  EXPECT_EQ(indexValue(*hero, "shape.Cell.row"), Value::integer(4));
  EXPECT_TRUE((F::shape.asCell.col == 5).matches(*hero));
}

// Hero.enemy is a Hero: its fields are key paths one level down, and indexed ones are
// indexed there too; a table appears at most twice on a key path.
TEST(Constructs, SelfReferenceToOneLevel) {
  auto enemy = std::make_unique<HeroT>();
  enemy->hp = 7;
  auto hero = build(HeroChangeRequest::creation().setR(4).setEnemy(std::move(*enemy)));
  EXPECT_TRUE((F::enemy.hp == 7).matches(*hero));
  EXPECT_TRUE((F::hp == 100).matches(*hero));
  EXPECT_EQ(F::enemy.hp.info().storage, FieldStorage::kIndexed);
  EXPECT_EQ(indexValue(*hero, "enemy.hp"), Value::integer(7));
  std::vector<std::string> paths;
  for (const IndexDescription& i : HeroEntity::description().indexes) {
    paths.emplace_back(i.field_path);
  }
  EXPECT_THAT(paths, testing::Contains("enemy.module"));
  EXPECT_THAT(paths, testing::Not(testing::Contains(testing::HasSubstr("enemy.enemy"))));
}

// A `native_type` struct with `native_inline` is set as the native type.
TEST(Constructs, NativeInlineStruct) {
  auto hero = build(HeroChangeRequest::creation().setR(5).setSpot(native::Point{1.5f, 2.5f}));
  ASSERT_NE(hero->spot(), nullptr);
  EXPECT_FLOAT_EQ(hero->spot()->x(), 1.5f);
  EXPECT_FLOAT_EQ(hero->unpack().spot.y, 2.5f);
}

// Hashed references (`hash` with `cpp_type`) are set as hashes and survive changes to
// other fields, also when a hash is 0 or the default.
TEST(Constructs, HashedReferencesKeepTheirValues) {
  auto hero = build(HeroChangeRequest::creation().setR(6).setRival(0xabcdu).setAllies({1, 2, 3}));
  EXPECT_EQ(hero->rival(), 0xabcdu);
  ASSERT_NE(hero->allies(), nullptr);
  EXPECT_THAT(std::vector<uint64_t>(hero->allies()->begin(), hero->allies()->end()),
              ElementsAre(1, 2, 3));

  auto changed = build(HeroChangeRequest::changeOf(*hero).setHp(1), hero.get());
  EXPECT_EQ(changed->hp(), 1);
  EXPECT_EQ(changed->rival(), 0xabcdu);
  EXPECT_THAT(std::vector<uint64_t>(changed->allies()->begin(), changed->allies()->end()),
              ElementsAre(1, 2, 3));

  auto same = HeroChangeRequest::changeOf(*changed).setRival(0xabcdu);
  EXPECT_FALSE(same.encodeOver(changed->data())->changed);
  auto zeroed = build(HeroChangeRequest::changeOf(*changed).setRival(0), changed.get());
  EXPECT_EQ(zeroed->rival(), 0u);
}

// `unique` on a scalar with a default: an object that leaves it unset has the default,
// which is indexed like any value (so only one object can have it); on an optional
// scalar, unset is null, which any number of objects may share.
TEST(Constructs, UniqueWithAndWithoutDefault) {
  auto unset = build(HeroChangeRequest::creation().setR(7));
  EXPECT_EQ(indexValue(*unset, "badge"), Value::integer(7));
  EXPECT_EQ(indexValue(*unset, "ticket"), Value());
  auto set = build(HeroChangeRequest::creation().setR(8).setBadge(1).setTicket(2));
  EXPECT_EQ(indexValue(*set, "badge"), Value::integer(1));
  EXPECT_EQ(indexValue(*set, "ticket"), Value::integer(2));
  for (const IndexDescription& i : HeroEntity::description().indexes) {
    if (i.field_path == "badge" || i.field_path == "ticket") EXPECT_TRUE(i.unique);
  }
}

// FLATC_ARGS reached flatc: --gen-name-strings adds GetFullyQualifiedName().
TEST(Constructs, FlatcArgumentsArePassed) {
  EXPECT_STREQ(Hero::GetFullyQualifiedName(), "flatstore.test.constructs.Hero");
}

// A schema without entities gets a header too (the tool warns); it gives flatc's types,
// with their defaults, and nothing of flatstore's.
TEST(Constructs, SchemaWithoutEntitiesGivesFlatcTypes) {
  ::good::shared::LabelT label;
  EXPECT_EQ(label.weight, 3);
}

}  // namespace
}  // namespace flatstore::test::constructs
