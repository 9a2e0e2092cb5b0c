// CodeWriter: builds generated source text.
//
// Text is appended line by line with {{NAME}} placeholders replaced by variables set
// with set(), and every line is indented to the current depth. Used by one generator on
// one thread.
#ifndef FLATSTORE_CODEGEN_CODE_WRITER_H_
#define FLATSTORE_CODEGEN_CODE_WRITER_H_

#include <map>
#include <string>
#include <string_view>

namespace flatstore::codegen {

class CodeWriter {
 public:
  // Sets the value that replaces {{name}} in later lines.
  void set(const std::string& name, std::string value) { vars_[name] = std::move(value); }

  // Appends `text` (one or more lines separated by '\n') after substitution. An empty
  // `text` appends an empty line. An unknown placeholder is a generator bug and aborts.
  void line(std::string_view text);

  void indent() { depth_ += 1; }
  void outdent() { depth_ -= 1; }

  const std::string& str() const { return out_; }

 private:
  std::string substitute(std::string_view text) const;

  std::map<std::string, std::string> vars_;
  std::string out_;
  int depth_ = 0;
};

}  // namespace flatstore::codegen

#endif  // FLATSTORE_CODEGEN_CODE_WRITER_H_
