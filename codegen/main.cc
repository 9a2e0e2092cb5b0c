// flatstore-codegen: FlatBuffers schemas in, flatstore C++ headers out.
//
//   flatstore-codegen [-I DIR]... [-o OUT_DIR] [--depfile FILE] [--stamp FILE] SCHEMA.fbs...
//
// For each SCHEMA.fbs writes OUT_DIR/SCHEMA_flatstore.h, which includes flatc's
// SCHEMA_generated.h (flatc --cpp --gen-object-api --gen-compare --scoped-enums), and
// OUT_DIR/SCHEMA_flatstore.cc, to be compiled once into the program. On any error,
// prints `file:line:col: error: message` lines, writes nothing, and exits 1. A file that
// would not change is left alone, so that nothing that includes it is rebuilt; --stamp
// names a file written on every successful run (the target of the --depfile rule, when
// given), for build tools that decide by file times whether a run is due.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "codegen/cpp_generator.h"
#include "codegen/schema_model.h"
#include "codegen/source_locator.h"
#include "flatbuffers/idl.h"
#include "flatbuffers/util.h"

namespace fs = std::filesystem;

namespace flatstore::codegen {
namespace {

struct Options {
  std::vector<std::string> include_dirs;
  std::string out_dir = ".";
  std::string depfile;
  std::string stamp;
  std::vector<std::string> schemas;
};

void usage() {
  std::fprintf(stderr,
               "usage: flatstore-codegen [-I DIR]... [-o OUT_DIR] [--depfile FILE] "
               "[--stamp FILE] SCHEMA.fbs...\n");
}

bool parseArgs(int argc, char** argv, Options* opts) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (a == "-I") {
      std::string dir;
      if (!value(&dir)) return false;
      opts->include_dirs.push_back(dir);
    } else if (a.rfind("-I", 0) == 0 && a.size() > 2) {
      opts->include_dirs.push_back(a.substr(2));
    } else if (a == "-o") {
      if (!value(&opts->out_dir)) return false;
    } else if (a == "--depfile") {
      if (!value(&opts->depfile)) return false;
    } else if (a == "--stamp") {
      if (!value(&opts->stamp)) return false;
    } else if (a == "-h" || a == "--help") {
      return false;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "flatstore-codegen: unknown option %s\n", a.c_str());
      return false;
    } else {
      opts->schemas.push_back(a);
    }
  }
  return !opts->schemas.empty();
}

bool readFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

// Prints file names the way the user named the schema: absolute when the schema was
// given by an absolute path, otherwise relative to the working directory, as compilers
// do, so that editors can open them.
class PathDisplay {
 public:
  explicit PathDisplay(const std::string& schema) : absolute_(fs::path(schema).is_absolute()) {
    std::error_code ec;
    cwd_ = fs::current_path(ec);
  }
  std::string show(const std::string& file) const {
    std::error_code ec;
    fs::path abs = fs::absolute(file, ec).lexically_normal();
    if (absolute_) return abs.string();
    fs::path rel = abs.lexically_relative(cwd_);
    return rel.empty() ? abs.string() : rel.string();
  }

 private:
  bool absolute_;
  fs::path cwd_;
};

// Finds a file the parser named in "originally at:", which may be relative to the
// working directory, the main schema's directory or an include directory.
std::string resolveSchemaFile(const std::string& name, const std::vector<std::string>& dirs) {
  std::error_code ec;
  if (fs::exists(name, ec)) return name;
  for (const std::string& d : dirs) {
    fs::path p = fs::path(d) / name;
    if (fs::exists(p, ec)) return p.string();
  }
  return name;
}

// Rewrites FlatBuffers' "path:line: col: error: msg" as "path:line:col: error: msg".
// The parser's column is the end of the token it had read ahead; the column printed is
// the start of the token the message names. An undefined type is reported at the end
// of the file with "originally at: f:LINE"; it is moved to where the type is used.
std::string formatParserError(const std::string& raw, const std::vector<std::string>& dirs,
                              const PathDisplay& display) {
  static const std::regex kLine(R"(^(.*):(\d+): (\d+): (error|warning): (.*)$)");
  static const std::regex kUndefined(
      R"(type referenced but not defined \(check namespace\): ([A-Za-z0-9_.]+), originally at: (.*):(\d+)$)");
  static const std::regex kTrailingName(R"(: ([A-Za-z_][A-Za-z0-9_.]*)$)");
  std::string out;
  std::istringstream lines(raw);
  std::string line;
  while (std::getline(lines, line)) {
    std::smatch m;
    if (!std::regex_match(line, m, kLine)) {
      if (!line.empty()) out += line + "\n";
      continue;
    }
    std::string file = m[1];
    int lineno = std::stoi(m[2]);
    int col = std::max(1, std::stoi(m[3]));
    std::string message = m[5];
    std::string hint;
    std::smatch u;
    if (std::regex_search(message, u, kUndefined)) {
      std::string type = u[1];
      file = resolveSchemaFile(u[2], dirs);
      lineno = std::stoi(u[3]);
      col = 1;
      size_t dot = type.rfind('.');
      hint = dot == std::string::npos ? type : type.substr(dot + 1);
      message = "unknown type '" + type + "'";
    } else if (std::smatch n; std::regex_search(message, n, kTrailingName)) {
      hint = n[1];
    }
    std::string text;
    if (readFile(file, &text)) {
      SourceLocator locator(text);
      if (auto pos = locator.parserToken(lineno, col, hint)) col = pos->column;
    }
    out += display.show(file) + ":" + std::to_string(lineno) + ":" + std::to_string(col) + ": " +
           std::string(m[4]) + ": " + message + "\n";
  }
  return out;
}

