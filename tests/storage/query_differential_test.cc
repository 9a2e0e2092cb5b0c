// A randomized differential test of queries. Every random query is answered three ways,
// and the answers must agree exactly (the same objects in the same order):
//   (1) the query engine: Query::where/orderBy/limit/offset/all, compiled to SQL over
//       primary-key columns and index tables where its fields allow, and evaluated in
//       memory otherwise;
//   (2) flatstore's in-memory evaluation: every object fetched without a filter, kept
//       when Predicate::matches, sorted here with Field::valueIn and sortOrder;
//   (3) a plain C++ reference: a model of the data in ordinary structs and a parallel
//       expression tree, evaluated with SQL's three-valued logic and SQLite's ordering
//       as written down in this file, without any of flatstore's code.
// count() and first() are checked against (3) as well. A share of the queries runs
// inside transactions after the closure submitted inserts, updates (some changing the
// primary key), upserts and deletions: those read their own writes, so (3) answers
// from the model plus the pending changes. The closures abort, so the data stays put.
//
// Everything derives from one seed; each failure names it, and FLATSTORE_DIFF_SEED=<n>
// reruns one seed (test QueryDifferentialSeed.FromEnvironment), and
// FLATSTORE_DIFF_DB_DIR=<dir> keeps its database file for inspection. A failing query is
// shrunk before it is reported, and the report shows the three answers and the data of
// the objects they disagree on.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "tests/support/random.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"

namespace flatstore::test::game {
namespace {

using ::flatstore::testing::Rng;
using ::flatstore::testing::TempDir;
using F = MonsterFields;
using EntityPtr = std::shared_ptr<const MonsterEntity>;
using Key = std::pair<std::string, int32_t>;

// How much one seed does: 800 queries; the four seeds below run 3,200 in all.
struct Budget {
  int min_objects = 150;
  int max_objects = 210;
  int committed_mutations = 60;  // one committed transaction of mixed changes
  int queries = 600;             // on the committed data
  int transactions = 8;          // aborted closures with read-your-writes queries
  int transaction_mutations = 16;
  int transaction_queries = 25;
};
constexpr int kMaxReportedFailures = 3;  // per seed; later mismatches are only counted
// Pending inserts sort after every committed row (they get the next rowids on commit).
constexpr int64_t kPendingSortBase = int64_t{1} << 62;

// ---------------------------------------------------------------------------------------
// Value pools: small, so that values tie often; with edges (bytes above 0x7f, an
// embedded NUL, extreme integers, NaN, -0.0, infinities, integers beyond 2^53).

constexpr std::string_view kNames[] = {"a",          "b",
                                       "A",          "B",
                                       "ab",         "abc",
                                       "orc",        "Orc",
                                       "orc ",       "troll",
                                       "z",          "zz",
                                       "\xc3\xa9lf", "\xe2\x82\xac",
                                       "a\x01",      "~",
                                       "0",          "10",
                                       "9",          "m",
                                       "mm",         "m\xc3\xa9",
                                       "x y",        std::string_view("n\0ul", 4),
                                       "\x7f",       "Z",
                                       "ogre",       "imp",
                                       "Imp",        "a b"};
constexpr std::string_view kEmailPrefixes[] = {"a", "b", "B", "orc", "z", "\xc3\xa9", "m", "a.b"};
constexpr std::string_view kLabels[] = {
    "gold", "silver", "Gold", "g", "gold ", "\xc3\xa9t\xc3\xa9", "gold\x01"};
constexpr std::string_view kWeaponNames[] = {"axe", "bow", "Axe", "sword", "axe2", "\xe2\x82\xac"};
constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr float kNanF = std::numeric_limits<float>::quiet_NaN();
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
// pos.x is indexed (answered in SQL), pos.y, pos.z and speed are not (in memory).
constexpr float kCoords[] = {-2.0f, -1.5f, -1.0f, -0.0f, 0.0f,   0.5f,  1.0f, 1.25f,
                             2.0f,  3.0f,  0.1f,  1e30f, -kInfF, kInfF, kNanF};
constexpr double kSpeeds[] = {1.5,    0.0,    -1.0,   0.5, 2.0,  3.0,   1e300, -1e-300,
                              9.3e18, 0x1p63, 0x1p53, 0.1, -0.0, -kInf, kInf,  kNan};
constexpr uint64_t kBigs[] = {0,
                              1,
                              2,
                              42,
                              uint64_t{1} << 62,
                              (uint64_t{1} << 63) - 1,
                              uint64_t{1} << 63,
                              (uint64_t{1} << 63) + 1,
                              std::numeric_limits<uint64_t>::max(),
                              std::numeric_limits<uint64_t>::max() - 1};
constexpr int64_t kXps[] = {0,
                            1,
                            -1,
                            7,
                            int64_t{1} << 40,
                            std::numeric_limits<int64_t>::max(),
                            std::numeric_limits<int64_t>::min()};

// ---------------------------------------------------------------------------------------
// The model: what the test believes is stored, in plain C++ types.

enum class Equip { kNone, kWeapon, kShield };

struct ModelMonster {
  std::string name;
  int32_t realm = 0;
  int16_t hp = 100;
  int16_t mana = 150;
  Color color = Color::Blue;
  std::optional<std::array<float, 3>> pos;
  Equip equip = Equip::kNone;
  std::optional<std::string> weapon_name;  // kWeapon only
  int16_t damage = 0;                      // kWeapon only
  int32_t armor = 0;                       // kShield only
  bool has_stats = false;
  int32_t level = 1;
  int64_t xp = 0;
  std::optional<std::string> email;
  std::optional<int32_t> score;
  bool alive = true;
  double speed = 1.5;
  uint64_t big = 0;
  bool has_badge = false;
  std::optional<std::string> label;
  int32_t weight = 0;
  // The rowid the store assigned; kPendingSortBase + n for a pending insert.
  int64_t sort_id = 0;

