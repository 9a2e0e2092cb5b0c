// flatstore-bench: workloads run through flatstore and through its peers (hand-written
// SQLite code and others), in one process, over the same table layout and settings.
//
//   flatstore-bench [--filter REGEX] [--repeat N] [--json FILE] [--system NAME] [--metrics]
//                   [--sync-delay-us N] [--list]
//
// stdout gets the table (ops/s, latency percentiles, further figures) and then each
// goal with its measured ratio; --json writes the same records. stderr gets progress
// with diagnostics per run: wall and process CPU time per op (CPU well below wall means
// waiting: thread hand-offs or a busy machine) and, for flatstore's per-op transactions,
// the number of group commits.
//
// Each scenario runs --repeat times per system, the systems in a rotating order so that
// drift favours none, and the median of each figure is reported. Every run gets a fresh
// database file in one temporary directory.
//
// --sync-delay-us N emulates a disk whose flush is slower than this machine's: every sync
// of every SQLite system takes N µs longer (slow_sync_vfs.h). LMDB, whose syncs it cannot
// reach, is left out then.
//
// Profiling: `valgrind --tool=callgrind --instr-atstart=no flatstore-bench --repeat 1
// --filter '^update_10k$' --system flatstore` profiles only the timed regions (setup
// and the other systems excluded), in every thread.
#include <stdlib.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <map>
#include <regex>

#include "tests/bench/bench_util.h"
#include "tests/bench/peers.h"
#include "tests/bench/slow_sync_vfs.h"

