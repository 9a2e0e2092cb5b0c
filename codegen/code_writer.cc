#include "codegen/code_writer.h"

#include <cstdio>
#include <cstdlib>

namespace flatstore::codegen {

std::string CodeWriter::substitute(std::string_view text) const {
  std::string result;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t open = text.find("{{", pos);
    if (open == std::string_view::npos) {
      result.append(text.substr(pos));
      break;
    }
    // "{{{X}}" is a literal brace followed by a placeholder.
    while (open + 2 < text.size() && text[open + 2] == '{') ++open;
    size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) {
      result.append(text.substr(pos));
      break;
    }
    result.append(text.substr(pos, open - pos));
    std::string name(text.substr(open + 2, close - open - 2));
    auto it = vars_.find(name);
    if (it == vars_.end()) {
      std::fprintf(stderr, "flatstore-codegen: internal error: unset variable {{%s}}\n",
                   name.c_str());
      std::abort();
    }
    result.append(it->second);
    pos = close + 2;
  }
  return result;
}

void CodeWriter::line(std::string_view text) {
  std::string expanded = substitute(text);
  size_t start = 0;
  while (true) {
    size_t end = expanded.find('\n', start);
    std::string_view one = std::string_view(expanded).substr(
        start, end == std::string::npos ? std::string::npos : end - start);
    std::string& out = outs_[current_];
    if (!one.empty()) out.append(static_cast<size_t>(depths_[current_]) * 2, ' ');
    out.append(one);
    out.push_back('\n');
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

}  // namespace flatstore::codegen
