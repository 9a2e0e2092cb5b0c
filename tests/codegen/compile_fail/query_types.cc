// Queries that compare a field with a value of the wrong type must not compile.
// Built once per FLATSTORE_CASE by the `compile_fail_*` tests: case 0 is the control
// (well-typed queries that must compile); every other case must fail to compile with an
// error about the comparison, not about something else.
#include "game_flatstore.h"

using flatstore::test::game::Color;
using flatstore::test::game::Monster;
using F = flatstore::test::game::MonsterFields;
using E = flatstore::test::game::EventFields;

int main() {
#if FLATSTORE_CASE == 0
  flatstore::Predicate<Monster> p = F::hp > 10 && F::name == "orc" && F::color == Color::Red &&
                                    F::speed < 2 && F::speed > 1.5 && F::alive == true &&
                                    F::pos.x < 1 && F::name.in({"a", "b"});
  return p.node().kind == flatstore::internal::ExprNode::Kind::kAnd ? 0 : 1;
#elif FLATSTORE_CASE == 1
  auto p = F::hp > "ten";  // an integer field with a string
#elif FLATSTORE_CASE == 2
  auto p = F::name == 42;  // a string field with an integer
#elif FLATSTORE_CASE == 3
  auto p = F::color == 2;  // an enum field with an integer
#elif FLATSTORE_CASE == 4
  auto p = F::hp < 2.5;  // an integer field with a floating-point value
#elif FLATSTORE_CASE == 5
  auto p = F::alive == 1;  // a bool field with an integer
#elif FLATSTORE_CASE == 6
  auto p = F::hp > 1 && E::at > 1;  // predicates over two different entities
#elif FLATSTORE_CASE == 7
  auto p = F::name.in({1, 2});  // `in` with the wrong element type
#endif
#if FLATSTORE_CASE != 0
  (void)p;
  return 0;
#endif
}
