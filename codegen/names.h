// Name helpers for generated C++: case conversion and keyword escaping.
#ifndef FLATSTORE_CODEGEN_NAMES_H_
#define FLATSTORE_CODEGEN_NAMES_H_

#include <string>
#include <string_view>

namespace flatstore::codegen {

// "hit_points" -> "HitPoints".
std::string upperCamel(std::string_view snake);
// "hit_points" -> "hitPoints", never escaped: the stem of compound names such as
// "hitPointsType" and "equippedAsWeapon".
std::string camelStem(std::string_view snake);
// camelStem(), with a trailing '_' when that is a C++ keyword.
std::string lowerCamel(std::string_view snake);
// The name of a field's accessor on the entity class and of its descriptor in the
// field structs: lowerCamel(), with a trailing '_' also when that is a member the
// entity class already has (bytes, data, rowid, versionstamp, view, unpack,
// description, fromBytes, fromVerified).
std::string memberName(std::string_view field_name);
// The name flatc gives a schema identifier in C++ (an accessor, an object-API member, an
// enum value): the identifier itself, with '_' appended when it is on flatc's keyword
// list (which has `module` and `import`, and lacks a few C++20 keywords).
std::string flatcName(std::string_view name);
// Appends '_' to a name flatstore derives when it is a C++ keyword: flatc's list and the
// C++20 keywords flatc's list lacks.
std::string escapeKeyword(std::string_view name);
// Quotes `text` as a C++ string literal.
std::string cppStringLiteral(std::string_view text);

}  // namespace flatstore::codegen

#endif  // FLATSTORE_CODEGEN_NAMES_H_
