// SourceLocator: finds declarations in the text of a .fbs file.
//
// FlatBuffers' parser keeps no line numbers for fields, so flatstore's own schema
// checks locate what they report here: a light tokenizer (comments and strings skipped)
// that knows `namespace`, `table`/`struct` blocks and `name: type (attributes);` fields.
#ifndef FLATSTORE_CODEGEN_SOURCE_LOCATOR_H_
#define FLATSTORE_CODEGEN_SOURCE_LOCATOR_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flatstore::codegen {

struct SourcePosition {
  int line = 1;    // 1-based
  int column = 1;  // 1-based, in bytes
};

class SourceLocator {
 public:
  explicit SourceLocator(std::string_view text);

  // The name token of `table NAME` or `struct NAME` declared in namespace `ns`
  // (dotted, "" for none).
  std::optional<SourcePosition> declaration(std::string_view ns, std::string_view name) const;
  // The name token of field `field` in that declaration.
  std::optional<SourcePosition> field(std::string_view ns, std::string_view type,
                                      std::string_view field) const;
  // The attribute `attribute` in the field's metadata; falls back to the field.
  std::optional<SourcePosition> fieldAttribute(std::string_view ns, std::string_view type,
                                               std::string_view field,
                                               std::string_view attribute) const;
  // The first identifier token equal to `text` on `line`.
  std::optional<SourcePosition> identifierOnLine(int line, std::string_view text) const;
  // The token FlatBuffers' parser meant when it reported `column` on `line`: its column
  // is the 0-based offset just past the token it had read, that is, the 1-based column
  // of the token's last byte. Prefers a token spelled `hint` on that line when given.
  std::optional<SourcePosition> parserToken(int line, int column, std::string_view hint) const;
  // The position just after the last token (where a missing declaration belongs).
  SourcePosition end() const { return end_; }

 private:
  struct Token {
    std::string text;
    SourcePosition position;
  };
  // Index of the name token of the declaration, or -1.
  int findDeclaration(std::string_view ns, std::string_view name) const;
  // Index of the field's name token, or -1.
  int findField(std::string_view ns, std::string_view type, std::string_view field) const;

  std::vector<Token> tokens_;
  SourcePosition end_;
};

}  // namespace flatstore::codegen

#endif  // FLATSTORE_CODEGEN_SOURCE_LOCATOR_H_
