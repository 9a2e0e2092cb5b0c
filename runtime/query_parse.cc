#include "runtime/query_parse.h"

#include <cctype>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"

namespace flatstore::internal {

namespace {

struct Token {
  enum class Kind { kEnd, kWord, kNumber, kString, kSymbol };
  Kind kind = Kind::kEnd;
  std::string text;  // a string's content without quotes
  size_t column = 0;
};

absl::StatusOr<std::vector<Token>> tokenize(std::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    Token t;
    t.column = i + 1;
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() &&
             (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_' || s[j] == '.')) {
        ++j;
      }
      t.kind = Token::Kind::kWord;
      t.text = std::string(s.substr(i, j - i));
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c)) ||
               ((c == '-' || c == '+') && i + 1 < s.size() &&
                (std::isdigit(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '.'))) {
      size_t j = i + 1;
      while (j < s.size() &&
             (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '.' ||
              ((s[j] == '-' || s[j] == '+') && (s[j - 1] == 'e' || s[j - 1] == 'E')))) {
        ++j;
      }
      t.kind = Token::Kind::kNumber;
      t.text = std::string(s.substr(i, j - i));
      i = j;
    } else if (c == '"' || c == '\'') {
      size_t j = i + 1;
      std::string text;
      while (j < s.size() && s[j] != c) {
        if (s[j] == '\\' && j + 1 < s.size()) ++j;
        text.push_back(s[j]);
        ++j;
      }
      if (j >= s.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("column ", t.column, ": unterminated string"));
      }
      t.kind = Token::Kind::kString;
      t.text = std::move(text);
      i = j + 1;
    } else {
      static constexpr std::string_view kTwo[] = {"==", "!=", "<=", ">=", "<>", "&&", "||"};
      t.kind = Token::Kind::kSymbol;
      t.text = std::string(1, c);
      for (std::string_view two : kTwo) {
        if (s.substr(i, 2) == two) t.text = std::string(two);
      }
      if (std::string_view("=!<>&|(),").find(c) == std::string_view::npos || t.text == "&" ||
          t.text == "|") {
        return absl::InvalidArgumentError(
            absl::StrCat("column ", t.column, ": unexpected character '", std::string(1, c), "'"));
      }
      i += t.text.size();
    }
    out.push_back(std::move(t));
  }
  Token end;
  end.column = s.size() + 1;
  out.push_back(end);
  return out;
}

class Parser {
 public:
  Parser(DynamicTable& table, std::vector<Token> tokens)
      : table_(table), tokens_(std::move(tokens)) {}

  absl::StatusOr<std::shared_ptr<const ExprNode>> parse() {
    FLATSTORE_ASSIGN_OR_RETURN(auto e, parseOr());
    if (peek().kind != Token::Kind::kEnd) return error("expected 'and', 'or' or the end");
    return e;
  }

 private:
  const Token& peek() const { return tokens_[pos_]; }
  bool isWord(std::string_view w) const {
    return peek().kind == Token::Kind::kWord && absl::AsciiStrToLower(peek().text) == w;
  }
  bool isSymbol(std::string_view s) const {
    return peek().kind == Token::Kind::kSymbol && peek().text == s;
  }
  absl::Status error(std::string_view what) const {
    const Token& t = peek();
    return absl::InvalidArgumentError(absl::StrCat("column ", t.column, ": ", av(what),
                                                   t.kind == Token::Kind::kEnd
                                                       ? std::string(", found the end")
                                                       : absl::StrCat(", found '", t.text, "'")));
  }

  static std::shared_ptr<const ExprNode> binary(ExprNode::Kind kind,
                                                std::shared_ptr<const ExprNode> a,
                                                std::shared_ptr<const ExprNode> b) {
    auto n = std::make_shared<ExprNode>();
    n->kind = kind;
    n->lhs = std::move(a);
    n->rhs = std::move(b);
    return n;
  }

