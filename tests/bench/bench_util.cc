#include "tests/bench/bench_util.h"

#include <cstdio>
#include <cstdlib>

namespace flatstore::bench {

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "flatstore-bench: %s\n", message.c_str());
  std::exit(1);
}

void check(const absl::Status& s, const std::string& what) {
  if (!s.ok()) die(what + ": " + s.ToString());
}

std::unique_ptr<Workspace> openWorkspace(const std::string& path, WorkspaceOptions options) {
  auto ws = Workspace::open(path, std::move(options));
  check(ws.status(), "open " + path);
  return std::move(*ws);
}

std::vector<std::shared_ptr<const DocEntity>> flatAll(Workspace& ws) {
  auto all = ws.fetch<Doc>().all();
  check(all.status(), "fetch all");
  return all->objects();
}

void expectCount(int64_t actual, int64_t expected, const std::string& what) {
  if (actual != expected) {
    die(what + ": expected " + std::to_string(expected) + " objects, found " +
        std::to_string(actual));
  }
}

}  // namespace flatstore::bench