  Key key() const { return {name, realm}; }
};

// Equal reals: -0.0 equals 0.0, and a NaN equals a NaN (the bytes stay the same).
bool sameReal(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }
bool samePos(const std::optional<std::array<float, 3>>& a,
             const std::optional<std::array<float, 3>>& b) {
  if (!a || !b) return !a && !b;
  for (size_t i = 0; i < 3; ++i) {
    if (!sameReal((*a)[i], (*b)[i])) return false;
  }
  return true;
}

// Equal content (reals by sameReal); sort_id is not content.
bool sameContent(const ModelMonster& a, const ModelMonster& b) {
  return a.name == b.name && a.realm == b.realm && a.hp == b.hp && a.mana == b.mana &&
         a.color == b.color && samePos(a.pos, b.pos) && a.equip == b.equip &&
         a.weapon_name == b.weapon_name && a.damage == b.damage && a.armor == b.armor &&
         a.has_stats == b.has_stats && a.level == b.level && a.xp == b.xp && a.email == b.email &&
         a.score == b.score && a.alive == b.alive && sameReal(a.speed, b.speed) && a.big == b.big &&
         a.has_badge == b.has_badge && a.label == b.label && a.weight == b.weight;
}

using ModelMap = std::map<Key, ModelMonster>;

// Debian's Abseil has its own string_view type.
absl::string_view av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string escaped(std::string_view s) { return absl::StrCat("\"", absl::CEscape(av(s)), "\""); }

std::string realText(double d) {
  std::ostringstream out;
  out.precision(17);
  out << d;
  std::string s = out.str();
  if (s.find_first_of(".einf") == std::string::npos) s += ".0";
  return s;
}

std::string describe(const ModelMonster& m) {
  std::string out = absl::StrCat("{name=", escaped(m.name), " realm=", m.realm, " hp=", m.hp,
                                 " mana=", m.mana, " color=", static_cast<int>(m.color), " pos=");
  if (m.pos) {
    absl::StrAppend(&out, "(", realText((*m.pos)[0]), ",", realText((*m.pos)[1]), ",",
                    realText((*m.pos)[2]), ")");
  } else {
    out += "null";
  }
  switch (m.equip) {
    case Equip::kNone:
      out += " equipped=none";
      break;
    case Equip::kWeapon:
      absl::StrAppend(&out,
                      " equipped=Weapon{name=", m.weapon_name ? escaped(*m.weapon_name) : "null",
                      " damage=", m.damage, "}");
      break;
    case Equip::kShield:
      absl::StrAppend(&out, " equipped=Shield{armor=", m.armor, "}");
      break;
  }
  absl::StrAppend(
      &out, " stats=", m.has_stats ? absl::StrCat("{level=", m.level, " xp=", m.xp, "}") : "null",
      " email=", m.email ? escaped(*m.email) : "null",
      " score=", m.score ? absl::StrCat(*m.score) : "null", " alive=", m.alive,
      " speed=", realText(m.speed), " big=", m.big, " badge=");
  if (m.has_badge) {
    absl::StrAppend(&out, "{label=", m.label ? escaped(*m.label) : "null", " weight=", m.weight,
                    "}");
  } else {
    out += "null";
  }
  absl::StrAppend(&out, " rowid=",
                  m.sort_id >= kPendingSortBase
                      ? absl::StrCat("pending#", m.sort_id - kPendingSortBase)
                      : absl::StrCat(m.sort_id),
                  "}");
  return out;
}

// ---------------------------------------------------------------------------------------
// Queryable fields. withField() hands the typed descriptor to a generic callable.

enum class Fld {
  kName,
  kRealm,
  kHp,
  kMana,
  kColor,
  kPosX,
  kPosY,
  kPosZ,
  kWeaponName,
  kDamage,
  kArmor,
  kLevel,
  kXp,
  kEmail,
  kScore,
  kAlive,
  kSpeed,
  kBig,
  kLabel,
  kWeight,
};
constexpr int kFieldCount = 20;

template <class Fn>
auto withField(Fld f, Fn&& fn) {
  switch (f) {
    case Fld::kName:
      return fn(F::name);
    case Fld::kRealm:
      return fn(F::realm);
    case Fld::kHp:
      return fn(F::hp);
    case Fld::kMana:
      return fn(F::mana);
    case Fld::kColor:
      return fn(F::color);
    case Fld::kPosX:
      return fn(F::pos.x);
    case Fld::kPosY:
      return fn(F::pos.y);
    case Fld::kPosZ:
      return fn(F::pos.z);
    case Fld::kWeaponName:
      return fn(F::equipped.asWeapon.name);
    case Fld::kDamage:
      return fn(F::equipped.asWeapon.damage);
    case Fld::kArmor:
      return fn(F::equipped.asShield.armor);
    case Fld::kLevel:
      return fn(F::stats.level);
    case Fld::kXp:
      return fn(F::stats.xp);
    case Fld::kEmail:
      return fn(F::email);
    case Fld::kScore:
      return fn(F::score);
    case Fld::kAlive:
      return fn(F::alive);
    case Fld::kSpeed:
      return fn(F::speed);
    case Fld::kBig:
      return fn(F::big);
    case Fld::kLabel:
      return fn(F::badge.label);
    case Fld::kWeight:
      return fn(F::badge.weight);
  }
  return fn(F::name);
}

std::string fieldPath(Fld f) {
  return withField(f, [](const auto& fd) { return std::string(fd.info().path); });
}
// Whether the store can answer the field in SQL (a key column or an index).
bool inSql(Fld f) {
  return withField(f, [](const auto& fd) { return fd.info().storage != FieldStorage::kUnindexed; });
}

// ---------------------------------------------------------------------------------------
// The reference: values, comparison, three-valued logic. Written from SQLite's rules,
// not from flatstore's code.

struct RefVal {
  enum class Kind { kNull, kInt, kReal, kText };
  Kind kind = Kind::kNull;
  int64_t i = 0;
  double r = 0;
  std::string s;
};
RefVal refNull() { return {}; }
RefVal refInt(int64_t v) { return {RefVal::Kind::kInt, v, 0, {}}; }
// flatstore's documented rule: a NaN is null, in stored fields and in operands alike
// (SQLite stores and binds a NaN as NULL).
RefVal refReal(double v) {
  return std::isnan(v) ? refNull() : RefVal{RefVal::Kind::kReal, 0, v, {}};
}
RefVal refText(std::string v) { return {RefVal::Kind::kText, 0, 0, std::move(v)}; }

std::string describe(const RefVal& v) {
  switch (v.kind) {
    case RefVal::Kind::kNull:
      return "NULL";
    case RefVal::Kind::kInt:
      return absl::StrCat(v.i);
    case RefVal::Kind::kReal:
      return realText(v.r);
    case RefVal::Kind::kText:
      return escaped(v.s);
  }
  return "?";
}

// The field's value in the model; null when absent.
RefVal refValue(const ModelMonster& m, Fld f) {
  switch (f) {
    case Fld::kName:
      return refText(m.name);
    case Fld::kRealm:
      return refInt(m.realm);
    case Fld::kHp:
      return refInt(m.hp);
    case Fld::kMana:
      return refInt(m.mana);
    case Fld::kColor:
      return refInt(static_cast<int8_t>(m.color));
    case Fld::kPosX:
    case Fld::kPosY:
    case Fld::kPosZ:
      if (!m.pos) return refNull();
      return refReal(
          static_cast<double>((*m.pos)[static_cast<int>(f) - static_cast<int>(Fld::kPosX)]));
    case Fld::kWeaponName:
      return m.equip == Equip::kWeapon && m.weapon_name ? refText(*m.weapon_name) : refNull();
    case Fld::kDamage:
      return m.equip == Equip::kWeapon ? refInt(m.damage) : refNull();
    case Fld::kArmor:
      return m.equip == Equip::kShield ? refInt(m.armor) : refNull();
    case Fld::kLevel:
      return m.has_stats ? refInt(m.level) : refNull();
    case Fld::kXp:
      return m.has_stats ? refInt(m.xp) : refNull();
    case Fld::kEmail:
      return m.email ? refText(*m.email) : refNull();
    case Fld::kScore:
      return m.score ? refInt(*m.score) : refNull();
    case Fld::kAlive:
      return refInt(m.alive ? 1 : 0);
    case Fld::kSpeed:
      return refReal(m.speed);
    case Fld::kBig:
      return refInt(static_cast<int64_t>(m.big));  // the int64 with the same bits
    case Fld::kLabel:
      return m.has_badge && m.label ? refText(*m.label) : refNull();
    case Fld::kWeight:
      return m.has_badge ? refInt(m.weight) : refNull();
  }
  return refNull();
}

// An int64 and a double both convert exactly to an x87 long double, so comparing there
// is comparing the exact numbers, as SQLite does.
static_assert(std::numeric_limits<long double>::digits >= 64,
              "the reference compares int64 with double through a 64-bit-mantissa long double");

// SQLite's order of two non-null values: numbers before text, numbers by value, text
// bytewise (BINARY collation: memcmp, then the shorter first).
int refCompare(const RefVal& a, const RefVal& b) {
  bool a_text = a.kind == RefVal::Kind::kText;
  bool b_text = b.kind == RefVal::Kind::kText;
  if (a_text != b_text) return a_text ? 1 : -1;
  if (a_text) {
    size_t n = std::min(a.s.size(), b.s.size());
    int c = n == 0 ? 0 : std::memcmp(a.s.data(), b.s.data(), n);
    if (c != 0) return c < 0 ? -1 : 1;
    return a.s.size() < b.s.size() ? -1 : (a.s.size() > b.s.size() ? 1 : 0);
  }
  long double x = a.kind == RefVal::Kind::kInt ? static_cast<long double>(a.i) : a.r;
  long double y = b.kind == RefVal::Kind::kInt ? static_cast<long double>(b.i) : b.r;
  return x < y ? -1 : (x > y ? 1 : 0);
}

// ORDER BY's order: NULL before everything, then refCompare.
int refSortCompare(const RefVal& a, const RefVal& b) {
  bool an = a.kind == RefVal::Kind::kNull;
  bool bn = b.kind == RefVal::Kind::kNull;
  if (an || bn) return (an ? 0 : 1) - (bn ? 0 : 1);
  return refCompare(a, b);
}

enum class Tri { kFalse, kTrue, kNull };

Tri refNot(Tri t) {
  return t == Tri::kNull ? Tri::kNull : (t == Tri::kTrue ? Tri::kFalse : Tri::kTrue);
}

// One node of a predicate, with the flatstore Predicate built for the same subtree.
struct RefExpr {
  enum class Kind { kTrue, kCompare, kIn, kNotIn, kIsNull, kIsNotNull, kAnd, kOr, kNot };
  Kind kind = Kind::kTrue;
  Fld field = Fld::kName;
  CompareOp op = CompareOp::kEq;
  std::vector<RefVal> operands;
  std::shared_ptr<const RefExpr> lhs;
  std::shared_ptr<const RefExpr> rhs;
  Predicate<Monster> pred;
};
using NodePtr = std::shared_ptr<const RefExpr>;

NodePtr trueNode() { return std::make_shared<RefExpr>(); }
NodePtr andNode(NodePtr a, NodePtr b) {
  auto n = std::make_shared<RefExpr>();
  n->kind = RefExpr::Kind::kAnd;
  n->pred = a->pred && b->pred;
  n->lhs = std::move(a);
  n->rhs = std::move(b);
  return n;
}
NodePtr orNode(NodePtr a, NodePtr b) {
  auto n = std::make_shared<RefExpr>();
  n->kind = RefExpr::Kind::kOr;
  n->pred = a->pred || b->pred;
  n->lhs = std::move(a);
  n->rhs = std::move(b);
  return n;
}
NodePtr notNode(NodePtr a) {
  auto n = std::make_shared<RefExpr>();
  n->kind = RefExpr::Kind::kNot;
  n->pred = !a->pred;
  n->lhs = std::move(a);
  return n;
}

Tri refEval(const RefExpr& e, const ModelMonster& m) {
  using K = RefExpr::Kind;
  switch (e.kind) {
    case K::kTrue:
      return Tri::kTrue;
    case K::kCompare: {
      RefVal v = refValue(m, e.field);
      if (v.kind == RefVal::Kind::kNull || e.operands.front().kind == RefVal::Kind::kNull) {
        return Tri::kNull;
      }
      int c = refCompare(v, e.operands.front());
      bool r = false;
      switch (e.op) {
        case CompareOp::kEq:
          r = c == 0;
          break;
        case CompareOp::kNe:
          r = c != 0;
          break;
        case CompareOp::kLt:
          r = c < 0;
          break;
        case CompareOp::kLe:
          r = c <= 0;
          break;
        case CompareOp::kGt:
          r = c > 0;
          break;
        case CompareOp::kGe:
          r = c >= 0;
          break;
      }
      return r ? Tri::kTrue : Tri::kFalse;
    }
    case K::kIn:
    case K::kNotIn: {
      // SQLite: `x IN ()` is false and `x NOT IN ()` true whatever x is; otherwise a
      // NULL x gives NULL, a match TRUE, and no match NULL when the list holds a NULL
      // (a NaN operand), FALSE when it does not.
      Tri in;
      RefVal v = refValue(m, e.field);
      auto isNull = [](const RefVal& o) { return o.kind == RefVal::Kind::kNull; };
      if (e.operands.empty()) {
        in = Tri::kFalse;
      } else if (isNull(v)) {
        in = Tri::kNull;
      } else if (std::any_of(e.operands.begin(), e.operands.end(), [&](const RefVal& o) {
                   return !isNull(o) && refCompare(v, o) == 0;
                 })) {
        in = Tri::kTrue;
      } else {
        in = std::any_of(e.operands.begin(), e.operands.end(), isNull) ? Tri::kNull : Tri::kFalse;
      }
      return e.kind == K::kIn ? in : refNot(in);
    }
    case K::kIsNull:
    case K::kIsNotNull: {
      bool null = refValue(m, e.field).kind == RefVal::Kind::kNull;
      return null == (e.kind == K::kIsNull) ? Tri::kTrue : Tri::kFalse;
    }
    case K::kAnd: {
      Tri a = refEval(*e.lhs, m);
      Tri b = refEval(*e.rhs, m);
      if (a == Tri::kFalse || b == Tri::kFalse) return Tri::kFalse;
      return a == Tri::kTrue && b == Tri::kTrue ? Tri::kTrue : Tri::kNull;
    }
    case K::kOr: {
      Tri a = refEval(*e.lhs, m);
      Tri b = refEval(*e.rhs, m);
      if (a == Tri::kTrue || b == Tri::kTrue) return Tri::kTrue;
      return a == Tri::kFalse && b == Tri::kFalse ? Tri::kFalse : Tri::kNull;
    }
    case K::kNot:
      return refNot(refEval(*e.lhs, m));
  }
  return Tri::kNull;
}

const char* opText(CompareOp op) {
  switch (op) {
    case CompareOp::kEq:
      return "==";
    case CompareOp::kNe:
      return "!=";
    case CompareOp::kLt:
      return "<";
    case CompareOp::kLe:
      return "<=";
    case CompareOp::kGt:
      return ">";
    case CompareOp::kGe:
      return ">=";
  }
  return "?";
}

std::string describe(const RefExpr& e) {
  using K = RefExpr::Kind;
  auto list = [&] {
    std::string out = "{";
    for (size_t i = 0; i < e.operands.size(); ++i) {
      absl::StrAppend(&out, i == 0 ? "" : ", ", describe(e.operands[i]));
    }
    return out + "}";
  };
  switch (e.kind) {
    case K::kTrue:
      return "TRUE";
    case K::kCompare:
      return absl::StrCat(fieldPath(e.field), " ", opText(e.op), " ", describe(e.operands.front()));
    case K::kIn:
      return absl::StrCat(fieldPath(e.field), ".in(", list(), ")");
    case K::kNotIn:
      return absl::StrCat(fieldPath(e.field), ".notIn(", list(), ")");
    case K::kIsNull:
      return absl::StrCat(fieldPath(e.field), ".isNull()");
    case K::kIsNotNull:
      return absl::StrCat(fieldPath(e.field), ".isNotNull()");
    case K::kAnd:
      return absl::StrCat("(", describe(*e.lhs), " && ", describe(*e.rhs), ")");
    case K::kOr:
      return absl::StrCat("(", describe(*e.lhs), " || ", describe(*e.rhs), ")");
    case K::kNot:
      return absl::StrCat("!", describe(*e.lhs));
  }
  return "?";
}

int nodeCount(const RefExpr& e) {
  return 1 + (e.lhs ? nodeCount(*e.lhs) : 0) + (e.rhs ? nodeCount(*e.rhs) : 0);
}

void collectFields(const RefExpr& e, std::vector<Fld>* out) {
  if (e.kind == RefExpr::Kind::kTrue) return;
  if (e.lhs == nullptr) {
    out->push_back(e.field);
    return;
  }
  collectFields(*e.lhs, out);
  if (e.rhs) collectFields(*e.rhs, out);
}

// ---------------------------------------------------------------------------------------
// Data generation: random monsters and random changes, applied to the model and to a
// change request alike.

// The groups of fields one setter (or clear) writes.
enum class Setter {
  kHp,
  kMana,
  kColor,
  kPos,
  kEquipped,
  kStats,
  kEmail,
  kScore,
  kAlive,
  kSpeed,
  kBig,
  kBadge,
};
constexpr int kSetterCount = 12;

class DataGen {
 public:
  explicit DataGen(Rng* rng) : rng_(*rng) {}

