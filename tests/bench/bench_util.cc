#include "tests/bench/bench_util.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace flatstore::bench {

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "flatstore-bench: %s\n", message.c_str());
  std::exit(1);
}

void check(const absl::Status& s, const std::string& what) {
  if (!s.ok()) die(what + ": " + s.ToString());
}

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double microsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

std::vector<DocData> makeDocs(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ranks(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ranks[static_cast<size_t>(i)] = i;
  std::shuffle(ranks.begin(), ranks.end(), rng);
  std::uniform_int_distribution<int32_t> score(0, 9999);
  std::uniform_int_distribution<int64_t> size(0, 1'000'000'000);
  std::uniform_real_distribution<double> ratio(0.0, 1.0);
  std::uniform_int_distribution<int> letter(0, 25);
  std::vector<DocData> docs(static_cast<size_t>(n));
  char id[32];
  for (int i = 0; i < n; ++i) {
    DocData& d = docs[static_cast<size_t>(i)];
    std::snprintf(id, sizeof id, "doc-%06d", i);
    d.id = id;
    d.score = score(rng);
    d.rank = ranks[static_cast<size_t>(i)];
    d.size = size(rng);
    d.ratio = ratio(rng);
    d.body.resize(100);
    for (char& c : d.body) c = static_cast<char>('a' + letter(rng));
  }
  return docs;
}

const std::vector<DocData>& docs10k() {
  static const std::vector<DocData> docs = makeDocs(10'000, 1);
  return docs;
}
const std::vector<DocData>& docs100k() {
  static const std::vector<DocData> docs = makeDocs(100'000, 2);
  return docs;
}
const std::vector<DocData>& docsForThread(int t) {
  static const std::vector<std::vector<DocData>> docs = [] {
    std::vector<std::vector<DocData>> all;
    for (int i = 0; i < 4; ++i) all.push_back(makeDocs(10'000, 10 + static_cast<uint64_t>(i)));
    return all;
  }();
  return docs[static_cast<size_t>(t)];
}

Measurement fromLatencies(int64_t ops, double seconds, std::vector<double> latencies_us) {
  Measurement m;
  m.ops = ops;
  m.ops_per_s = static_cast<double>(ops) / seconds;
  m.cpu_us_per_op = Stopwatch::lastCpuSeconds() * 1e6 / static_cast<double>(ops);
  if (!latencies_us.empty()) {
    std::sort(latencies_us.begin(), latencies_us.end());
    auto at = [&](double q) {
      size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(latencies_us.size())));
      return latencies_us[std::clamp<size_t>(rank, 1, latencies_us.size()) - 1];
    };
    m.p50_us = at(0.50);
    m.p99_us = at(0.99);
    m.max_us = latencies_us.back();
  }
  return m;
}

Measurement throughput(int64_t ops, double seconds) { return fromLatencies(ops, seconds, {}); }

std::string quote(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// One connection in WAL mode with synchronous=NORMAL, as flatstore's writer.
sqlite3* openRaw(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    die("open " + path + ": " + sqlite3_errmsg(db));
  }
  auto exec = [&](const char* sql) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
      die(std::string(sql) + ": " + sqlite3_errmsg(db));
    }
  };
  // Wait for other connections' locks rather than failing (mt_insert_4x10k).
  sqlite3_busy_timeout(db, 30'000);
  exec("PRAGMA journal_mode = WAL");
  exec("PRAGMA synchronous = NORMAL");
  return db;
}

void execRaw(sqlite3* db, std::string_view sql) {
  std::string text(sql);
  if (sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    die(text + ": " + sqlite3_errmsg(db));
  }
}

// The generated DDL: the entity table and its index table with the SQL index.
void createRawTable(sqlite3* db, const TableDescription& d) {
  execRaw(db, d.create_table_sql);
  for (const IndexDescription& index : d.indexes) {
    execRaw(db, index.create_table_sql);
    execRaw(db, index.create_index_sql);
  }
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
