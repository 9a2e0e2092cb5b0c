#include "codegen/source_locator.h"

#include <cctype>

namespace flatstore::codegen {
namespace {

bool isIdentChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
}

}  // namespace

SourceLocator::SourceLocator(std::string_view text) {
  int line = 1;
  int column = 1;
  size_t i = 0;
  auto advance = [&](size_t n) {
    for (size_t k = 0; k < n && i < text.size(); ++k, ++i) {
      if (text[i] == '\n') {
        line += 1;
        column = 1;
      } else {
        column += 1;
      }
    }
  };
  while (i < text.size()) {
    char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      advance(1);
    } else if (text.substr(i, 2) == "//") {
      while (i < text.size() && text[i] != '\n') advance(1);
    } else if (text.substr(i, 2) == "/*") {
      advance(2);
      while (i < text.size() && text.substr(i, 2) != "*/") advance(1);
      advance(2);
    } else if (c == '"') {
      SourcePosition start{line, column};
      advance(1);
      while (i < text.size() && text[i] != '"' && text[i] != '\n') {
        if (text[i] == '\\') advance(1);
        advance(1);
      }
      advance(1);
      tokens_.push_back({"\"", start});
    } else if (isIdentChar(c)) {
      SourcePosition start{line, column};
      size_t begin = i;
      while (i < text.size() && isIdentChar(text[i])) advance(1);
      tokens_.push_back({std::string(text.substr(begin, i - begin)), start});
    } else {
      tokens_.push_back({std::string(1, c), {line, column}});
      advance(1);
    }
  }
  if (!tokens_.empty()) {
    const Token& last = tokens_.back();
    end_ = {last.position.line, last.position.column + static_cast<int>(last.text.size())};
  }
}

std::optional<SourcePosition> SourceLocator::parserToken(int line, int column,
                                                         std::string_view hint) const {
  if (!hint.empty()) {
    if (auto pos = identifierOnLine(line, hint)) return pos;
  }
  const Token* best = nullptr;
  for (const Token& t : tokens_) {
    if (t.position.line != line) continue;
    int last = t.position.column + static_cast<int>(t.text.size()) - 1;
    if (t.position.column <= column && column <= last) return t.position;
    if (t.position.column <= column) best = &t;
  }
  if (best != nullptr) return best->position;
  return std::nullopt;
}

int SourceLocator::findDeclaration(std::string_view ns, std::string_view name) const {
  std::string current_ns;
  for (size_t i = 0; i + 1 < tokens_.size(); ++i) {
    const std::string& t = tokens_[i].text;
    if (t == "namespace") {
      current_ns = tokens_[i + 1].text == ";" ? "" : tokens_[i + 1].text;
    } else if ((t == "table" || t == "struct") && tokens_[i + 1].text == name && current_ns == ns) {
      return static_cast<int>(i + 1);
    }
  }
  return -1;
}

int SourceLocator::findField(std::string_view ns, std::string_view type,
                             std::string_view field) const {
  int decl = findDeclaration(ns, type);
  if (decl < 0) return -1;
  size_t i = static_cast<size_t>(decl) + 1;
  while (i < tokens_.size() && tokens_[i].text != "{") ++i;
  int depth = 0;
  bool at_field_start = true;
  for (; i < tokens_.size(); ++i) {
    const std::string& t = tokens_[i].text;
    if (t == "{" || t == "(" || t == "[") {
      depth += 1;
      continue;
    }
    if (t == "}" || t == ")" || t == "]") {
      depth -= 1;
      if (depth == 0) return -1;
      continue;
    }
    if (depth != 1) continue;
    if (t == ";") {
      at_field_start = true;
      continue;
    }
    if (at_field_start && t == field && i + 1 < tokens_.size() && tokens_[i + 1].text == ":") {
      return static_cast<int>(i);
    }
    at_field_start = false;
  }
  return -1;
}

std::optional<SourcePosition> SourceLocator::declaration(std::string_view ns,
                                                         std::string_view name) const {
  int i = findDeclaration(ns, name);
  if (i < 0) return std::nullopt;
  return tokens_[static_cast<size_t>(i)].position;
}

std::optional<SourcePosition> SourceLocator::field(std::string_view ns, std::string_view type,
                                                   std::string_view field) const {
  int i = findField(ns, type, field);
  if (i < 0) return std::nullopt;
  return tokens_[static_cast<size_t>(i)].position;
}

std::optional<SourcePosition> SourceLocator::fieldAttribute(std::string_view ns,
                                                            std::string_view type,
                                                            std::string_view field,
                                                            std::string_view attribute) const {
  int start = findField(ns, type, field);
  if (start < 0) return std::nullopt;
  int depth = 0;
  for (size_t i = static_cast<size_t>(start); i < tokens_.size(); ++i) {
    const std::string& t = tokens_[i].text;
    if (t == ";" || t == "}") break;
    if (t == "(") depth += 1;
    if (t == ")") depth -= 1;
    if (depth == 1 && t == attribute) return tokens_[i].position;
  }
  return tokens_[static_cast<size_t>(start)].position;
}

std::optional<SourcePosition> SourceLocator::identifierOnLine(int line,
                                                              std::string_view text) const {
  for (const Token& t : tokens_) {
    if (t.position.line != line) continue;
    // A qualified reference ("a.b.Foo") matches its last component too.
    if (t.text == text || (t.text.size() > text.size() &&
                           t.text.compare(t.text.size() - text.size(), text.size(), text) == 0 &&
                           t.text[t.text.size() - text.size() - 1] == '.')) {
      return t.position;
    }
  }
  return std::nullopt;
}

}  // namespace flatstore::codegen