  int32_t randomRealm() {
    if (rng_.chance(0.03)) {
      return rng_.chance(0.5) ? std::numeric_limits<int32_t>::min()
                              : std::numeric_limits<int32_t>::max();
    }
    return static_cast<int32_t>(rng_.range(-3, 6));
  }

  // A key no object in `live` has: mostly from the small pools, so keys recur after
  // deletions and names tie across realms; a made-up name when the pools run dry.
  Key freshKey(const ModelMap& live) {
    for (int i = 0; i < 40; ++i) {
      Key k{std::string(rng_.pick(kNames)), randomRealm()};
      if (live.count(k) == 0) return k;
    }
    return {absl::StrCat("fresh", fresh_names_++), randomRealm()};
  }

  // Emails are unique (the index is), but share prefixes.
  std::string freshEmail() { return absl::StrCat(av(rng_.pick(kEmailPrefixes)), "@", emails_++); }

  // Gives the fields of `s` new random values in `m`.
  void randomize(Setter s, ModelMonster& m) {
    switch (s) {
      case Setter::kHp:
        m.hp = rng_.chance(0.06)  ? (rng_.chance(0.5) ? int16_t{-32768} : int16_t{32767})
               : rng_.chance(0.1) ? int16_t{100}
                                  : static_cast<int16_t>(rng_.range(-5, 12));
        break;
      case Setter::kMana:
        m.mana = rng_.chance(0.05)  ? (rng_.chance(0.5) ? int16_t{-32768} : int16_t{32767})
                 : rng_.chance(0.1) ? int16_t{150}
                                    : static_cast<int16_t>(rng_.range(-3, 8));
        break;
      case Setter::kColor:
        m.color = static_cast<Color>(rng_.range(0, 2));
        break;
      case Setter::kPos:
        if (rng_.chance(0.3)) {
          m.pos.reset();
        } else {
          m.pos = std::array<float, 3>{rng_.pick(kCoords), rng_.pick(kCoords), rng_.pick(kCoords)};
        }
        break;
      case Setter::kEquipped: {
        size_t r = rng_.below(10);
        m.weapon_name.reset();
        m.damage = 0;
        m.armor = 0;
        if (r < 3) {
          m.equip = Equip::kNone;
        } else if (r < 8) {
          m.equip = Equip::kWeapon;
          if (rng_.chance(0.7)) m.weapon_name = std::string(rng_.pick(kWeaponNames));
          m.damage = static_cast<int16_t>(rng_.range(-2, 6));
        } else {
          m.equip = Equip::kShield;
          m.armor = static_cast<int32_t>(rng_.range(0, 5));
        }
        break;
      }
      case Setter::kStats:
        m.has_stats = !rng_.chance(0.35);
        m.level = m.has_stats && !rng_.chance(0.2) ? static_cast<int32_t>(rng_.range(0, 4)) : 1;
        m.xp = m.has_stats ? rng_.pick(kXps) : 0;
        break;
      case Setter::kEmail:
        m.email = freshEmail();
        break;
      case Setter::kScore:
        if (rng_.chance(0.35)) {
          m.score.reset();
        } else {
          m.score = static_cast<int32_t>(rng_.range(-3, 5));
        }
        break;
      case Setter::kAlive:
        m.alive = rng_.chance(0.5);
        break;
      case Setter::kSpeed:
        m.speed = rng_.pick(kSpeeds);
        break;
      case Setter::kBig:
        m.big = rng_.pick(kBigs);
        break;
      case Setter::kBadge:
        m.has_badge = !rng_.chance(0.35);
        m.label.reset();
        m.weight = 0;
        if (m.has_badge) {
          if (rng_.chance(0.7)) m.label = std::string(rng_.pick(kLabels));
          m.weight = static_cast<int32_t>(rng_.range(-2, 3));
        }
        break;
    }
  }

  // Writes the fields of `s` as `m` has them into `r`. An absent string inside a nested
  // table is written as "", which FlatBuffers' object API leaves out of the buffer.
  static void apply(Setter s, const ModelMonster& m, MonsterChangeRequest& r) {
    switch (s) {
      case Setter::kHp:
        r.setHp(m.hp);
        break;
      case Setter::kMana:
        r.setMana(m.mana);
        break;
      case Setter::kColor:
        r.setColor(m.color);
        break;
      case Setter::kPos:
        if (m.pos) {
          r.setPos(common::Vec3((*m.pos)[0], (*m.pos)[1], (*m.pos)[2]));
        } else {
          r.clearPos();
        }
        break;
      case Setter::kEquipped:
        if (m.equip == Equip::kWeapon) {
          WeaponT w;
          w.name = m.weapon_name.value_or("");
          w.damage = m.damage;
          r.setEquipped(std::move(w));
        } else if (m.equip == Equip::kShield) {
          ShieldT sh;
          sh.armor = m.armor;
          r.setEquipped(std::move(sh));
        } else {
          r.clearEquipped();
        }
        break;
      case Setter::kStats:
        if (m.has_stats) {
          StatsT st;
          st.level = m.level;
          st.xp = m.xp;
          r.setStats(std::move(st));
        } else {
          r.clearStats();
        }
        break;
      case Setter::kEmail:
        r.setEmail(*m.email);
        break;
      case Setter::kScore:
        if (m.score) {
          r.setScore(*m.score);
        } else {
          r.clearScore();
        }
        break;
      case Setter::kAlive:
        r.setAlive(m.alive);
        break;
      case Setter::kSpeed:
        r.setSpeed(m.speed);
        break;
      case Setter::kBig:
        r.setBig(m.big);
        break;
      case Setter::kBadge:
        if (m.has_badge) {
          common::TagT t;
          t.label = m.label.value_or("");
          t.weight = m.weight;
          r.setBadge(std::move(t));
        } else {
          r.clearBadge();
        }
        break;
    }
  }

  // Touches each field group with probability `p`, in the model and in the request.
  void randomFields(double p, ModelMonster& m, MonsterChangeRequest& r) {
    for (int s = 0; s < kSetterCount; ++s) {
      if (!rng_.chance(p)) continue;
      randomize(static_cast<Setter>(s), m);
      apply(static_cast<Setter>(s), m, r);
    }
  }

