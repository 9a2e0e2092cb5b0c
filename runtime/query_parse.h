// Query expressions as text, for the `flatstore` tool's `dump --where`:
//
//   hp > 10 and color == Red
//   equipped.Weapon.damage in (3, 4) or not (name == "orc")
//   email is null
//
// The parser builds the same ExprNode tree the typed API builds (fetch.h, query.h), over
// the FieldInfos of a DynamicTable, so a parsed query runs through executeQuery with the
// same plan and answers as the typed one.
//
// Grammar (keywords in any case; `&&`, `||`, `!` and `=` `<>` are accepted too):
//   expr    := and ("or" and)*
//   and     := unary ("and" unary)*
//   unary   := "not" unary | "(" expr ")" | term
//   term    := path op literal | path ["not"] "in" "(" [literal ("," literal)*] ")"
//            | path "is" ["not"] "null"
//   op      := "==" | "!=" | "<" | "<=" | ">" | ">="
//   literal := integer | real | "string" | 'string' | true | false | EnumValueName
// Operands are checked like the typed API's: a string field takes strings, a number
// field numbers (an integer field integers), an enum field its value names or
// integers, a bool field true or false.
#ifndef FLATSTORE_RUNTIME_QUERY_PARSE_H_
#define FLATSTORE_RUNTIME_QUERY_PARSE_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "flatstore/query.h"
#include "runtime/dynamic_table.h"

namespace flatstore::internal {

// Parses `text` against `table`. InvalidArgument naming the position (1-based column)
// and what was expected, or the field or operand that does not fit.
absl::StatusOr<std::shared_ptr<const ExprNode>> parseQueryExpression(DynamicTable& table,
                                                                     std::string_view text);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_QUERY_PARSE_H_
