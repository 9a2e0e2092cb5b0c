// CodeWriter: builds generated source text.
//
// Text is appended line by line with {{NAME}} placeholders replaced by variables set
// with set(), and every line is indented to the current depth. Text goes to one of
// several outputs (a header and its source file) that share the variables; each output
// keeps its own indentation. Used by one generator on one thread.
#ifndef FLATSTORE_CODEGEN_CODE_WRITER_H_
#define FLATSTORE_CODEGEN_CODE_WRITER_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace flatstore::codegen {

class CodeWriter {
 public:
  // Sets the value that replaces {{name}} in later lines.
  void set(const std::string& name, std::string value) { vars_[name] = std::move(value); }

  // Appends `text` (one or more lines separated by '\n') after substitution. An empty
  // `text` appends an empty line. An unknown placeholder is a generator bug and aborts.
  void line(std::string_view text);

  void indent() { depths_[current_] += 1; }
  void outdent() { depths_[current_] -= 1; }

  // Sends later lines to output `index` (0 until called).
  void select(size_t index) {
    current_ = index;
    if (outs_.size() <= index) {
      outs_.resize(index + 1);
      depths_.resize(index + 1);
    }
  }

  const std::string& str(size_t index = 0) const { return outs_[index]; }

 private:
  std::string substitute(std::string_view text) const;

  std::map<std::string, std::string> vars_;
  std::vector<std::string> outs_ = {std::string()};
  std::vector<int> depths_ = {0};
  size_t current_ = 0;
};

}  // namespace flatstore::codegen

#endif  // FLATSTORE_CODEGEN_CODE_WRITER_H_