 private:
  Rng& rng_;
  int fresh_names_ = 0;
  int emails_ = 0;
};

// Whether `v` (flatstore's reading of a field) is `r` (the model's).
bool sameValue(const Value& v, const RefVal& r) {
  switch (r.kind) {
    case RefVal::Kind::kNull:
      return v.isNull();
    case RefVal::Kind::kInt:
      return v.kind() == Value::Kind::kInteger && v.asInteger() == r.i;
    case RefVal::Kind::kReal:
      return v.kind() == Value::Kind::kReal && v.asReal() == r.r;
    case RefVal::Kind::kText:
      return v.kind() == Value::Kind::kText && v.asText() == r.s;
  }
  return false;
}

// Empty when `e` holds exactly what the model says; otherwise what differs.
std::string contentDiff(const MonsterEntity& e, const ModelMonster& m) {
  std::string out;
  for (int i = 0; i < kFieldCount; ++i) {
    Fld f = static_cast<Fld>(i);
    Value v = withField(f, [&](const auto& fd) { return fd.valueIn(e); });
    RefVal r = refValue(m, f);
    if (!sameValue(v, r)) {
      absl::StrAppend(&out, " ", fieldPath(f), ": stored ", v.toString(), ", model ", describe(r),
                      ";");
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Changes inside a transaction, mirrored in the model.

struct Context {
  uint64_t seed;
  std::string phase;
  std::string where() const {
    return absl::StrCat("seed ", seed, " (rerun with FLATSTORE_DIFF_SEED=", seed, "), ", phase);
  }
};

template <class K>
K pickKey(Rng& rng, const std::map<K, ModelMonster>& model) {
  auto it = model.begin();
  std::advance(it, static_cast<long>(rng.below(model.size())));
  return it->first;
}

// Submits one random change through `txn`, checks its outcome and applies it to `model`.
// Objects it creates get sort ids from `next_sort_id` (nullptr: 0, assigned later from
// the committed rowids).
void mutate(const Context& ctx, TransactionContext& txn, ModelMap& model, DataGen& gen, Rng& rng,
            int64_t* next_sort_id) {
  size_t k = rng.below(100);
  if (model.empty()) k = 0;
  auto newSortId = [&] { return next_sort_id == nullptr ? 0 : (*next_sort_id)++; };
  auto lookUp = [&](const Key& key) -> EntityPtr {
    auto got = txn.get<Monster>(key.first, key.second);
    if (!got.ok() || *got == nullptr) {
      ADD_FAILURE() << ctx.where() << ": get(" << escaped(key.first) << ", " << key.second
                    << ") of a live object: "
                    << (got.ok() ? "null" : std::string(got.status().message()));
      return nullptr;
    }
    std::string diff = contentDiff(**got, model.at(key));
    EXPECT_EQ(diff, "") << ctx.where() << ": get(" << escaped(key.first) << ", " << key.second
                        << ") returned other content";
    return *got;
  };

  if (k < 28) {  // creation; sometimes of a taken key
    bool taken = rng.chance(0.1) && !model.empty();
    Key key = taken ? pickKey(rng, model) : gen.freshKey(model);
    ModelMonster m;
    m.name = key.first;
    m.realm = key.second;
    auto r = MonsterChangeRequest::creation();
    r.setName(m.name).setRealm(m.realm);
    gen.randomFields(0.7, m, r);
    auto outcome = txn.submit(r);
    if (taken) {
      EXPECT_EQ(outcome.status().code(), absl::StatusCode::kAlreadyExists)
          << ctx.where() << ": creation of the taken key " << escaped(key.first) << ", "
          << key.second;
      return;
    }
    if (!outcome.ok() || *outcome != SubmitOutcome::kInserted) {
      ADD_FAILURE() << ctx.where() << ": creation of " << describe(m) << ": "
                    << (outcome.ok() ? "not kInserted" : outcome.status().ToString());
      return;
    }
    m.sort_id = newSortId();
    model[key] = std::move(m);
  } else if (k < 58) {  // change of a live object, sometimes of its primary key
    Key key = pickKey(rng, model);
    EntityPtr current = lookUp(key);
    if (current == nullptr) return;
    ModelMonster m = model.at(key);
    auto r = MonsterChangeRequest::changeOf(*current);
    gen.randomFields(0.3, m, r);
    if (rng.chance(0.12)) {
      Key new_key = gen.freshKey(model);
      m.name = new_key.first;
      m.realm = new_key.second;
      r.setName(m.name).setRealm(m.realm);
    } else if (rng.chance(0.05)) {
      r.setName(m.name);  // touches the key without changing it
    }
    bool changed = !sameContent(m, model.at(key));
    auto outcome = txn.submit(r);
    if (!outcome.ok() || (changed && *outcome != SubmitOutcome::kUpdated) ||
        (!changed && *outcome != SubmitOutcome::kUpdated &&
         *outcome != SubmitOutcome::kUnchanged)) {
      ADD_FAILURE() << ctx.where() << ": change of " << describe(model.at(key)) << " into "
                    << describe(m) << ": "
                    << (outcome.ok() ? absl::StrCat("outcome ", static_cast<int>(*outcome))
                                     : outcome.status().ToString());
      return;
    }
    model.erase(key);
    model[m.key()] = std::move(m);
  } else if (k < 70) {  // upsert of a live or a new key
    bool live = rng.chance(0.5);
    Key key = live ? pickKey(rng, model) : gen.freshKey(model);
    ModelMonster m;
    if (live) {
      m = model.at(key);
    } else {
      m.name = key.first;
      m.realm = key.second;
    }
    auto r = MonsterChangeRequest::upsert();
    r.setName(key.first).setRealm(key.second);
    gen.randomFields(0.4, m, r);
    bool changed = !live || !sameContent(m, model.at(key));
    auto outcome = txn.submit(r);
    bool ok = outcome.ok() && (live ? (*outcome == SubmitOutcome::kUpdated ||
                                       (!changed && *outcome == SubmitOutcome::kUnchanged))
                                    : *outcome == SubmitOutcome::kInserted);
    if (!ok) {
      ADD_FAILURE() << ctx.where() << ": upsert of " << describe(m) << " (live " << live << "): "
                    << (outcome.ok() ? absl::StrCat("outcome ", static_cast<int>(*outcome))
                                     : outcome.status().ToString());
      return;
    }
    if (!live) m.sort_id = newSortId();
    model[key] = std::move(m);
  } else if (k < 90) {  // deletion by key or of a fetched object
    Key key = pickKey(rng, model);
    absl::StatusOr<SubmitOutcome> outcome;
    if (rng.chance(0.5)) {
      outcome = txn.submit(MonsterChangeRequest::deletion(key.first, key.second));
    } else {
      EntityPtr current = lookUp(key);
      if (current == nullptr) return;
      outcome = txn.submit(MonsterChangeRequest::deletionOf(*current));
    }
    if (!outcome.ok() || *outcome != SubmitOutcome::kDeleted) {
      ADD_FAILURE() << ctx.where() << ": deletion of " << describe(model.at(key)) << ": "
                    << (outcome.ok() ? "not kDeleted" : outcome.status().ToString());
      return;
    }
    model.erase(key);
  } else {  // deletion of a missing key
    Key key = gen.freshKey(model);
    auto outcome = txn.submit(MonsterChangeRequest::deletion(key.first, key.second));
    EXPECT_EQ(outcome.status().code(), absl::StatusCode::kNotFound)
        << ctx.where() << ": deletion of the missing key " << escaped(key.first) << ", "
        << key.second;
  }
}

// ---------------------------------------------------------------------------------------
// Random queries.

// Typed operand pools per field, drawn from the data plus values around and beyond it.
struct Operands {
  std::map<Fld, std::vector<std::string>> texts;
  std::map<Fld, std::vector<int64_t>> ints;
  std::vector<double> reals;
  std::vector<int64_t> ints_for_reals;

  static Operands from(const ModelMap& model, Rng& rng) {
    Operands o;
    auto span = [](int64_t lo, int64_t hi, std::vector<int64_t> extra) {
      for (int64_t v = lo; v <= hi; ++v) extra.push_back(v);
      return extra;
    };
    constexpr int64_t kMin64 = std::numeric_limits<int64_t>::min();
    constexpr int64_t kMax64 = std::numeric_limits<int64_t>::max();
    o.ints[Fld::kRealm] =
        span(-4, 7,
             {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(), kMin64,
              int64_t{std::numeric_limits<int32_t>::max()} + 1});
    o.ints[Fld::kHp] = span(-6, 13, {99, 100, 101, -32768, 32767, 40000, -40000, kMax64});
    o.ints[Fld::kMana] = span(-4, 9, {149, 150, 151, -32768, 32767, kMin64});
    o.ints[Fld::kDamage] = span(-3, 7, {-32768, 32767});
    o.ints[Fld::kArmor] = span(-1, 6, {kMax64});
    o.ints[Fld::kLevel] = span(-1, 5, {});
    o.ints[Fld::kXp] = std::vector<int64_t>(std::begin(kXps), std::end(kXps));
    o.ints[Fld::kXp].push_back(2);
    o.ints[Fld::kScore] = span(-4, 6, {std::numeric_limits<int32_t>::min()});
    o.ints[Fld::kWeight] = span(-3, 4, {});
    o.ints_for_reals = span(
        -3, 4, {kMax64, kMin64, (int64_t{1} << 53) + 1, int64_t{1} << 53, -(int64_t{1} << 62)});
    for (float c : kCoords) o.reals.push_back(c);
    for (double s : kSpeeds) o.reals.push_back(s);
    for (double d : {0.1, -0.5, 1.0000001, 2.5, kInf, -kInf, -9.3e18, 1e40, kNan, -0.0}) {
      o.reals.push_back(d);
    }

    auto& names = o.texts[Fld::kName];
    for (auto n : kNames) names.emplace_back(n);
    for (const char* s : {"", "a\xff", "orc\x01", "b ", "\xc3", "fresh0"}) names.emplace_back(s);
    auto& emails = o.texts[Fld::kEmail];
    for (const auto& [key, m] : model) {
      if (m.email && rng.chance(0.15)) emails.push_back(*m.email);
    }
    for (auto p : kEmailPrefixes) {
      emails.emplace_back(p);
      emails.push_back(absl::StrCat(av(p), "@"));
      emails.push_back(absl::StrCat(av(p), "@1"));
    }
    for (const char* s : {"", "\xff", "a@~"}) emails.emplace_back(s);
    auto& labels = o.texts[Fld::kLabel];
    for (auto l : kLabels) labels.emplace_back(l);
    for (const char* s : {"", "h"}) labels.emplace_back(s);
    labels.push_back(std::string("gold\0", 5));
    auto& weapons = o.texts[Fld::kWeaponName];
    for (auto w : kWeaponNames) weapons.emplace_back(w);
    for (const char* s : {"", "b", "axe "}) weapons.emplace_back(s);
    return o;
  }
};

enum class Flavor { kSqlOnly, kMemoryOnly, kAny };

struct QueryCase {
  std::vector<NodePtr> wheres;              // one where() call each
  std::vector<std::pair<Fld, bool>> order;  // (field, descending)
  std::optional<int64_t> limit;
  std::optional<int64_t> offset;
  bool check_first = false;

  std::string describe() const {
    std::string out = "fetch<Monster>()";
    for (const auto& w : wheres) absl::StrAppend(&out, ".where(", game::describe(*w), ")");
    for (const auto& [f, desc] : order) {
      absl::StrAppend(&out, ".orderBy(", fieldPath(f), desc ? ".descending())" : ".ascending())");
    }
    if (limit) absl::StrAppend(&out, ".limit(", *limit, ")");
    if (offset) absl::StrAppend(&out, ".offset(", *offset, ")");
    return out;
  }
  // A negative limit or offset: all(), first() and count() must each refuse it.
  bool invalidWindow() const { return (limit && *limit < 0) || (offset && *offset < 0); }
  int size() const {
    int n = static_cast<int>(order.size()) + (limit ? 1 : 0) + (offset ? 1 : 0);
    for (const auto& w : wheres) n += nodeCount(*w);
    return n;
  }
};

template <class V, class U>
Predicate<Monster> compareWith(const Field<Monster, V>& fd, CompareOp op, const U& u) {
  switch (op) {
    case CompareOp::kEq:
      return fd == u;
    case CompareOp::kNe:
      return fd != u;
    case CompareOp::kLt:
      return fd < u;
    case CompareOp::kLe:
      return fd <= u;
    case CompareOp::kGt:
      return fd > u;
    case CompareOp::kGe:
      return fd >= u;
  }
  return fd == u;
}

class QueryGen {
 public:
  QueryGen(Rng* rng, Operands operands) : rng_(*rng), ops_(std::move(operands)) {}

  QueryCase next() {
    QueryCase c;
    size_t f = rng_.below(100);
    Flavor flavor = f < 35 ? Flavor::kSqlOnly : (f < 55 ? Flavor::kMemoryOnly : Flavor::kAny);
    size_t w = rng_.below(100);
    int wheres = w < 5 ? 0 : (w < 15 ? 2 : 1);
    for (int i = 0; i < wheres; ++i) {
      c.wheres.push_back(predicate(static_cast<int>(rng_.below(wheres == 2 ? 3 : 6)), flavor));
    }
    size_t keys = rng_.below(4);
    for (size_t i = 0; i < keys; ++i) c.order.emplace_back(field(flavor), rng_.chance(0.5));
    constexpr int64_t kLimits[] = {0, 1, 2, 3, 5, 10, 25, 100, 1000};
    constexpr int64_t kOffsets[] = {0, 1, 2, 5, 50, 10000};
    size_t window = rng_.below(100);
    if (window >= 40 && window < 70) c.limit = rng_.pick(kLimits);
    if (window >= 70 && window < 85) c.offset = rng_.pick(kOffsets);
    if (window >= 85) {
      c.limit = rng_.pick(kLimits);
      c.offset = rng_.pick(kOffsets);
    }
    // Now and then a negative limit or offset, which every path must refuse.
    if (rng_.chance(0.04)) (rng_.chance(0.5) ? c.limit : c.offset) = -rng_.range(1, 3);
    c.check_first = rng_.chance(0.1);
    return c;
  }

 private:
  enum class LeafKind { kCompare, kIn, kNotIn };

  Fld field(Flavor flavor) {
    while (true) {
      Fld f = static_cast<Fld>(rng_.below(kFieldCount));
      if (flavor == Flavor::kAny || inSql(f) == (flavor == Flavor::kSqlOnly)) return f;
    }
  }

  NodePtr predicate(int depth, Flavor flavor) {
    if (depth == 0 || rng_.chance(0.25)) return leaf(flavor);
    size_t k = rng_.below(10);
    if (k < 4) return andNode(predicate(depth - 1, flavor), predicate(depth - 1, flavor));
    if (k < 8) return orNode(predicate(depth - 1, flavor), predicate(depth - 1, flavor));
    return notNode(predicate(depth - 1, flavor));
  }

  NodePtr leaf(Flavor flavor) {
    size_t k = rng_.below(100);
    if (k < 4) return trueNode();
    Fld f = field(flavor);
    if (k < 16) {
      auto n = std::make_shared<RefExpr>();
      n->field = f;
      n->kind = k < 10 ? RefExpr::Kind::kIsNull : RefExpr::Kind::kIsNotNull;
      n->pred = withField(f, [&](const auto& fd) {
        return n->kind == RefExpr::Kind::kIsNull ? fd.isNull() : fd.isNotNull();
      });
      return n;
    }
    LeafKind kind = k < 62 ? LeafKind::kCompare : (k < 82 ? LeafKind::kIn : LeafKind::kNotIn);
    auto op = static_cast<CompareOp>(rng_.below(6));
    size_t n = kind == LeafKind::kCompare ? 1 : (rng_.chance(0.15) ? 0 : 1 + rng_.below(4));
    return withField(f, [&](const auto& fd) { return typedLeaf(fd, f, kind, op, n); });
  }

  // Draws `n` operands of a C++ type the field accepts (several types per field, so
  // conversions are exercised) and builds the leaf.
  template <class V>
  NodePtr typedLeaf(const Field<Monster, V>& fd, Fld f, LeafKind kind, CompareOp op, size_t n) {
    std::vector<RefVal> refs;
    if constexpr (std::is_same_v<V, std::string_view>) {
      std::vector<std::string> us;
      for (size_t i = 0; i < n; ++i) {
        us.push_back(rng_.pick(ops_.texts.at(f)));
        refs.push_back(refText(us.back()));
      }
      if (rng_.chance(0.5)) return finishLeaf(fd, f, kind, op, us, std::move(refs));
      std::vector<std::string_view> views(us.begin(), us.end());
      return finishLeaf(fd, f, kind, op, views, std::move(refs));
    } else if constexpr (std::is_same_v<V, bool>) {
      std::vector<bool> us;
      for (size_t i = 0; i < n; ++i) {
        us.push_back(rng_.chance(0.5));
        refs.push_back(refInt(us.back() ? 1 : 0));
      }
      return finishLeaf(fd, f, kind, op, us, std::move(refs));
    } else if constexpr (std::is_enum_v<V>) {
      constexpr V kColors[] = {V::Red, V::Green, V::Blue, static_cast<V>(3), static_cast<V>(-1)};
      std::vector<V> us;
      for (size_t i = 0; i < n; ++i) {
        us.push_back(rng_.chance(0.9) ? kColors[rng_.below(3)] : rng_.pick(kColors));
        refs.push_back(refInt(static_cast<int64_t>(us.back())));
      }
      return finishLeaf(fd, f, kind, op, us, std::move(refs));
    } else if constexpr (std::is_same_v<V, uint64_t>) {
      if (rng_.chance(0.7)) {
        std::vector<uint64_t> us;
        for (size_t i = 0; i < n; ++i) {
          us.push_back(rng_.chance(0.85) ? rng_.pick(kBigs) : uint64_t{3});
          refs.push_back(refInt(static_cast<int64_t>(us.back())));
        }
        return finishLeaf(fd, f, kind, op, us, std::move(refs));
      }
      constexpr int64_t kSigned[] = {
          -1, 0, 42, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), -2};
      std::vector<int64_t> us;
      for (size_t i = 0; i < n; ++i) {
        us.push_back(rng_.pick(kSigned));
        refs.push_back(refInt(us.back()));
      }
      return finishLeaf(fd, f, kind, op, us, std::move(refs));
    } else if constexpr (std::is_integral_v<V>) {
      std::vector<int64_t> wide;
      for (size_t i = 0; i < n; ++i) {
        wide.push_back(rng_.pick(ops_.ints.at(f)));
        refs.push_back(refInt(wide.back()));
      }
      auto fits = [&](auto probe) {
        using P = decltype(probe);
        return std::all_of(wide.begin(), wide.end(), [](int64_t v) {
          return v >= std::numeric_limits<P>::min() && v <= std::numeric_limits<P>::max();
        });
      };
      size_t t = rng_.below(10);
      if (t < 3 && fits(V{})) {
        return finishLeaf(fd, f, kind, op, std::vector<V>(wide.begin(), wide.end()),
                          std::move(refs));
      }
      if (t < 6 && fits(int{})) {
        return finishLeaf(fd, f, kind, op, std::vector<int>(wide.begin(), wide.end()),
                          std::move(refs));
      }
      return finishLeaf(fd, f, kind, op, wide, std::move(refs));
    } else {
      static_assert(std::is_floating_point_v<V>);
      size_t t = rng_.below(10);
      if (t < 3) {  // integer operands of a floating-point field
        std::vector<int64_t> us;
        for (size_t i = 0; i < n; ++i) {
          us.push_back(rng_.pick(ops_.ints_for_reals));
          refs.push_back(refInt(us.back()));
        }
        return finishLeaf(fd, f, kind, op, us, std::move(refs));
      }
      std::vector<double> ds;
      for (size_t i = 0; i < n; ++i) ds.push_back(rng_.pick(ops_.reals));
      bool as_float =
          t < 5 && std::all_of(ds.begin(), ds.end(), [](double d) {
            return std::abs(d) <= std::numeric_limits<float>::max() || !std::isfinite(d);
          });
      if (as_float) {
        std::vector<float> us(ds.begin(), ds.end());
        for (float u : us) refs.push_back(refReal(static_cast<double>(u)));
        return finishLeaf(fd, f, kind, op, us, std::move(refs));
      }
      for (double d : ds) refs.push_back(refReal(d));
      return finishLeaf(fd, f, kind, op, ds, std::move(refs));
    }
  }

  template <class V, class U>
  NodePtr finishLeaf(const Field<Monster, V>& fd, Fld f, LeafKind kind, CompareOp op,
                     const std::vector<U>& us, std::vector<RefVal> refs) {
    auto n = std::make_shared<RefExpr>();
    n->field = f;
    n->op = op;
    n->operands = std::move(refs);
    bool braces = us.size() == 2 && rng_.chance(0.5);  // the initializer_list overloads
    switch (kind) {
      case LeafKind::kCompare:
        n->kind = RefExpr::Kind::kCompare;
        n->pred = compareWith(fd, op, static_cast<U>(us[0]));
        break;
      case LeafKind::kIn:
        n->kind = RefExpr::Kind::kIn;
        n->pred = braces ? fd.in({static_cast<U>(us[0]), static_cast<U>(us[1])}) : fd.in(us);
        break;
      case LeafKind::kNotIn:
        n->kind = RefExpr::Kind::kNotIn;
        n->pred = braces ? fd.notIn({static_cast<U>(us[0]), static_cast<U>(us[1])}) : fd.notIn(us);
        break;
    }
    return n;
  }

  Rng& rng_;
  Operands ops_;
};

// ---------------------------------------------------------------------------------------
// The three answers.

using Answer = std::vector<Key>;

// (3): the model, the reference tree, SQLite's ordering.
Answer referenceAnswer(const ModelMap& model, const QueryCase& c) {
  struct Row {
    const ModelMonster* m;
    std::vector<RefVal> keys;
  };
  std::vector<Row> rows;
  for (const auto& [key, m] : model) {
    bool keep = std::all_of(c.wheres.begin(), c.wheres.end(),
                            [&](const NodePtr& w) { return refEval(*w, m) == Tri::kTrue; });
    if (!keep) continue;
    Row r{&m, {}};
    for (const auto& [f, desc] : c.order) r.keys.push_back(refValue(m, f));
    rows.push_back(std::move(r));
  }
  std::sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    for (size_t i = 0; i < c.order.size(); ++i) {
      int x = refSortCompare(a.keys[i], b.keys[i]);
      if (x != 0) return c.order[i].second ? x > 0 : x < 0;
    }
    return a.m->sort_id < b.m->sort_id;
  });
  size_t begin = std::min(rows.size(), static_cast<size_t>(c.offset.value_or(0)));
  size_t end = c.limit ? std::min(rows.size(), begin + static_cast<size_t>(*c.limit)) : rows.size();
  Answer out;
  for (size_t i = begin; i < end; ++i) out.push_back(rows[i].m->key());
  return out;
}

// (2): flatstore's in-memory evaluation over every object, sorted here. Pending inserts
// (rowid 0) tie-break after every rowid, in the order the unfiltered fetch gave them.
Answer memoryAnswer(const std::vector<EntityPtr>& all, const QueryCase& c) {
  struct Row {
    const MonsterEntity* e;
    int64_t tie;
    std::vector<Value> keys;
  };
  std::vector<Row> rows;
  for (size_t i = 0; i < all.size(); ++i) {
    const MonsterEntity& e = *all[i];
    bool keep = std::all_of(c.wheres.begin(), c.wheres.end(),
                            [&](const NodePtr& w) { return w->pred.matches(e); });
    if (!keep) continue;
    Row r{&e, e.rowid() != 0 ? e.rowid() : kPendingSortBase + static_cast<int64_t>(i), {}};
    for (const auto& [f, desc] : c.order) {
      r.keys.push_back(withField(f, [&](const auto& fd) { return fd.valueIn(e); }));
    }
    rows.push_back(std::move(r));
  }
  std::sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    for (size_t i = 0; i < c.order.size(); ++i) {
      auto x = sortOrder(a.keys[i], b.keys[i]);
      if (x != 0) return c.order[i].second ? x > 0 : x < 0;
    }
    return a.tie < b.tie;
  });
  size_t begin = std::min(rows.size(), static_cast<size_t>(c.offset.value_or(0)));
  size_t end = c.limit ? std::min(rows.size(), begin + static_cast<size_t>(*c.limit)) : rows.size();
  Answer out;
  for (size_t i = begin; i < end; ++i)
    out.emplace_back(std::string(rows[i].e->name()), rows[i].e->realm());
  return out;
}