namespace flatstore::bench {
namespace {

Registry registry() {
  Registry r;
  addCoreScenarios(r);
  addObserveScenarios(r);
  addContentionScenarios(r);
  return r;
}

// The database and its companions: SQLite's WAL, shared memory and journal, LMDB's lock
// file.
void removeDatabase(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal", "-lock"}) {
    std::error_code ec;
    std::filesystem::remove(path + suffix, ec);
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The median of each figure over the repeats.
Measurement medianOf(const std::vector<Measurement>& runs) {
  Measurement m;
  std::vector<double> ops, p50, p99, mx;
  std::vector<std::string> names;
  std::map<std::string, std::vector<double>> extra;
  for (const Measurement& r : runs) {
    ops.push_back(r.ops_per_s);
    if (r.p50_us) p50.push_back(*r.p50_us);
    if (r.p99_us) p99.push_back(*r.p99_us);
    if (r.max_us) mx.push_back(*r.max_us);
    for (const auto& [name, value] : r.extra) {
      if (!extra.contains(name)) names.push_back(name);
      extra[name].push_back(value);
    }
  }
  m.ops_per_s = median(ops);
  if (!p50.empty()) m.p50_us = median(p50);
  if (!p99.empty()) m.p99_us = median(p99);
  if (!mx.empty()) m.max_us = median(mx);
  for (const std::string& name : names) m.extra.emplace_back(name, median(extra[name]));
  return m;
}

struct Row {
  std::string scenario;
  std::string system;
  Measurement m;
};

std::optional<double> figureOf(const Row& row, const Goal& g) {
  switch (g.figure) {
    case Goal::Figure::kOpsPerSecond:
      return row.m.ops_per_s;
    case Goal::Figure::kP50:
      return row.m.p50_us;
    case Goal::Figure::kP99:
      return row.m.p99_us;
    case Goal::Figure::kMax:
      return row.m.max_us;
    case Goal::Figure::kExtra:
      for (const auto& [name, value] : row.m.extra) {
        if (name == g.extra_name) return value;
      }
      return std::nullopt;
  }
  return std::nullopt;
}

const char* figureName(const Goal& g) {
  switch (g.figure) {
    case Goal::Figure::kOpsPerSecond:
      return "ops/s";
    case Goal::Figure::kP50:
      return "p50";
    case Goal::Figure::kP99:
      return "p99";
    case Goal::Figure::kMax:
      return "max";
    case Goal::Figure::kExtra:
      return g.extra_name.c_str();
  }
  return "?";
}

std::string opt(const std::optional<double>& v, const char* fmt) {
  if (!v) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, *v);
  return buf;
}

std::string jsonNumber(const std::optional<double>& v) {
  if (!v) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", *v);
  return buf;
}

void writeJson(const std::string& file, const std::vector<Row>& rows) {
  FILE* f = std::fopen(file.c_str(), "w");
  if (f == nullptr) die("cannot write " + file + ": " + std::strerror(errno));
  std::fprintf(f, "[\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "  {\"scenario\": \"%s\", \"system\": \"%s\", \"ops_per_s\": %s, "
                 "\"p50_us\": %s, \"p99_us\": %s, \"max_us\": %s",
                 r.scenario.c_str(), r.system.c_str(), jsonNumber(r.m.ops_per_s).c_str(),
                 jsonNumber(r.m.p50_us).c_str(), jsonNumber(r.m.p99_us).c_str(),
                 jsonNumber(r.m.max_us).c_str());
    for (const auto& [name, value] : r.m.extra) {
      std::fprintf(f, ", \"%s\": %s", name.c_str(), jsonNumber(value).c_str());
    }
    std::fprintf(f, "}%s\n", i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "]\n");
  if (std::fclose(f) != 0) die("cannot write " + file);
}

void printTable(const std::vector<Row>& rows) {
  std::printf("%-28s %-20s %12s %10s %10s %10s  %s\n", "scenario", "system", "ops/s", "p50 µs",
              "p99 µs", "max µs", "more");
  for (const Row& r : rows) {
    std::string more;
    for (const auto& [name, value] : r.m.extra) {
      more += name + "=" + opt(value, "%.0f") + " ";
    }
    std::printf("%-28s %-20s %12.0f %10s %10s %10s  %s\n", r.scenario.c_str(), r.system.c_str(),
                r.m.ops_per_s, opt(r.m.p50_us, "%.1f").c_str(), opt(r.m.p99_us, "%.1f").c_str(),
                opt(r.m.max_us, "%.1f").c_str(), more.c_str());
  }
}

// Prints each goal whose two rows were run: the ratio, the bound and whether it holds.
void printGoals(const std::vector<Goal>& goals, const std::vector<Row>& rows) {
  auto find = [&](const std::string& scenario, const std::string& system) -> const Row* {
    for (const Row& r : rows) {
      if (r.scenario == scenario && r.system == system) return &r;
    }
    return nullptr;
  };
  // The goal's ratio, when both of its rows were run and the base is not zero.
  auto ratioOf = [&](const Goal& g) -> std::optional<double> {
    const Row* a = find(g.scenario, g.system);
    const Row* b = find(g.base_scenario, g.base_system);
    if (a == nullptr || b == nullptr) return std::nullopt;
    std::optional<double> x = figureOf(*a, g), y = figureOf(*b, g);
    if (!x || !y || *y == 0) return std::nullopt;
    return *x / *y;
  };
  auto holds = [](const Goal& g, double ratio) {
    return g.at_least ? ratio >= g.bound : ratio <= g.bound;
  };
  auto boundText = [](const Goal& g) { return opt(g.bound, g.at_least ? ">= %.2f" : "<= %.2f"); };
  bool header = false;
  for (const Goal& g : goals) {
    const Row* a = find(g.scenario, g.system);
    const Row* b = g.absolute ? a : find(g.base_scenario, g.base_system);
    if (a == nullptr || b == nullptr) continue;
    std::optional<double> x = figureOf(*a, g);
    if (!header) {
      std::printf("\n%-72s %8s %10s\n", "goal", "ratio", "bound");
      header = true;
    }
    std::string what = std::string(figureName(g)) + " " + g.scenario + "/" + g.system;
    if (g.absolute) {
      // No ratio: the figure itself against a fixed bound, both in the figure's unit.
      what += " (value, not a ratio)";
      if (!x) {
        std::printf("%-72s %8s %10s  not measured\n", what.c_str(), "-", "-");
        continue;
      }
      bool ok = g.at_least ? *x >= g.bound : *x <= g.bound;
      std::printf("%-72s %8.0f %10s  %s\n", what.c_str(), *x,
                  opt(g.bound, g.at_least ? ">= %.0f" : "<= %.0f").c_str(), ok ? "ok" : "MISSED");
      continue;
    }
    what += " : ";
    what += g.base_scenario == g.scenario ? g.base_system : g.base_scenario + "/" + g.base_system;
    std::optional<double> ratio = ratioOf(g);
    if (!ratio) {
      std::printf("%-72s %8s %10s  not measured\n", what.c_str(), "-", "-");
      continue;
    }
    std::printf("%-72s %8.2f %10s  %s\n", what.c_str(), *ratio, boundText(g).c_str(),
                holds(g, *ratio) ? "ok" : "MISSED");
    // The same ratio for a peer: whether the goal is within reach of that design here.
    for (const std::string& reference : g.reference_systems) {
      Goal r = g;
      r.system = reference;
      if (g.base_system == g.system) r.base_system = reference;
      if (std::optional<double> peer = ratioOf(r)) {
        std::string line = "  the same for " + r.system;
        std::printf("%-72s %8.2f %10s  (%s)\n", line.c_str(), *peer, boundText(g).c_str(),
                    holds(g, *peer) ? "would meet" : "would miss");
      }
    }
  }
}

void usage() {
  std::fprintf(
      stderr,
      "usage: flatstore-bench [--filter REGEX] [--repeat N] [--json FILE] [--system NAME]\n"
      "                       [--metrics] [--sync-delay-us N] [--list]\n"
      "  --filter REGEX  run only the scenarios whose name matches (std::regex search)\n"
      "  --repeat N      runs per scenario and system; the median is reported (3)\n"
      "  --json FILE     also write the results as a JSON array of records\n"
      "  --system REGEX  run only the systems whose name matches (for profiling)\n"
      "  --metrics       print flatstore's metrics() after each of its timed runs\n"
      "  --sync-delay-us N  make every SQLite sync N µs slower (a slower disk); skips lmdb\n"
      "  --list          print the scenarios with their systems and exit\n");
}

std::regex parseRegex(const std::string& flag, const std::string& text) {
  try {
    return std::regex(text);
  } catch (const std::regex_error& e) {
    die("bad " + flag + " '" + text + "': " + e.what());
  }
}

// The whole of `text` as a number in [min, max], or die() naming `flag`.
long parseCount(const std::string& flag, const std::string& text, long min, long max) {
  char* end = nullptr;
  long n = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || n < min || n > max) die("bad " + flag + " " + text);
  return n;
}

int run(int argc, char** argv) {
  std::optional<std::regex> filter, system_filter;
  int repeat = 3;
  std::string json;
  bool list = false;
  long sync_delay_us = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        die(a + " needs a value");
      }
      return argv[++i];
    };
    if (a == "--filter") {
      filter = parseRegex(a, value());
    } else if (a == "--repeat") {
      repeat = static_cast<int>(parseCount(a, value(), 1, 1000));
    } else if (a == "--system") {
      system_filter = parseRegex(a, value());
    } else if (a == "--json") {
      json = value();
    } else if (a == "--metrics") {
      printFlatstoreMetrics(true);
    } else if (a == "--sync-delay-us") {
      sync_delay_us = parseCount(a, value(), 0, 1000000);
    } else if (a == "--list") {
      list = true;
    } else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else {
      usage();
      die("unknown argument " + a);
    }
  }

  Registry all = registry();
  std::vector<Scenario> selected;
  for (Scenario& s : all.scenarios) {
    if (filter && !std::regex_search(s.name, *filter)) continue;
    if (system_filter) {
      std::erase_if(s.systems, [&](const System& sys) {
        return !std::regex_search(sys.name, *system_filter);
      });
    }
    // LMDB syncs with its own calls, which the slow-sync VFS does not slow down.
    if (sync_delay_us > 0) {
      std::erase_if(s.systems, [](const System& sys) { return sys.name == "lmdb"; });
    }
    if (!s.systems.empty()) selected.push_back(std::move(s));
  }
  if (list) {
    for (const Scenario& s : selected) {
      std::printf("%s:", s.name.c_str());
      for (const System& sys : s.systems) std::printf(" %s", sys.name.c_str());
      std::printf("\n");
    }
    return 0;
  }
  if (selected.empty()) die("no scenario matches the filters (see --list)");

  std::string pattern =
      (std::filesystem::temp_directory_path() / "flatstore-bench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) die("mkdtemp: " + std::string(std::strerror(errno)));
  const std::string dir = pattern;
  std::fprintf(stderr, "databases in %s; sqlite %s; %d repeat(s)\n", dir.c_str(),
               sqlite3_libversion(), repeat);
  if (sync_delay_us > 0) {
    if (!installSlowSyncVfs(std::chrono::microseconds(sync_delay_us))) {
      die("--sync-delay-us: SQLite has no default VFS to wrap");
    }
    std::printf("every SQLite sync made %ld µs slower (--sync-delay-us); lmdb not run\n\n",
                sync_delay_us);
  }

  // flatstore and the hand-written SQLite code must store the same bytes for one object.
  {
    const DocData& d = docs10k()[0];
    auto r = DocChangeRequest::creation();
    r.setId(d.id).setScore(d.score).setRank(d.rank).setSize(d.size).setRatio(d.ratio).setBody(
        d.body);
    auto encoded = r.encodeOver(nullptr);
    check(encoded.status(), "encode");
    flatbuffers::FlatBufferBuilder b;
    encodeDoc<Doc>(b, d);
    if (encoded->bytes.size() != b.GetSize() ||
        std::memcmp(encoded->bytes.data(), b.GetBufferPointer(), b.GetSize()) != 0) {
      die("the raw encoder does not produce flatstore's bytes");
    }
    std::fprintf(stderr, "object size: %u bytes (identical on every SQLite side)\n", b.GetSize());
  }

  std::vector<Row> rows;
  for (const Scenario& s : selected) {
    size_t n = s.systems.size();
    std::vector<std::vector<Measurement>> runs(n);
    for (int r = 0; r < repeat; ++r) {
      for (size_t k = 0; k < n; ++k) {
        // Rotate which system goes first, so drift does not favour one.
        const System& sys = s.systems[(k + static_cast<size_t>(r)) % n];
        std::string path = dir + "/" + s.name + "-" + sys.name + ".db";
        removeDatabase(path);
        int64_t syncs_before = slowSyncCount();
        Measurement m = sys.run(path);
        removeDatabase(path);
        std::string more;
        if (sync_delay_us > 0) {
          more += "  delayed_syncs " + std::to_string(slowSyncCount() - syncs_before);
        }
        for (const auto& [name, value] : m.extra) more += "  " + name + " " + opt(value, "%.0f");
        std::fprintf(stderr,
                     "[%s] %-20s run %d/%d: %10.0f ops/s  wall %.2f µs/op  cpu %.2f µs/op  "
                     "p50 %s  p99 %s  max %s µs%s\n",
                     s.name.c_str(), sys.name.c_str(), r + 1, repeat, m.ops_per_s,
                     1e6 / m.ops_per_s, m.cpu_us_per_op, opt(m.p50_us, "%.1f").c_str(),
                     opt(m.p99_us, "%.1f").c_str(), opt(m.max_us, "%.1f").c_str(), more.c_str());
        if (m.commits > 0) {
          std::fprintf(stderr, "    %" PRId64 " group commits, %.2f transactions per group\n",
                       m.commits, static_cast<double>(m.ops) / static_cast<double>(m.commits));
        }
        runs[(k + static_cast<size_t>(r)) % n].push_back(std::move(m));
      }
    }
    for (size_t k = 0; k < n; ++k) rows.push_back({s.name, s.systems[k].name, medianOf(runs[k])});
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);

  printTable(rows);
  printGoals(all.goals, rows);
  if (!json.empty()) writeJson(json, rows);
  return 0;
}

}  // namespace
}  // namespace flatstore::bench

int main(int argc, char** argv) { return flatstore::bench::run(argc, argv); }