  absl::StatusOr<std::shared_ptr<const ExprNode>> parseOr() {
    FLATSTORE_ASSIGN_OR_RETURN(auto lhs, parseAnd());
    while (isWord("or") || isSymbol("||")) {
      ++pos_;
      FLATSTORE_ASSIGN_OR_RETURN(auto rhs, parseAnd());
      lhs = binary(ExprNode::Kind::kOr, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  absl::StatusOr<std::shared_ptr<const ExprNode>> parseAnd() {
    FLATSTORE_ASSIGN_OR_RETURN(auto lhs, parseUnary());
    while (isWord("and") || isSymbol("&&")) {
      ++pos_;
      FLATSTORE_ASSIGN_OR_RETURN(auto rhs, parseUnary());
      lhs = binary(ExprNode::Kind::kAnd, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  absl::StatusOr<std::shared_ptr<const ExprNode>> parseUnary() {
    if (isWord("not") || isSymbol("!")) {
      ++pos_;
      FLATSTORE_ASSIGN_OR_RETURN(auto inner, parseUnary());
      auto n = std::make_shared<ExprNode>();
      n->kind = ExprNode::Kind::kNot;
      n->lhs = std::move(inner);
      return std::shared_ptr<const ExprNode>(std::move(n));
    }
    if (isSymbol("(")) {
      ++pos_;
      FLATSTORE_ASSIGN_OR_RETURN(auto inner, parseOr());
      if (!isSymbol(")")) return error("expected ')'");
      ++pos_;
      return inner;
    }
    return parseTerm();
  }

  absl::StatusOr<std::shared_ptr<const ExprNode>> parseTerm() {
    if (peek().kind != Token::Kind::kWord) return error("expected a field path");
    const Token& path = peek();
    absl::StatusOr<const FieldInfo*> field = table_.field(path.text);
    if (!field.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("column ", path.column, ": ", field.status().message()));
    }
    ++pos_;
    auto n = std::make_shared<ExprNode>();
    n->field = *field;
    if (isWord("is")) {
      ++pos_;
      n->kind = ExprNode::Kind::kIsNull;
      if (isWord("not")) {
        ++pos_;
        n->negated = true;
      }
      if (!isWord("null")) return error("expected 'null'");
      ++pos_;
      return std::shared_ptr<const ExprNode>(std::move(n));
    }
    if (isWord("not") || isWord("in")) {
      n->kind = ExprNode::Kind::kIn;
      if (isWord("not")) {
        ++pos_;
        n->negated = true;
        if (!isWord("in")) return error("expected 'in'");
      }
      ++pos_;
      if (!isSymbol("(")) return error("expected '('");
      ++pos_;
      while (!isSymbol(")")) {
        if (!n->values.empty()) {
          if (!isSymbol(",")) return error("expected ',' or ')'");
          ++pos_;
        }
        FLATSTORE_ASSIGN_OR_RETURN(Value v, parseLiteral(**field));
        n->values.push_back(std::move(v));
      }
      ++pos_;
      return std::shared_ptr<const ExprNode>(std::move(n));
    }
    static constexpr std::pair<std::string_view, CompareOp> kOps[] = {
        {"==", CompareOp::kEq}, {"=", CompareOp::kEq}, {"!=", CompareOp::kNe},
        {"<>", CompareOp::kNe}, {"<", CompareOp::kLt}, {"<=", CompareOp::kLe},
        {">", CompareOp::kGt},  {">=", CompareOp::kGe}};
    bool found = false;
    for (const auto& [text, op] : kOps) {
      if (isSymbol(text)) {
        n->op = op;
        found = true;
      }
    }
    if (!found) return error("expected a comparison, 'in', 'not in' or 'is'");
    ++pos_;
    n->kind = ExprNode::Kind::kCompare;
    FLATSTORE_ASSIGN_OR_RETURN(Value v, parseLiteral(**field));
    n->values.push_back(std::move(v));
    return std::shared_ptr<const ExprNode>(std::move(n));
  }

  absl::StatusOr<Value> parseLiteral(const FieldInfo& field) {
    const Token& t = peek();
    ColumnType type = table_.typeOf(field);
    auto mismatch = [&](std::string_view kind) {
      return absl::InvalidArgumentError(absl::StrCat("column ", t.column, ": field ",
                                                     av(field.path), " cannot be compared with ",
                                                     av(kind), " ", t.text));
    };
    Value v;
    switch (t.kind) {
      case Token::Kind::kString:
        if (type != ColumnType::kText) return mismatch("the string");
        v = Value::text(t.text);
        break;
      case Token::Kind::kNumber: {
        if (type == ColumnType::kText) return mismatch("the number");
        int64_t i = 0;
        double d = 0;
        if (absl::SimpleAtoi(t.text, &i)) {
          v = type == ColumnType::kReal ? Value::real(static_cast<double>(i)) : Value::integer(i);
        } else if (absl::SimpleAtod(t.text, &d)) {
          if (type != ColumnType::kReal) return mismatch("the real number");
          v = Value::real(d);
        } else {
          return error("expected a number");
        }
        break;
      }
      case Token::Kind::kWord: {
        absl::StatusOr<Value> named = table_.literal(field, t.text);
        if (!named.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("column ", t.column, ": ", named.status().message()));
        }
        v = *std::move(named);
        break;
      }
      default:
        return error("expected a value");
    }
    ++pos_;
    return v;
  }

  DynamicTable& table_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<std::shared_ptr<const ExprNode>> parseQueryExpression(DynamicTable& table,
                                                                     std::string_view text) {
  FLATSTORE_ASSIGN_OR_RETURN(std::vector<Token> tokens, tokenize(text));
  return Parser(table, std::move(tokens)).parse();
}

}  // namespace flatstore::internal