Query<Monster> buildQuery(Query<Monster> q, const QueryCase& c) {
  for (const auto& w : c.wheres) q.where(w->pred);
  for (const auto& [f, desc] : c.order) {
    q.orderBy(
        withField(f, [&](const auto& fd) { return desc ? fd.descending() : fd.ascending(); }));
  }
  if (c.limit) q.limit(*c.limit);
  if (c.offset) q.offset(*c.offset);
  return q;
}

// (1): the query engine.
absl::StatusOr<Answer> engineAnswer(Query<Monster> base, const QueryCase& c) {
  FLATSTORE_ASSIGN_OR_RETURN(auto result, buildQuery(std::move(base), c).all());
  Answer out;
  for (const auto& e : result) out.emplace_back(std::string(e->name()), e->realm());
  return out;
}

std::string describe(const Answer& a) {
  std::string out = absl::StrCat(a.size(), " [");
  for (size_t i = 0; i < a.size() && i < 40; ++i) {
    absl::StrAppend(&out, i == 0 ? "" : " ", "(", escaped(a[i].first), ",", a[i].second, ")");
  }
  return out + (a.size() > 40 ? " ...]" : "]");
}

struct Stats {
  int queries = 0;
  int in_transactions = 0;
  int sql_only = 0;  // every predicate field and sort key is a key column or index
  int mixed = 0;     // both kinds
  int memory_only = 0;
  int nonempty = 0;
  int empty = 0;
  int windowed = 0;         // with limit or offset
  int invalid_windows = 0;  // with a negative limit or offset
  int failures = 0;
};

