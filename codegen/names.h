// Name helpers for generated C++: case conversion and keyword escaping.
#ifndef FLATSTORE_CODEGEN_NAMES_H_
#define FLATSTORE_CODEGEN_NAMES_H_

#include <string>
#include <string_view>

namespace flatstore::codegen {

// "hit_points" -> "HitPoints".
std::string upperCamel(std::string_view snake);
// "hit_points" -> "hitPoints"; a C++ keyword gets a trailing underscore.
std::string lowerCamel(std::string_view snake);
// Appends '_' to C++ keywords, as flatc does for its accessors.
std::string escapeKeyword(std::string_view name);
// Quotes `text` as a C++ string literal.
std::string cppStringLiteral(std::string_view text);

}  // namespace flatstore::codegen

#endif  // FLATSTORE_CODEGEN_NAMES_H_