struct Output {
  std::vector<std::pair<std::string, std::string>> files;  // path, text: header first
  std::vector<std::string> dependencies;
};

// Parses and checks one schema; on success fills `out`, otherwise prints diagnostics.
bool compileSchema(const Options& opts, const std::string& schema, Output* out) {
  PathDisplay display(schema);
  std::string source;
  std::error_code ec;
  if (fs::is_directory(schema, ec) || !readFile(schema, &source)) {
    std::fprintf(stderr, "%s:1:1: error: cannot read schema file\n", schema.c_str());
    return false;
  }
  flatbuffers::IDLOptions idl;
  idl.lang_to_generate = flatbuffers::IDLOptions::kCpp;
  // The stored binary schema keeps flatc's own attributes too (nested_flatbuffer, ...),
  // so that the runtime and tools know what a nested buffer holds.
  idl.binary_schema_builtins = true;
  flatbuffers::Parser parser(idl);
  for (const char* attr : kFlatstoreAttributes) parser.known_attributes_[attr] = false;

  std::string schema_dir = fs::path(schema).parent_path().string();
  std::vector<std::string> dirs;
  dirs.push_back(schema_dir.empty() ? std::string(".") : schema_dir);
  for (const auto& d : opts.include_dirs) dirs.push_back(d);
  std::vector<const char*> include_paths;
  for (const auto& d : dirs) include_paths.push_back(d.c_str());
  include_paths.push_back(nullptr);

  std::string main_file = flatbuffers::PosixPath(schema.c_str());
  if (!parser.Parse(source.c_str(), include_paths.data(), main_file.c_str())) {
    std::fputs(formatParserError(parser.error_, dirs, display).c_str(), stderr);
    return false;
  }
  SchemaModel model;
  std::vector<Diagnostic> errors;
  if (!buildSchemaModel(parser, main_file, &model, &errors)) {
    for (Diagnostic d : errors) {
      d.file = display.show(d.file);
      std::fprintf(stderr, "%s\n", d.format().c_str());
    }
    return false;
  }
  for (Diagnostic d : model.warnings) {
    d.file = display.show(d.file);
    std::string text = d.format();
    text.replace(text.find(": error: "), 9, ": warning: ");
    std::fprintf(stderr, "%s\n", text.c_str());
  }
  parser.Serialize();
  std::vector<uint8_t> bfbs(parser.builder_.GetBufferPointer(),
                            parser.builder_.GetBufferPointer() + parser.builder_.GetSize());
  std::string stem = fs::path(schema).stem().string();
  GeneratedFiles generated = CppGenerator(model, stem, std::move(bfbs)).generate();
  out->files = {
      {(fs::path(opts.out_dir) / (stem + "_flatstore.h")).string(), std::move(generated.header)},
      {(fs::path(opts.out_dir) / (stem + "_flatstore.cc")).string(), std::move(generated.source)}};
  for (const std::string& f : parser.GetIncludedFilesRecursive(main_file)) {
    out->dependencies.push_back(f);
  }
  return true;
}

bool writeAtomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return false;
    out << text;
    if (!out.flush()) return false;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fs::remove(tmp, ec);
  return !ec;
}

int run(int argc, char** argv) {
  Options opts;
  if (!parseArgs(argc, argv, &opts)) {
    usage();
    return 2;
  }
  std::vector<Output> outputs(opts.schemas.size());
  bool ok = true;
  for (size_t i = 0; i < opts.schemas.size(); ++i) {
    ok = compileSchema(opts, opts.schemas[i], &outputs[i]) && ok;
  }
  if (!ok) return 1;
  std::error_code ec;
  fs::create_directories(opts.out_dir, ec);
  for (const Output& o : outputs) {
    for (const auto& [path, text] : o.files) {
      // Leave an unchanged file alone so that builds do not recompile needlessly.
      std::string existing;
      if (readFile(path, &existing) && existing == text) continue;
      if (!writeAtomically(path, text)) {
        std::fprintf(stderr, "flatstore-codegen: cannot write %s\n", path.c_str());
        return 1;
      }
    }
  }
  if (!opts.depfile.empty()) {
    std::string deps;
    for (const Output& o : outputs) {
      deps += (opts.stamp.empty() ? o.files.front().first : opts.stamp) + ":";
      for (const auto& d : o.dependencies) deps += " " + d;
      deps += "\n";
    }
    if (!writeAtomically(opts.depfile, deps)) {
      std::fprintf(stderr, "flatstore-codegen: cannot write %s\n", opts.depfile.c_str());
      return 1;
    }
  }
  // The stamp is written on every successful run, unlike the outputs, so that a build
  // tool comparing times sees the run done even when no output changed.
  if (!opts.stamp.empty() && !writeAtomically(opts.stamp, "")) {
    std::fprintf(stderr, "flatstore-codegen: cannot write %s\n", opts.stamp.c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace flatstore::codegen

int main(int argc, char** argv) { return flatstore::codegen::run(argc, argv); }