// Where queries run: the workspace, or a transaction with its own pending changes.
struct Env {
  Context ctx;
  std::function<Query<Monster>()> fetch;
  const std::vector<EntityPtr>* all;  // every object, as this source sees them
  const ModelMap* model;
};

// What each path answers for `c`; `mismatch` when they differ.
struct Outcome {
  absl::StatusOr<Answer> engine;
  Answer memory;
  Answer reference;
  absl::StatusOr<int64_t> count;
  std::optional<std::string> first_problem;
  bool mismatch() const {
    return !engine.ok() || *engine != reference || memory != reference || !count.ok() ||
           *count != static_cast<int64_t>(reference.size()) || first_problem.has_value();
  }
};

// A negative window: all(), count() and first() each fail with InvalidArgument (the
// answers are then compared as empty).
Outcome invalidWindowAnswer(const Env& env, const QueryCase& c) {
  Outcome o{Answer(), Answer(), Answer(), int64_t{0}, std::nullopt};
  Query<Monster> q = buildQuery(env.fetch(), c);
  std::vector<std::string> problems;
  auto expectRefused = [&](const char* call, const absl::Status& status) {
    if (status.code() != absl::StatusCode::kInvalidArgument ||
        status.message().find("must not be negative") == absl::string_view::npos) {
      problems.push_back(absl::StrCat(call, " returned ", status.ToString()));
    }
  };
  expectRefused("all()", q.all().status());
  expectRefused("count()", q.count().status());
  expectRefused("first()", q.first().status());
  if (!problems.empty()) {
    o.first_problem =
        absl::StrCat("a negative window was not refused: ", absl::StrJoin(problems, "; "));
  }
  return o;
}

Outcome answer(const Env& env, const QueryCase& c) {
  if (c.invalidWindow()) return invalidWindowAnswer(env, c);
  Outcome o{engineAnswer(env.fetch(), c), memoryAnswer(*env.all, c), referenceAnswer(*env.model, c),
            buildQuery(env.fetch(), c).count(), std::nullopt};
  // first() with limit(0) is left to FirstRespectsLimitZero below.
  if (c.check_first && c.limit != 0) {
    auto first = buildQuery(env.fetch(), c).first();
    if (!first.ok()) {
      o.first_problem = first.status().ToString();
    } else if ((*first == nullptr) != o.reference.empty() ||
               (*first != nullptr &&
                Key(std::string((*first)->name()), (*first)->realm()) != o.reference.front())) {
      o.first_problem = absl::StrCat(
          "first() = ", *first == nullptr
                            ? "null"
                            : absl::StrCat(escaped((*first)->name()), ",", (*first)->realm()));
    }
  }
  return o;
}

// Greedily simplifies a failing case while it still fails: drops the window, sort keys
// and where() calls, and replaces subtrees by their children or by TRUE.
QueryCase shrink(const Env& env, QueryCase c) {
  auto fails = [&](const QueryCase& q) { return answer(env, q).mismatch(); };
  std::function<std::vector<NodePtr>(const NodePtr&)> smaller = [&](const NodePtr& n) {
    std::vector<NodePtr> out;
    if (n->kind != RefExpr::Kind::kTrue) out.push_back(trueNode());
    if (n->lhs) out.push_back(n->lhs);
    if (n->rhs) out.push_back(n->rhs);
    if (n->kind == RefExpr::Kind::kNot) {
      for (auto& s : smaller(n->lhs)) out.push_back(notNode(s));
    } else if (n->lhs != nullptr) {
      auto make = n->kind == RefExpr::Kind::kAnd ? andNode : orNode;
      for (auto& s : smaller(n->lhs)) out.push_back(make(s, n->rhs));
      for (auto& s : smaller(n->rhs)) out.push_back(make(n->lhs, s));
    }
    return out;
  };
  for (bool progress = true; progress;) {
    progress = false;
    std::vector<QueryCase> candidates;
    if (c.limit) {
      candidates.push_back(c);
      candidates.back().limit.reset();
    }
    if (c.offset) {
      candidates.push_back(c);
      candidates.back().offset.reset();
    }
    for (size_t i = 0; i < c.order.size(); ++i) {
      candidates.push_back(c);
      candidates.back().order.erase(candidates.back().order.begin() + static_cast<long>(i));
    }
    for (size_t i = 0; i < c.wheres.size(); ++i) {
      candidates.push_back(c);
      candidates.back().wheres.erase(candidates.back().wheres.begin() + static_cast<long>(i));
      for (auto& s : smaller(c.wheres[i])) {
        candidates.push_back(c);
        candidates.back().wheres[i] = s;
      }
    }
    for (const auto& candidate : candidates) {
      if (candidate.size() < c.size() && fails(candidate)) {
        c = candidate;
        progress = true;
        break;
      }
    }
  }
  return c;
}

// Runs `c` three ways and reports a disagreement, shrunk, with the objects involved.
void check(const Env& env, const QueryCase& c, Stats& stats) {
  ++stats.queries;
  std::vector<Fld> fields;
  for (const auto& w : c.wheres) collectFields(*w, &fields);
  for (const auto& [f, desc] : c.order) fields.push_back(f);
  size_t sql = static_cast<size_t>(std::count_if(fields.begin(), fields.end(), inSql));
  if (sql == fields.size()) {
    ++stats.sql_only;
  } else if (sql == 0) {
    ++stats.memory_only;
  } else {
    ++stats.mixed;
  }
  if (c.limit || c.offset) ++stats.windowed;
  if (c.invalidWindow()) ++stats.invalid_windows;

  Outcome o = answer(env, c);
  (o.reference.empty() ? stats.empty : stats.nonempty)++;
  if (!o.mismatch()) return;
  if (++stats.failures > kMaxReportedFailures) return;

  QueryCase small = shrink(env, c);
  Outcome s = answer(env, small);
  std::set<Key> involved;
  auto note = [&](const Answer& a) {
    for (size_t i = 0; i < a.size(); ++i) {
      bool agrees = i < s.reference.size() && s.reference[i] == a[i];
      if (!agrees) involved.insert(a[i]);
      if (i < s.reference.size() && !agrees) involved.insert(s.reference[i]);
    }
    for (size_t i = a.size(); i < s.reference.size(); ++i) involved.insert(s.reference[i]);
  };
  if (s.engine.ok()) note(*s.engine);
  note(s.memory);
  std::string objects;
  for (const Key& k : involved) {
    if (objects.size() > 4000) break;
    auto it = env.model->find(k);
    absl::StrAppend(&objects, "\n    ",
                    it == env.model->end()
                        ? absl::StrCat("not in the model: ", escaped(k.first), ",", k.second)
                        : describe(it->second));
  }
  ADD_FAILURE() << env.ctx.where() << ": the three answers differ\n  query: " << c.describe()
                << "\n  shrunk: " << small.describe() << "\n  (1) query engine: "
                << (s.engine.ok() ? describe(*s.engine) : s.engine.status().ToString())
                << "\n  (2) in memory:    " << describe(s.memory)
                << "\n  (3) reference:    " << describe(s.reference) << "\n  count(): "
                << (s.count.ok() ? absl::StrCat(*s.count) : s.count.status().ToString())
                << (s.first_problem ? "\n  " + *s.first_problem : "")
                << "\n  objects involved:" << objects;
}

std::vector<Key> keysOf(const std::vector<EntityPtr>& all) {
  std::vector<Key> out;
  for (const auto& e : all) out.emplace_back(std::string(e->name()), e->realm());
  return out;
}

// Every object of `all` matches the model, and the model has no other object.
void checkContents(const Context& ctx, const std::vector<EntityPtr>& all, const ModelMap& model) {
  EXPECT_EQ(all.size(), model.size()) << ctx.where() << ": objects fetched vs model";
  for (const auto& e : all) {
    Key k(std::string(e->name()), e->realm());
    auto it = model.find(k);
    if (it == model.end()) {
      ADD_FAILURE() << ctx.where() << ": fetched an object the model lacks: " << escaped(k.first)
                    << ", " << k.second;
      continue;
    }
    std::string diff = contentDiff(*e, it->second);
    EXPECT_EQ(diff, "") << ctx.where() << ": content of " << escaped(k.first) << ", " << k.second;
  }
}

