#include "codegen/names.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>

namespace flatstore::codegen {
namespace {

// flatc's C++ keyword list (FlatBuffers 2.x, idl_gen_cpp.cpp): the names flatc writes
// with a trailing '_'. Accessors of flatc's classes are called by these spellings, so the
// list must be flatc's own, not the language's.
constexpr std::array<std::string_view, 95> kFlatcKeywords = {
    "alignas",
    "alignof",
    "and",
    "and_eq",
    "asm",
    "atomic_cancel",
    "atomic_commit",
    "atomic_noexcept",
    "auto",
    "bitand",
    "bitor",
    "bool",
    "break",
    "case",
    "catch",
    "char",
    "char16_t",
    "char32_t",
    "class",
    "compl",
    "concept",
    "const",
    "constexpr",
    "const_cast",
    "continue",
    "co_await",
    "co_return",
    "co_yield",
    "decltype",
    "default",
    "delete",
    "do",
    "double",
    "dynamic_cast",
    "else",
    "enum",
    "explicit",
    "export",
    "extern",
    "false",
    "float",
    "for",
    "friend",
    "goto",
    "if",
    "import",
    "inline",
    "int",
    "long",
    "module",
    "mutable",
    "namespace",
    "new",
    "noexcept",
    "not",
    "not_eq",
    "nullptr",
    "operator",
    "or",
    "or_eq",
    "private",
    "protected",
    "public",
    "register",
    "reinterpret_cast",
    "requires",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "static_assert",
    "static_cast",
    "struct",
    "switch",
    "synchronized",
    "template",
    "this",
    "thread_local",
    "throw",
    "true",
    "try",
    "typedef",
    "typeid",
    "typename",
    "union",
    "unsigned",
    "using",
    "virtual",
    "void",
    "volatile",
    "wchar_t",
    "while",
    "xor",
    "xor_eq",
};

// Keywords of C++20 that flatc's list lacks. Names flatstore derives itself (camel-case
// accessors, setters, descriptors) escape these too, since they would not compile.
constexpr std::array<std::string_view, 4> kMoreKeywords = {"char8_t", "consteval", "constinit",
                                                           "reflexpr"};

template <size_t N>
bool contains(const std::array<std::string_view, N>& list, std::string_view name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

}  // namespace

std::string flatcName(std::string_view name) {
  std::string out(name);
  if (contains(kFlatcKeywords, name)) out += '_';
  return out;
}

std::string escapeKeyword(std::string_view name) {
  std::string out(name);
  if (contains(kFlatcKeywords, name) || contains(kMoreKeywords, name)) out += '_';
  return out;
}

std::string upperCamel(std::string_view snake) {
  std::string out;
  bool up = true;
  for (char c : snake) {
    if (c == '_') {
      up = true;
      continue;
    }
    out += up ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    up = false;
  }
  return out;
}

std::string camelStem(std::string_view snake) {
  std::string out = upperCamel(snake);
  if (!out.empty()) out[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(out[0])));
  return out;
}

std::string lowerCamel(std::string_view snake) { return escapeKeyword(camelStem(snake)); }

std::string memberName(std::string_view field_name) {
  // Member names of the generated entity class that a field accessor must not hide.
  static constexpr std::array<std::string_view, 9> kReserved = {
      "bytes",  "data",        "rowid",     "versionstamp", "view",
      "unpack", "description", "fromBytes", "fromVerified"};
  std::string out = lowerCamel(field_name);
  if (contains(kReserved, out)) out += '_';
  return out;
}

std::string cppStringLiteral(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\%03o", static_cast<unsigned char>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace flatstore::codegen
