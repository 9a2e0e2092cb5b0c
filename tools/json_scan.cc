#include "tools/json_scan.h"

#include <cctype>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "runtime/absl_compat.h"

namespace flatstore::cli {

namespace {

void skipSpace(std::string_view s, size_t& i) {
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
}

// Skips one JSON value starting at `i` (strings, numbers, literals, nested containers).
bool skipValue(std::string_view s, size_t& i) {
  skipSpace(s, i);
  if (i >= s.size()) return false;
  if (s[i] == '"') {
    for (++i; i < s.size(); ++i) {
      if (s[i] == '\\') {
        ++i;
      } else if (s[i] == '"') {
        ++i;
        return true;
      }
    }
    return false;
  }
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    for (; i < s.size(); ++i) {
      char c = s[i];
      if (c == '"') {
        if (!skipValue(s, i)) return false;
        --i;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) {
          ++i;
          return true;
        }
      }
    }
    return false;
  }
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' &&
         !std::isspace(static_cast<unsigned char>(s[i]))) {
    ++i;
  }
  return true;
}

void appendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

}  // namespace

absl::StatusOr<std::optional<std::string_view>> findMember(std::string_view json,
                                                           std::string_view name) {
  size_t i = 0;
  skipSpace(json, i);
  if (i >= json.size() || json[i] != '{') return absl::InvalidArgumentError("not a JSON object");
  ++i;
  while (true) {
    skipSpace(json, i);
    if (i < json.size() && json[i] == '}') return std::optional<std::string_view>();
    size_t key_start = i;
    if (i >= json.size() || json[i] != '"' || !skipValue(json, i)) {
      return absl::InvalidArgumentError(absl::StrCat("expected a member name at column ", i + 1));
    }
    absl::StatusOr<std::string> key = readString(json.substr(key_start, i - key_start));
    if (!key.ok()) return key.status();
    skipSpace(json, i);
    if (i >= json.size() || json[i] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("expected ':' at column ", i + 1));
    }
    ++i;
    skipSpace(json, i);
    size_t value_start = i;
    if (!skipValue(json, i)) {
      return absl::InvalidArgumentError(absl::StrCat("bad value at column ", value_start + 1));
    }
    if (*key == name)
      return std::optional<std::string_view>(json.substr(value_start, i - value_start));
    skipSpace(json, i);
    if (i < json.size() && json[i] == ',') {
      ++i;
      continue;
    }
    if (i < json.size() && json[i] == '}') return std::optional<std::string_view>();
    return absl::InvalidArgumentError(absl::StrCat("expected ',' or '}' at column ", i + 1));
  }
}

absl::StatusOr<std::string> readString(std::string_view lit) {
  if (lit.size() < 2 || lit.front() != '"' || lit.back() != '"') {
    return absl::InvalidArgumentError(absl::StrCat("not a JSON string: ", internal::av(lit)));
  }
  std::string out;
  for (size_t i = 1; i + 1 < lit.size(); ++i) {
    char c = lit[i];
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (++i + 1 > lit.size() - 1) return absl::InvalidArgumentError("bad escape");
    switch (lit[i]) {
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'u': {
        uint32_t cp = 0;
        if (i + 4 >= lit.size() ||
            !absl::SimpleHexAtoi(absl::string_view(lit.data() + i + 1, 4), &cp)) {
          return absl::InvalidArgumentError("bad \\u escape");
        }
        i += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && i + 6 < lit.size() && lit[i + 1] == '\\' &&
            lit[i + 2] == 'u') {
          uint32_t low = 0;
          if (absl::SimpleHexAtoi(absl::string_view(lit.data() + i + 3, 4), &low)) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            i += 6;
          }
        }
        appendUtf8(cp, &out);
        break;
      }
      default:
        out.push_back(lit[i]);
    }
  }
  return out;
}

}  // namespace flatstore::cli