// The failures of a closure's last run. A closure may run more than once (on SQLite a
// creation takes its key as free, and when the key was taken the closure runs again
// looking each key up), and only its last run stands: each run records its failures
// here instead of reporting them, and report() reports those of the last run.
class LastRun {
 public:
  // At the start of each run, on the closure's thread; the run's failures go to the
  // returned reporter's array until it is destroyed.
  std::unique_ptr<::testing::ScopedFakeTestPartResultReporter> start() {
    results_ = std::make_unique<::testing::TestPartResultArray>();
    return std::make_unique<::testing::ScopedFakeTestPartResultReporter>(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, results_.get());
  }
  void report() const {
    if (results_ == nullptr) return;
    for (int i = 0; i < results_->size(); ++i) {
      const ::testing::TestPartResult& r = results_->GetTestPartResult(i);
      ADD_FAILURE_AT(r.file_name() != nullptr ? r.file_name() : "unknown", r.line_number())
          << r.message();
    }
  }

 private:
  std::unique_ptr<::testing::TestPartResultArray> results_;
};

void runSeed(uint64_t seed, const Budget& budget = {}) {
  Context ctx{seed, "setup"};
  Rng rng(seed);
  TempDir dir;
  // FLATSTORE_DIFF_DB_DIR=<dir> keeps the database there, to look at after a failure.
  const char* keep = std::getenv("FLATSTORE_DIFF_DB_DIR");
  std::string path =
      keep != nullptr ? absl::StrCat(keep, "/diff-", seed, ".db") : dir.file("diff.db");
  auto opened = Workspace::open(path);
  ASSERT_OK(opened);
  std::unique_ptr<Workspace> ws = std::move(*opened);
  DataGen gen(&rng);
  ModelMap model;

  // Insert the objects in a few transactions, then commit one round of mixed changes
  // (updates, key changes, upserts, deletions) so indexes have been rewritten too.
  int64_t objects = rng.range(budget.min_objects, budget.max_objects);
  while (static_cast<int64_t>(model.size()) < objects) {
    int64_t batch =
        std::min<int64_t>(rng.range(1, 80), objects - static_cast<int64_t>(model.size()));
    auto inserted = ws->performChangesAndWait<Monster>([&](TransactionContext& txn) {
      for (int64_t i = 0; i < batch; ++i) {
        ModelMonster m;
        std::tie(m.name, m.realm) = gen.freshKey(model);
        auto r = MonsterChangeRequest::creation();
        r.setName(m.name).setRealm(m.realm);
        gen.randomFields(0.7, m, r);
        auto outcome = txn.submit(r);
        if (!outcome.ok()) return outcome.status();
        model[m.key()] = std::move(m);
      }
      return absl::OkStatus();
    });
    ASSERT_OK(inserted);
  }
  ctx.phase = "committed changes";
  LastRun committed_run;
  ModelMap changed_model;
  auto changed = ws->performChangesAndWait<Monster>([&](TransactionContext& txn) {
    auto intercepted = committed_run.start();
    changed_model = model;
    for (int i = 0; i < budget.committed_mutations; ++i) {
      mutate(ctx, txn, changed_model, gen, rng, nullptr);
    }
    return absl::OkStatus();
  });
  committed_run.report();
  ASSERT_OK(changed);
  model = std::move(changed_model);
  ASSERT_FALSE(::testing::Test::HasFailure());

  // Read the rowids back once; check the stored objects against the model.
  auto fetched = ws->fetch<Monster>().all();
  ASSERT_OK(fetched);
  std::vector<EntityPtr> all = fetched->objects();
  for (const auto& e : all) {
    auto it = model.find(Key(std::string(e->name()), e->realm()));
    if (it != model.end()) it->second.sort_id = e->rowid();
  }
  ctx.phase = "stored objects";
  checkContents(ctx, all, model);
  ctx.phase = "summary";
  ASSERT_FALSE(::testing::Test::HasFailure());
  for (size_t i = 1; i < all.size(); ++i) {
    ASSERT_LT(all[i - 1]->rowid(), all[i]->rowid()) << "an unordered fetch is in rowid order";
  }

  Stats stats;
  QueryGen queries(&rng, Operands::from(model, rng));
  Env committed{{seed, "committed data"}, [&] { return ws->fetch<Monster>(); }, &all, &model};
  for (int i = 0; i < budget.queries; ++i) check(committed, queries.next(), stats);

  // Queries inside transactions, after the closure's own changes; then abort.
  for (int t = 0; t < budget.transactions; ++t) {
    Context tctx{seed, absl::StrCat("transaction ", t)};
    LastRun last_run;
    Stats run_stats;
    auto done = ws->performChangesAndWait<Monster>([&](TransactionContext& txn) {
      auto intercepted = last_run.start();
      run_stats = stats;
      ModelMap pending = model;
      int64_t next_sort_id = kPendingSortBase;
      for (int i = 0; i < budget.transaction_mutations; ++i) {
        mutate(tctx, txn, pending, gen, rng, &next_sort_id);
      }
      auto seen = txn.fetch<Monster>().all();
      if (!seen.ok()) {
        ADD_FAILURE() << tctx.where() << ": fetch of everything: " << seen.status();
        return txn.abort();
      }
      std::vector<EntityPtr> txn_all = seen->objects();
      checkContents(tctx, txn_all, pending);
      Env env{tctx, [&] { return txn.fetch<Monster>(); }, &txn_all, &pending};
      for (int i = 0; i < budget.transaction_queries; ++i) {
        ++run_stats.in_transactions;
        check(env, queries.next(), run_stats);
      }
      return txn.abort("the differential test leaves the data unchanged");
    });
    last_run.report();
    stats = run_stats;
    EXPECT_EQ(done.status().code(), absl::StatusCode::kAborted) << tctx.where();
  }

  // The aborted transactions left the data as it was.
  auto after = ws->fetch<Monster>().all();
  ASSERT_OK(after);
  EXPECT_EQ(keysOf(after->objects()), keysOf(all)) << ctx.where();

  std::cout << "seed " << seed << ": " << model.size() << " objects, " << stats.queries
            << " queries (" << stats.in_transactions << " in transactions; " << stats.sql_only
            << " all-SQL, " << stats.mixed << " mixed, " << stats.memory_only << " all-memory; "
            << stats.windowed << " with limit/offset, " << stats.invalid_windows
            << " of them negative; " << stats.nonempty << " non-empty, " << stats.empty
            << " empty), " << stats.failures << " disagreements\n";
  EXPECT_EQ(stats.failures, 0) << ctx.where();
  // The generator must produce queries that discriminate: a share of each kind, and
  // results that are neither always empty nor always everything.
  EXPECT_GE(stats.sql_only, stats.queries / 5);
  EXPECT_GE(stats.mixed, stats.queries / 10);
  EXPECT_GE(stats.memory_only, stats.queries / 10);
  EXPECT_GE(stats.nonempty, stats.queries / 4);
  EXPECT_GE(stats.empty, stats.queries / 20);
  EXPECT_GE(stats.invalid_windows, stats.queries / 100);
}

class QueryDifferentialTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(QueryDifferentialTest, ThreeAnswersAgree) { runSeed(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Seeds, QueryDifferentialTest,
                         ::testing::Values(uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{4}));

TEST(QueryDifferentialSeed, FromEnvironment) {
  const char* seed = std::getenv("FLATSTORE_DIFF_SEED");
  if (seed == nullptr) GTEST_SKIP() << "set FLATSTORE_DIFF_SEED=<n> to run one seed";
  runSeed(std::strtoull(seed, nullptr, 10));
}

// Minimized from the random test; they name the rule that broke.

class QueryDifferentialMinimal : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ws = Workspace::open(dir_.file("min.db"));
    ASSERT_OK(ws);
    ws_ = std::move(*ws);
    // a: realm 1, hp 2; b: realm 2, hp 5.
    auto done = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
      auto a = MonsterChangeRequest::creation();
      a.setName("a").setRealm(1).setHp(2);
      FLATSTORE_RETURN_IF_ERROR(txn.submit(a).status());
      auto b = MonsterChangeRequest::creation();
      b.setName("b").setRealm(2).setHp(5);
      return txn.submit(b).status();
    });
    ASSERT_OK(done);
  }
  // The names the engine returns for `p`, and those flatstore's in-memory evaluation
  // keeps; both in rowid order.
  std::pair<std::vector<std::string>, std::vector<std::string>> answers(
      const Predicate<Monster>& p) {
    std::pair<std::vector<std::string>, std::vector<std::string>> out;
    auto engine = ws_->fetch<Monster>().where(p).all();
    EXPECT_OK(engine);
    if (engine.ok()) {
      for (const auto& e : *engine) out.first.emplace_back(e->name());
    }
    auto all = ws_->fetch<Monster>().all();
    EXPECT_OK(all);
    if (all.ok()) {
      for (const auto& e : *all) {
        if (p.matches(*e)) out.second.emplace_back(e->name());
      }
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Workspace> ws_;
};

// Both sides of an OR (or of an AND under NOT, which is not split into where terms)
// carry a bound parameter: the parameters must be bound in the order their `?`
// placeholders appear in the SQL text.
TEST_F(QueryDifferentialMinimal, OrBindsParametersInOrder) {
  using Names = std::vector<std::string>;
  auto [engine, memory] = answers(F::hp == 1 || F::realm == 2);
  EXPECT_EQ(memory, Names{"b"});
  EXPECT_EQ(engine, memory);
}

TEST_F(QueryDifferentialMinimal, AndUnderNotBindsParametersInOrder) {
  using Names = std::vector<std::string>;
  auto [engine, memory] = answers(!(F::hp == 1 && F::realm == 2));
  EXPECT_EQ(memory, (Names{"a", "b"}));
  EXPECT_EQ(engine, memory);
}

// first() is the first object all() would return, so limit(0) leaves nothing.
TEST_F(QueryDifferentialMinimal, FirstRespectsLimitZero) {
  auto all = ws_->fetch<Monster>().limit(0).all();
  ASSERT_OK(all);
  EXPECT_TRUE(all->empty());
  auto first = ws_->fetch<Monster>().limit(0).first();
  ASSERT_OK(first);
  EXPECT_TRUE(*first == nullptr) << "first() returned " << escaped((*first)->name());
}

// count() checks its window as all() does, on the SQL path, the in-memory path and
// inside a transaction with pending changes.
TEST_F(QueryDifferentialMinimal, CountRefusesANegativeWindowAsAllDoes) {
  auto expectRefused = [](const Query<Monster>& q, const char* what) {
    auto all = q.all();
    auto count = q.count();
    EXPECT_EQ(all.status().code(), absl::StatusCode::kInvalidArgument) << what;
    EXPECT_EQ(count.status().code(), absl::StatusCode::kInvalidArgument)
        << what << ": count() = " << (count.ok() ? absl::StrCat(*count) : "error");
    EXPECT_THAT(std::string(count.status().message()), ::testing::HasSubstr("must not be negative"))
        << what;
  };
  expectRefused(ws_->fetch<Monster>().offset(-3), "SQL, offset -3");
  expectRefused(ws_->fetch<Monster>().limit(-1), "SQL, limit -1");
  expectRefused(ws_->fetch<Monster>().where(F::speed > 0.0).offset(-3), "in memory, offset -3");
  expectRefused(ws_->fetch<Monster>().where(F::speed > 0.0).limit(-2), "in memory, limit -2");
  auto done = ws_->performChangesAndWait<Monster>([&](TransactionContext& txn) {
    auto c = MonsterChangeRequest::creation();
    c.setName("c").setRealm(3);
    EXPECT_OK(txn.submit(c));
    expectRefused(txn.fetch<Monster>().offset(-3), "transaction, offset -3");
    expectRefused(txn.fetch<Monster>().where(F::hp > 0).limit(-1), "transaction, limit -1");
    return txn.abort();
  });
  EXPECT_EQ(done.status().code(), absl::StatusCode::kAborted);
  // A window that is not negative still counts.
  EXPECT_EQ(*ws_->fetch<Monster>().offset(1).count(), 1);
  EXPECT_EQ(*ws_->fetch<Monster>().where(F::speed > 0.0).limit(1).count(), 1);
}

// NaN is null in queries (SQLite stores a NaN as NULL), infinities are numbers and -0.0
// equals 0.0: the SQL path (pos.x is indexed), the in-memory path (speed is not),
// Predicate::matches, a transaction's pending view and a subscription all agree.
class QueryRealNumbers : public ::testing::Test {
 protected:
  using Names = std::vector<std::string>;
  struct Case {
    std::string text;
    Predicate<Monster> pos_x;
    Predicate<Monster> speed;
    Names pos_x_names;  // in rowid order
    Names speed_names;
  };

  // In rowid order: pos.x and speed NaN, +inf, -inf, -0.0, 1; then no pos and speed 2.
  static void submitObjects(TransactionContext& txn) {
    const std::pair<const char*, double> kObjects[] = {
        {"nan", kNan}, {"pinf", kInf}, {"ninf", -kInf}, {"nzero", -0.0}, {"one", 1.0}};
    for (const auto& [name, v] : kObjects) {
      auto r = MonsterChangeRequest::creation();
      r.setName(name).setRealm(1).setSpeed(v).setPos(
          common::Vec3(static_cast<float>(v), 0.0f, 0.0f));
      EXPECT_OK(txn.submit(r));
    }
    auto none = MonsterChangeRequest::creation();
    none.setName("none").setRealm(1).setSpeed(2.0);
    EXPECT_OK(txn.submit(none));
  }

  static std::vector<Case> cases() {
    const auto& x = F::pos.x;
    const auto& s = F::speed;
    const Names kNumbers{"pinf", "ninf", "nzero"};  // neither NaN, 1 nor absent
    Names speed_others = kNumbers;
    speed_others.push_back("none");
    return {
        {"== NaN", x == kNan, s == kNan, {}, {}},
        {"!= NaN", x != kNan, s != kNan, {}, {}},
        {"== 0.0", x == 0.0, s == 0.0, {"nzero"}, {"nzero"}},
        {"!= 1", x != 1, s != 1, kNumbers, speed_others},
        {"< 0", x < 0, s < 0, {"ninf"}, {"ninf"}},
        {"<= -0.0", x <= -0.0, s <= -0.0, {"ninf", "nzero"}, {"ninf", "nzero"}},
        {"> 1", x > 1, s > 1, {"pinf"}, {"pinf", "none"}},
        {">= +inf", x >= kInf, s >= kInf, {"pinf"}, {"pinf"}},
        {"isNull", x.isNull(), s.isNull(), {"nan", "none"}, {"nan"}},
        {"isNotNull",
         x.isNotNull(),
         s.isNotNull(),
         {"pinf", "ninf", "nzero", "one"},
         {"pinf", "ninf", "nzero", "one", "none"}},
        {"in {NaN, 1}", x.in({kNan, 1.0}), s.in({kNan, 1.0}), {"one"}, {"one"}},
        {"notIn {NaN, 1}", x.notIn({kNan, 1.0}), s.notIn({kNan, 1.0}), {}, {}},
        {"notIn {1}", x.notIn({1.0}), s.notIn({1.0}), kNumbers, speed_others},
        {"!(== 1)", !(x == 1), !(s == 1), kNumbers, speed_others},
    };
  }

  static Names names(const FetchedResult<Monster>& r) {
    Names out;
    for (const auto& e : r) out.emplace_back(e->name());
    return out;
  }

  void SetUp() override {
    auto ws = Workspace::open(dir_.file("reals.db"));
    ASSERT_OK(ws);
    ws_ = std::move(*ws);
  }

  TempDir dir_;
  std::unique_ptr<Workspace> ws_;
};

TEST_F(QueryRealNumbers, NanIsNullAndInfinitiesAreNumbersOnEveryPath) {
  // Subscriptions made on the empty table place every inserted object in memory.
  std::vector<Names> delivered_x(cases().size());
  std::vector<Names> delivered_speed(cases().size());
  std::vector<SubscriptionToken> tokens;
  for (size_t i = 0; i < cases().size(); ++i) {
    for (bool on_x : {true, false}) {
      auto empty = ws_->fetch<Monster>().where(on_x ? cases()[i].pos_x : cases()[i].speed).all();
      ASSERT_OK(empty);
      Names* out = on_x ? &delivered_x[i] : &delivered_speed[i];
      auto token = ws_->subscribe(
          *empty,
          [out](const FetchedResult<Monster>& latest, const Changeset&) { *out = names(latest); },
          &inlineExecutor());
      ASSERT_OK(token);
      tokens.push_back(std::move(*token));
    }
  }
  ASSERT_OK(ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    submitObjects(txn);
    return absl::OkStatus();
  }));
  ws_->awaitObservers();
  auto all = ws_->fetch<Monster>().all();
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 6u);
  EXPECT_TRUE(std::isnan(all->objects()[0]->speed())) << "the object keeps its NaN";

  for (size_t i = 0; i < cases().size(); ++i) {
    const Case c = cases()[i];
    for (bool on_x : {true, false}) {
      const Predicate<Monster>& p = on_x ? c.pos_x : c.speed;
      const Names& expected = on_x ? c.pos_x_names : c.speed_names;
      std::string what = absl::StrCat(on_x ? "pos.x " : "speed ", c.text);
      auto engine = ws_->fetch<Monster>().where(p).all();
      ASSERT_OK(engine);
      EXPECT_EQ(names(*engine), expected) << what << " (query engine)";
      EXPECT_EQ(*ws_->fetch<Monster>().where(p).count(), static_cast<int64_t>(expected.size()))
          << what << " (count)";
      Names memory;
      for (const auto& e : *all) {
        if (p.matches(*e)) memory.emplace_back(e->name());
      }
      EXPECT_EQ(memory, expected) << what << " (Predicate::matches)";
      EXPECT_EQ(on_x ? delivered_x[i] : delivered_speed[i], expected) << what << " (subscription)";
    }
  }

  // A transaction's own pending objects are evaluated in memory, the rest in SQL.
  auto done = ws_->performChangesAndWait<Monster>([&](TransactionContext& txn) {
    for (const auto& e : *all) {
      auto r = MonsterChangeRequest::changeOf(*e);
      r.setHp(7);
      EXPECT_OK(txn.submit(r));
    }
    for (const Case& c : cases()) {
      for (bool on_x : {true, false}) {
        auto seen = txn.fetch<Monster>().where(on_x ? c.pos_x : c.speed).all();
        EXPECT_OK(seen);
        if (seen.ok()) {
          EXPECT_EQ(names(*seen), on_x ? c.pos_x_names : c.speed_names)
              << (on_x ? "pos.x " : "speed ") << c.text << " (in a transaction)";
        }
      }
    }
    return txn.abort();
  });
  EXPECT_EQ(done.status().code(), absl::StatusCode::kAborted);
}

// Ordering puts NaN with the absent values: first ascending, last descending, ties
// broken by rowid; -inf < -0.0 < 1 < +inf.
TEST_F(QueryRealNumbers, NanSortsWithTheNulls) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    submitObjects(txn);
    return absl::OkStatus();
  }));
  auto order = [&](const Ordering<Monster>& o) {
    auto r = ws_->fetch<Monster>().orderBy(o).all();
    EXPECT_OK(r);
    return r.ok() ? names(*r) : Names{};
  };
  EXPECT_EQ(order(F::pos.x.ascending()), (Names{"nan", "none", "ninf", "nzero", "one", "pinf"}));
  EXPECT_EQ(order(F::pos.x.descending()), (Names{"pinf", "one", "nzero", "ninf", "nan", "none"}));
  EXPECT_EQ(order(F::speed.ascending()), (Names{"nan", "ninf", "nzero", "one", "none", "pinf"}));
  EXPECT_EQ(order(F::speed.descending()), (Names{"pinf", "none", "one", "nzero", "ninf", "nan"}));
}

// From the random test's committed round (seeds 62, 78, 79, 156 fail there): a closure
// updates a, deletes b, then gives a b's primary key. The closure's view is consistent,
// so the commit must succeed; it must not apply a's final state before b's deletion.
TEST_F(QueryDifferentialMinimal, KeyFreedByADeletionCanBeTakenByAnObjectChangedBefore) {
  auto done = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(auto a, txn.get<Monster>("a", 1));
    auto hp = MonsterChangeRequest::changeOf(*a);
    hp.setHp(3);
    FLATSTORE_RETURN_IF_ERROR(txn.submit(hp).status());
    FLATSTORE_RETURN_IF_ERROR(txn.submit(MonsterChangeRequest::deletion("b", 2)).status());
    FLATSTORE_ASSIGN_OR_RETURN(a, txn.get<Monster>("a", 1));
    auto key = MonsterChangeRequest::changeOf(*a);
    key.setName("b").setRealm(2);
    return txn.submit(key).status();
  });
  ASSERT_OK(done);
  auto moved = ws_->get<Monster>("b", 2);
  ASSERT_OK(moved);
  ASSERT_NE(*moved, nullptr);
  EXPECT_EQ((*moved)->hp(), 3);
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 1);
}

}  // namespace
}  // namespace flatstore::test::game
