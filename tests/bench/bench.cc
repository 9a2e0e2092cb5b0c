// flatstore-bench: the same workloads through flatstore and through hand-written SQLite
// code ("sqlite-raw"), in one process, over the same table layout and settings.
//
//   flatstore-bench [--filter REGEX] [--repeat N] [--json FILE] [--system NAME] [--list]
//
// stdout gets the table (ops/s, latency percentiles, flatstore/raw ratio and its goal),
// --json the same records; stderr gets progress with diagnostics per run: wall and
// process CPU time per op (CPU well below wall means waiting: thread hand-offs or a busy
// machine) and, for flatstore's per-op transactions, the number of group commits.
//
// Profiling: `valgrind --tool=callgrind --instr-atstart=no flatstore-bench --repeat 1
// --filter '^update_10k$' --system flatstore` profiles only the timed regions (setup
// and the other system excluded), in every thread.
//
// Fairness rules, so the ratio means something:
//   - Both systems get a fresh database file per run, in one temp directory, in WAL mode
//     with synchronous=NORMAL and SQLite's default page cache and auto-checkpoint.
//   - The raw side creates its tables with the DDL of the generated table descriptions
//     (entity table and the `score` index table with its SQL index), stores the same
//     FlatBuffers bytes (CreateDoc, as the generated Pack does) and writes the index row.
//   - The raw side is what a competent engineer writes by hand: one connection (one per
//     thread in mt_insert_4x10k), statements prepared once and reused, one reused
//     FlatBufferBuilder, BEGIN IMMEDIATE/COMMIT around each transaction, and every fetched
//     blob verified with flatbuffers::Verifier before it is read (flatstore verifies).
//     Objects handed back to the caller are copied out of SQLite's memory, as
//     flatstore's are.
//   - Encoding happens inside the timed region on both sides; generating the input data
//     (ids, random fields) does not.
//   - Changes are read-modify-write on both sides: flatstore's changeOf applies the
//     touched field to the object as the transaction sees it, so the raw side re-reads
//     the row inside its transaction before re-encoding it.
//
// Scenarios (the names are read by other tools):
//   insert_10k               10,000 creations in one transaction
//   fetch_range_1667         a range on the NON-indexed `rank` selecting 1,667 of 10,000
//                            objects (scan, verify, filter); ops are objects returned
//   fetch_by_key_10k         each of 10,000 objects by primary key, one fetch at a time
//   update_10k               one field (`size`) of each of 10,000 objects, one transaction
//   update_10k_individually  the same as 10,000 sequential, waited transactions
//   delete_10k               10,000 deletions in one transaction
//   mt_insert_4x10k          4 threads, each 10,000 one-object transactions into its own
//                            table (flatstore: Doc0..Doc3; raw: a connection per thread,
//                            BEGIN IMMEDIATE per object, busy timeout)
//   insert_100k              100,000 creations in one transaction
// Latency percentiles are reported where an op is a transaction or a fetch of its own.
// Each scenario runs --repeat times per system (alternating) and the median is reported.
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define FLATSTORE_BENCH_PROFILE_START() CALLGRIND_START_INSTRUMENTATION
#define FLATSTORE_BENCH_PROFILE_STOP() CALLGRIND_STOP_INSTRUMENTATION
#else
#define FLATSTORE_BENCH_PROFILE_START() ((void)0)
#define FLATSTORE_BENCH_PROFILE_STOP() ((void)0)
#endif

#include "bench_mt_flatstore.h"
#include "docs_flatstore.h"
#include "flatbuffers/flatbuffers.h"
#include "flatstore/workspace.h"

namespace flatstore::bench {
namespace {

using Clock = std::chrono::steady_clock;

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

// Times one measured region. Run under `valgrind --tool=callgrind --instr-atstart=no`,
// only these regions (in every thread) are profiled; elsewhere the markers are a few
// no-op instructions.
class Stopwatch {
 public:
  Stopwatch() {
    FLATSTORE_BENCH_PROFILE_START();
    cpu_start_ = processCpuSeconds();
    start_ = Clock::now();
  }
  // The seconds since construction; ends the profiled region. Call once.
  double seconds() {
    double s = secondsSince(start_);
    last_cpu_seconds_ = processCpuSeconds() - cpu_start_;
    FLATSTORE_BENCH_PROFILE_STOP();
    return s;
  }
  // CPU time (user + system, all threads) of the last timed region: compared with the
  // wall time it shows how much of a run was spent waiting rather than computing.
  static double lastCpuSeconds() { return last_cpu_seconds_; }

 private:
  static double processCpuSeconds() {
    rusage u;
    getrusage(RUSAGE_SELF, &u);
    auto seconds = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) + t.tv_usec * 1e-6;
    };
    return seconds(u.ru_utime) + seconds(u.ru_stime);
  }

  Clock::time_point start_;
  double cpu_start_;
  static inline double last_cpu_seconds_ = 0;
};

// ---------------------------------------------------------------------------------------
// Input data, generated once and shared by both systems.

struct DocData {
  std::string id;
  int32_t score;
  int32_t rank;
  int64_t size;
  double ratio;
  std::string body;
};

// `rank` is a permutation of 0..n-1, so a rank range of n/6 selects exactly n/6 objects.
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
// The order in which fetch_by_key_10k looks objects up: the same for both systems.
const std::vector<int>& lookupOrder() {
  static const std::vector<int> order = [] {
    std::vector<int> o(10'000);
    for (int i = 0; i < 10'000; ++i) o[static_cast<size_t>(i)] = i;
    std::mt19937_64 rng(3);
    std::shuffle(o.begin(), o.end(), rng);
    return o;
  }();
  return order;
}

constexpr int32_t kRankLow = 5000;
constexpr int32_t kRankHigh = 5000 + 1667;  // exclusive: 1,667 of the 10,000 ranks
constexpr int kRangeQueries = 20;           // range queries per measurement

// ---------------------------------------------------------------------------------------
// Results.

struct Measurement {
  double ops_per_s = 0;
  std::optional<double> p50_us, p99_us, max_us;
  int64_t ops = 0;
  double cpu_us_per_op = 0;  // process CPU time per op (diagnostic, stderr only)
  int64_t commits = 0;       // flatstore's group commits in the timed region (diagnostic)
};

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

// ---------------------------------------------------------------------------------------
// FlatBuffers encoding for the raw side: the generated Create<T>, the same call the
// generated object API's Pack makes, so both systems store identical bytes.

template <class T>
struct Fb;
#define FLATSTORE_BENCH_FB(T)                                                                     \
  template <>                                                                                     \
  struct Fb<T> {                                                                                  \
    static flatbuffers::Offset<T> create(flatbuffers::FlatBufferBuilder& b,                       \
                                         flatbuffers::Offset<flatbuffers::String> id,             \
                                         int32_t score, int32_t rank, int64_t size, double ratio, \
                                         flatbuffers::Offset<flatbuffers::String> body) {         \
      return Create##T(b, id, score, rank, size, ratio, body);                                    \
    }                                                                                             \
  };
FLATSTORE_BENCH_FB(Doc)
FLATSTORE_BENCH_FB(Doc0)
FLATSTORE_BENCH_FB(Doc1)
FLATSTORE_BENCH_FB(Doc2)
FLATSTORE_BENCH_FB(Doc3)
#undef FLATSTORE_BENCH_FB

template <class T>
void encodeDoc(flatbuffers::FlatBufferBuilder& b, const DocData& d) {
  b.Clear();
  auto id = b.CreateString(d.id);
  auto body = b.CreateString(d.body);
  b.Finish(Fb<T>::create(b, id, d.score, d.rank, d.size, d.ratio, body));
}

// Re-encodes the stored object `old` with a new `size`.
template <class T>
void encodeWithSize(flatbuffers::FlatBufferBuilder& b, const T& old, int64_t size) {
  b.Clear();
  auto id =
      old.id() == nullptr ? flatbuffers::Offset<flatbuffers::String>() : b.CreateString(old.id());
  auto body = old.body() == nullptr ? flatbuffers::Offset<flatbuffers::String>()
                                    : b.CreateString(old.body());
  b.Finish(Fb<T>::create(b, id, old.score(), old.rank(), size, old.ratio(), body));
}

template <class T>
const T* verifiedRoot(const void* blob, int size) {
  if (blob == nullptr) return nullptr;
  flatbuffers::Verifier verifier(static_cast<const uint8_t*>(blob), static_cast<size_t>(size));
  if (!verifier.VerifyBuffer<T>(nullptr)) return nullptr;
  return flatbuffers::GetRoot<T>(blob);
}

// ---------------------------------------------------------------------------------------
// The hand-written SQLite side.

std::string quote(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3* db, const std::string& sql) : db_(db) {
    if (sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s_, nullptr) !=
        SQLITE_OK) {
      die("prepare `" + sql + "`: " + sqlite3_errmsg(db));
    }
  }
  Stmt(Stmt&& o) noexcept : db_(o.db_), s_(o.s_) { o.s_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept {
    std::swap(db_, o.db_);
    std::swap(s_, o.s_);
    return *this;
  }
  ~Stmt() { sqlite3_finalize(s_); }
  sqlite3_stmt* get() const { return s_; }
  // Steps once: true for a row, false when done; dies on error.
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) {
      die(std::string("step `") + sqlite3_sql(s_) + "`: " + sqlite3_errmsg(db_));
    }
    return false;
  }
  // Runs a statement without result rows and resets it.
  void run() {
    while (step()) {
    }
    sqlite3_reset(s_);
  }
  void reset() { sqlite3_reset(s_); }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
};

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

// An object copied out of SQLite, as a hand-written fetch returns it.
struct RawObject {
  int64_t rowid = 0;
  int64_t vs = 0;
  std::unique_ptr<uint8_t[]> bytes;  // new[]: aligned for every FlatBuffers scalar
  size_t size = 0;

  static RawObject copyOf(int64_t rowid, int64_t vs, const void* blob, int n) {
    RawObject o;
    o.rowid = rowid;
    o.vs = vs;
    o.size = static_cast<size_t>(n);
    o.bytes.reset(new uint8_t[o.size]);
    std::memcpy(o.bytes.get(), blob, o.size);
    return o;
  }
};

// A raw connection with every statement the scenarios use on one entity type, prepared
// once.
template <class T>
class RawStore {
 public:
  using Entity = typename EntityTraits<T>::Entity;

  explicit RawStore(sqlite3* db) : db_(db) {
    const TableDescription& d = Entity::description();
    std::string t = quote(d.table_name);
    std::string k = quote(d.key_columns[0].column);
    std::string idx = quote(d.indexes[0].table);
    begin_ = Stmt(db, "BEGIN IMMEDIATE");
    commit_ = Stmt(db, "COMMIT");
    insert_ = Stmt(db, "INSERT INTO " + t + "(" + k + ", p, vs) VALUES(?, ?, ?)");
    index_insert_ = Stmt(db, "INSERT INTO " + idx + "(rowid, value) VALUES(?, ?)");
    by_key_ = Stmt(db, "SELECT rowid, p, vs FROM " + t + " WHERE " + k + " = ?");
    by_rowid_ = Stmt(db, "SELECT p FROM " + t + " WHERE rowid = ?");
    scan_ = Stmt(db, "SELECT rowid, p, vs FROM " + t);
    update_ = Stmt(db, "UPDATE " + t + " SET p = ?, vs = ? WHERE rowid = ?");
    delete_ = Stmt(db, "DELETE FROM " + t + " WHERE rowid = ?");
    index_delete_ = Stmt(db, "DELETE FROM " + idx + " WHERE rowid = ?");
    count_ = Stmt(db, "SELECT count(*) FROM " + t);
  }

  void begin() { begin_.run(); }
  void commit() {
    commit_.run();
    seq_ += 1;
  }

  // Encodes and inserts one object and its index row. REQUIRES: inside begin/commit.
  void insert(const DocData& d, int position) {
    encodeDoc<T>(builder_, d);
    sqlite3_bind_text(insert_.get(), 1, d.id.data(), static_cast<int>(d.id.size()), SQLITE_STATIC);
    sqlite3_bind_blob(insert_.get(), 2, builder_.GetBufferPointer(),
                      static_cast<int>(builder_.GetSize()), SQLITE_STATIC);
    sqlite3_bind_int64(insert_.get(), 3, versionstamp(position));
    insert_.run();
    int64_t rowid = sqlite3_last_insert_rowid(db_);
    const T* root = flatbuffers::GetRoot<T>(builder_.GetBufferPointer());
    sqlite3_bind_int64(index_insert_.get(), 1, rowid);
    sqlite3_bind_int64(index_insert_.get(), 2, root->score());
    index_insert_.run();
  }

  void insertAll(const std::vector<DocData>& docs) {
    begin();
    for (size_t i = 0; i < docs.size(); ++i) insert(docs[i], static_cast<int>(i));
    commit();
  }

  // Looks one object up by primary key; nullopt when absent.
  std::optional<RawObject> get(const std::string& id) {
    sqlite3_bind_text(by_key_.get(), 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
    std::optional<RawObject> out;
    if (by_key_.step()) {
      const void* blob = sqlite3_column_blob(by_key_.get(), 1);
      int n = sqlite3_column_bytes(by_key_.get(), 1);
      if (verifiedRoot<T>(blob, n) == nullptr) die("get: a stored object fails verification");
      out = RawObject::copyOf(sqlite3_column_int64(by_key_.get(), 0),
                              sqlite3_column_int64(by_key_.get(), 2), blob, n);
    }
    by_key_.reset();
    return out;
  }

  // Every object whose `rank` is in [low, high): a scan that verifies and decodes each
  // stored object, since the field has no index.
  std::vector<RawObject> rankRange(int32_t low, int32_t high) {
    std::vector<RawObject> out;
    while (scan_.step()) {
      const void* blob = sqlite3_column_blob(scan_.get(), 1);
      int n = sqlite3_column_bytes(scan_.get(), 1);
      const T* doc = verifiedRoot<T>(blob, n);
      if (doc == nullptr) die("scan: a stored object fails verification");
      if (doc->rank() >= low && doc->rank() < high) {
        out.push_back(RawObject::copyOf(sqlite3_column_int64(scan_.get(), 0),
                                        sqlite3_column_int64(scan_.get(), 2), blob, n));
      }
    }
    scan_.reset();
    return out;
  }

  std::vector<RawObject> all() { return rankRange(INT32_MIN, INT32_MAX); }

  // Sets `size` of the object at `rowid`: re-reads it, re-encodes it, writes it. The
  // index is untouched because `score` does not change. REQUIRES: inside begin/commit.
  void setSize(int64_t rowid, int64_t size, int position) {
    sqlite3_bind_int64(by_rowid_.get(), 1, rowid);
    if (!by_rowid_.step()) die("update: no object at rowid " + std::to_string(rowid));
    const T* old = verifiedRoot<T>(sqlite3_column_blob(by_rowid_.get(), 0),
                                   sqlite3_column_bytes(by_rowid_.get(), 0));
    if (old == nullptr) die("update: a stored object fails verification");
    encodeWithSize(builder_, *old, size);
    by_rowid_.reset();
    sqlite3_bind_blob(update_.get(), 1, builder_.GetBufferPointer(),
                      static_cast<int>(builder_.GetSize()), SQLITE_STATIC);
    sqlite3_bind_int64(update_.get(), 2, versionstamp(position));
    sqlite3_bind_int64(update_.get(), 3, rowid);
    update_.run();
    if (sqlite3_changes(db_) != 1) die("update: no row changed");
  }

  // Deletes the object at `rowid` and its index row. REQUIRES: inside begin/commit.
  void remove(int64_t rowid) {
    sqlite3_bind_int64(delete_.get(), 1, rowid);
    delete_.run();
    if (sqlite3_changes(db_) != 1) die("delete: no object at rowid " + std::to_string(rowid));
    sqlite3_bind_int64(index_delete_.get(), 1, rowid);
    index_delete_.run();
  }

  int64_t count() {
    count_.step();
    int64_t n = sqlite3_column_int64(count_.get(), 0);
    count_.reset();
    return n;
  }

 private:
  int64_t versionstamp(int position) const {
    return static_cast<int64_t>((seq_ + 1) << 16 | static_cast<uint64_t>(position & 0xffff));
  }

  sqlite3* db_;
  uint64_t seq_ = 0;
  flatbuffers::FlatBufferBuilder builder_;
  Stmt begin_, commit_, insert_, index_insert_, by_key_, by_rowid_, scan_, update_, delete_,
      index_delete_, count_;
};

// One raw connection with the Doc table created.
struct RawDoc {
  sqlite3* db;
  std::unique_ptr<RawStore<Doc>> store;

  explicit RawDoc(const std::string& path) : db(openRaw(path)) {
    createRawTable(db, DocEntity::description());
    store = std::make_unique<RawStore<Doc>>(db);
  }
  ~RawDoc() {
    store.reset();
    sqlite3_close_v2(db);
  }
};

// ---------------------------------------------------------------------------------------
// The flatstore side.

std::unique_ptr<Workspace> openWorkspace(const std::string& path) {
  auto ws = Workspace::open(path);
  check(ws.status(), "open " + path);
  return std::move(*ws);
}

// Creates the table (flatstore creates it at first use) outside the timed region.
template <class T>
void touchTable(Workspace& ws) {
  check(ws.fetch<T>().count().status(), "count");
}

template <class T>
absl::Status submitCreation(TransactionContext& txn, const DocData& d) {
  auto r = EntityTraits<T>::ChangeRequest::creation();
  r.setId(d.id).setScore(d.score).setRank(d.rank).setSize(d.size).setRatio(d.ratio).setBody(d.body);
  auto outcome = txn.submit(r);
  if (!outcome.ok()) return outcome.status();
  if (*outcome != SubmitOutcome::kInserted) return absl::InternalError("not inserted");
  return absl::OkStatus();
}

void flatInsertAll(Workspace& ws, const std::vector<DocData>& docs) {
  auto done = ws.performChangesAndWait<Doc>([&](TransactionContext& txn) -> absl::Status {
    for (const DocData& d : docs) FLATSTORE_RETURN_IF_ERROR(submitCreation<Doc>(txn, d));
    return absl::OkStatus();
  });
  check(done.status(), "insert");
  if (done->inserted != static_cast<int64_t>(docs.size())) die("insert: wrong count");
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

// ---------------------------------------------------------------------------------------
// Scenarios. Each run gets a fresh database at `path`; setup is not timed.

Measurement flatInsert(const std::string& path, const std::vector<DocData>& docs) {
  auto ws = openWorkspace(path);
  touchTable<Doc>(*ws);
  Stopwatch timer;
  flatInsertAll(*ws, docs);
  double s = timer.seconds();
  expectCount(*ws->fetch<Doc>().count(), static_cast<int64_t>(docs.size()), "flatstore insert");
  return throughput(static_cast<int64_t>(docs.size()), s);
}

Measurement rawInsert(const std::string& path, const std::vector<DocData>& docs) {
  RawDoc raw(path);
  Stopwatch timer;
  raw.store->insertAll(docs);
  double s = timer.seconds();
  expectCount(raw.store->count(), static_cast<int64_t>(docs.size()), "raw insert");
  return throughput(static_cast<int64_t>(docs.size()), s);
}

Measurement flatFetchRange(const std::string& path) {
  using F = DocFields;
  auto ws = openWorkspace(path);
  flatInsertAll(*ws, docs10k());
  int64_t objects = 0;
  Stopwatch timer;
  for (int q = 0; q < kRangeQueries; ++q) {
    auto r = ws->fetch<Doc>().where(F::rank >= kRankLow && F::rank < kRankHigh).all();
    check(r.status(), "fetch range");
    expectCount(static_cast<int64_t>(r->size()), kRankHigh - kRankLow, "flatstore range");
    objects += static_cast<int64_t>(r->size());
  }
  return throughput(objects, timer.seconds());
}

Measurement rawFetchRange(const std::string& path) {
  RawDoc raw(path);
  raw.store->insertAll(docs10k());
  int64_t objects = 0;
  Stopwatch timer;
  for (int q = 0; q < kRangeQueries; ++q) {
    std::vector<RawObject> r = raw.store->rankRange(kRankLow, kRankHigh);
    expectCount(static_cast<int64_t>(r.size()), kRankHigh - kRankLow, "raw range");
    objects += static_cast<int64_t>(r.size());
  }
  return throughput(objects, timer.seconds());
}

Measurement flatFetchByKey(const std::string& path) {
  auto ws = openWorkspace(path);
  const auto& docs = docs10k();
  flatInsertAll(*ws, docs);
  std::vector<double> lat;
  lat.reserve(docs.size());
  Stopwatch timer;
  for (int i : lookupOrder()) {
    auto t0 = Clock::now();
    auto r = ws->get<Doc>(docs[static_cast<size_t>(i)].id);
    lat.push_back(microsSince(t0));
    check(r.status(), "get");
    if (*r == nullptr) die("get: missing " + docs[static_cast<size_t>(i)].id);
  }
  double s = timer.seconds();
  return fromLatencies(static_cast<int64_t>(docs.size()), s, std::move(lat));
}

Measurement rawFetchByKey(const std::string& path) {
  RawDoc raw(path);
  const auto& docs = docs10k();
  raw.store->insertAll(docs);
  std::vector<double> lat;
  lat.reserve(docs.size());
  Stopwatch timer;
  for (int i : lookupOrder()) {
    auto t0 = Clock::now();
    std::optional<RawObject> r = raw.store->get(docs[static_cast<size_t>(i)].id);
    lat.push_back(microsSince(t0));
    if (!r.has_value()) die("get: missing " + docs[static_cast<size_t>(i)].id);
  }
  double s = timer.seconds();
  return fromLatencies(static_cast<int64_t>(docs.size()), s, std::move(lat));
}

// The objects are fetched before the timed region on both sides (the app holds them);
// each change sets `size` to held size + delta.
Measurement flatUpdate(const std::string& path) {
  auto ws = openWorkspace(path);
  flatInsertAll(*ws, docs10k());
  auto held = flatAll(*ws);
  Stopwatch timer;
  auto done = ws->performChangesAndWait<Doc>([&](TransactionContext& txn) -> absl::Status {
    for (const auto& o : held) {
      auto r = DocChangeRequest::changeOf(*o);
      r.setSize(o->size() + 1);
      FLATSTORE_ASSIGN_OR_RETURN(SubmitOutcome outcome, txn.submit(r));
      if (outcome != SubmitOutcome::kUpdated) return absl::InternalError("not updated");
    }
    return absl::OkStatus();
  });
  double s = timer.seconds();
  check(done.status(), "update");
  expectCount(done->updated, static_cast<int64_t>(held.size()), "flatstore update");
  return throughput(static_cast<int64_t>(held.size()), s);
}

Measurement rawUpdate(const std::string& path) {
  RawDoc raw(path);
  raw.store->insertAll(docs10k());
  std::vector<RawObject> held = raw.store->all();
  Stopwatch timer;
  raw.store->begin();
  for (size_t i = 0; i < held.size(); ++i) {
    const Doc* o = flatbuffers::GetRoot<Doc>(held[i].bytes.get());
    raw.store->setSize(held[i].rowid, o->size() + 1, static_cast<int>(i));
  }
  raw.store->commit();
  double s = timer.seconds();
  return throughput(static_cast<int64_t>(held.size()), s);
}

Measurement flatUpdateIndividually(const std::string& path) {
  auto ws = openWorkspace(path);
  flatInsertAll(*ws, docs10k());
  auto held = flatAll(*ws);
  std::vector<double> lat;
  lat.reserve(held.size());
  uint64_t first_commit = ws->lastCommitSequence();
  Stopwatch timer;
  for (const auto& o : held) {
    auto t0 = Clock::now();
    auto done = ws->performChangesAndWait<Doc>([&](TransactionContext& txn) -> absl::Status {
      auto r = DocChangeRequest::changeOf(*o);
      r.setSize(o->size() + 2);
      return txn.submit(r).status();
    });
    lat.push_back(microsSince(t0));
    check(done.status(), "update");
    if (done->updated != 1) die("update: not updated");
  }
  double s = timer.seconds();
  Measurement m = fromLatencies(static_cast<int64_t>(held.size()), s, std::move(lat));
  m.commits = static_cast<int64_t>(ws->lastCommitSequence() - first_commit);
  return m;
}

Measurement rawUpdateIndividually(const std::string& path) {
  RawDoc raw(path);
  raw.store->insertAll(docs10k());
  std::vector<RawObject> held = raw.store->all();
  std::vector<double> lat;
  lat.reserve(held.size());
  Stopwatch timer;
  for (const RawObject& h : held) {
    auto t0 = Clock::now();
    raw.store->begin();
    const Doc* o = flatbuffers::GetRoot<Doc>(h.bytes.get());
    raw.store->setSize(h.rowid, o->size() + 2, 0);
    raw.store->commit();
    lat.push_back(microsSince(t0));
  }
  double s = timer.seconds();
  return fromLatencies(static_cast<int64_t>(held.size()), s, std::move(lat));
}

Measurement flatDelete(const std::string& path) {
  auto ws = openWorkspace(path);
  flatInsertAll(*ws, docs10k());
  auto held = flatAll(*ws);
  Stopwatch timer;
  auto done = ws->performChangesAndWait<Doc>([&](TransactionContext& txn) -> absl::Status {
    for (const auto& o : held) {
      FLATSTORE_ASSIGN_OR_RETURN(SubmitOutcome outcome,
                                 txn.submit(DocChangeRequest::deletionOf(*o)));
      if (outcome != SubmitOutcome::kDeleted) return absl::InternalError("not deleted");
    }
    return absl::OkStatus();
  });
  double s = timer.seconds();
  check(done.status(), "delete");
  expectCount(*ws->fetch<Doc>().count(), 0, "flatstore delete");
  return throughput(static_cast<int64_t>(held.size()), s);
}

Measurement rawDelete(const std::string& path) {
  RawDoc raw(path);
  raw.store->insertAll(docs10k());
  std::vector<RawObject> held = raw.store->all();
  Stopwatch timer;
  raw.store->begin();
  for (const RawObject& h : held) raw.store->remove(h.rowid);
  raw.store->commit();
  double s = timer.seconds();
  expectCount(raw.store->count(), 0, "raw delete");
  return throughput(static_cast<int64_t>(held.size()), s);
}

// Releases all threads of a multi-threaded run at once, after each has done its setup.
class StartGate {
 public:
  // Called by each thread when it is ready; returns once the gate opens.
  void arriveAndWait() {
    std::unique_lock<std::mutex> lock(mu_);
    arrived_ += 1;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  // Waits until `n` threads arrived.
  void waitArrived(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return arrived_ >= n; });
  }
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool open_ = false;
};

constexpr int kThreads = 4;

template <class T>
void flatMtWorker(Workspace& ws, const std::vector<DocData>& docs, StartGate& gate,
                  std::vector<double>* lat) {
  gate.arriveAndWait();
  for (const DocData& d : docs) {
    auto t0 = Clock::now();
    auto done = ws.performChangesAndWait<T>(
        [&](TransactionContext& txn) { return submitCreation<T>(txn, d); });
    lat->push_back(microsSince(t0));
    check(done.status(), "mt insert");
  }
}

template <class T>
void rawMtWorker(const std::string& path, const std::vector<DocData>& docs, StartGate& gate,
                 std::vector<double>* lat) {
  sqlite3* db = openRaw(path);
  {
    RawStore<T> store(db);
    gate.arriveAndWait();
    for (size_t i = 0; i < docs.size(); ++i) {
      auto t0 = Clock::now();
      store.begin();
      store.insert(docs[i], 0);
      store.commit();
      lat->push_back(microsSince(t0));
    }
  }
  sqlite3_close_v2(db);
}

template <class Launch>
Measurement runThreads(Launch launch) {
  StartGate gate;
  std::vector<std::vector<double>> lat(kThreads);
  for (auto& l : lat) l.reserve(10'000);
  std::thread threads[kThreads] = {
      std::thread([&] { launch.template operator()<Doc0>(0, gate, &lat[0]); }),
      std::thread([&] { launch.template operator()<Doc1>(1, gate, &lat[1]); }),
      std::thread([&] { launch.template operator()<Doc2>(2, gate, &lat[2]); }),
      std::thread([&] { launch.template operator()<Doc3>(3, gate, &lat[3]); }),
  };
  // Raw threads open their connections before they arrive.
  gate.waitArrived(kThreads);
  Stopwatch timer;
  gate.open();
  for (auto& t : threads) t.join();
  double s = timer.seconds();
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  int64_t ops = static_cast<int64_t>(all.size());
  return fromLatencies(ops, s, std::move(all));
}

Measurement flatMtInsert(const std::string& path) {
  auto ws = openWorkspace(path);
  touchTable<Doc0>(*ws);
  touchTable<Doc1>(*ws);
  touchTable<Doc2>(*ws);
  touchTable<Doc3>(*ws);
  uint64_t first_commit = ws->lastCommitSequence();
  Measurement m = runThreads([&]<class T>(int t, StartGate& gate, std::vector<double>* lat) {
    flatMtWorker<T>(*ws, docsForThread(t), gate, lat);
  });
  m.commits = static_cast<int64_t>(ws->lastCommitSequence() - first_commit);
  expectCount(*ws->fetch<Doc0>().count() + *ws->fetch<Doc1>().count() + *ws->fetch<Doc2>().count() +
                  *ws->fetch<Doc3>().count(),
              kThreads * 10'000, "flatstore mt insert");
  return m;
}

Measurement rawMtInsert(const std::string& path) {
  sqlite3* db = openRaw(path);
  createRawTable(db, Doc0Entity::description());
  createRawTable(db, Doc1Entity::description());
  createRawTable(db, Doc2Entity::description());
  createRawTable(db, Doc3Entity::description());
  Measurement m = runThreads([&]<class T>(int t, StartGate& gate, std::vector<double>* lat) {
    rawMtWorker<T>(path, docsForThread(t), gate, lat);
  });
  int64_t total = 0;
  for (const char* t : {"Doc0", "Doc1", "Doc2", "Doc3"}) {
    Stmt count(db, "SELECT count(*) FROM \"flatstore.bench." + std::string(t) + "\"");
    count.step();
    total += sqlite3_column_int64(count.get(), 0);
  }
  sqlite3_close_v2(db);
  expectCount(total, kThreads * 10'000, "raw mt insert");
  return m;
}

// ---------------------------------------------------------------------------------------
// Driver.

struct Scenario {
  const char* name;
  std::function<Measurement(const std::string&)> flatstore;
  std::function<Measurement(const std::string&)> raw;
  double goal;  // flatstore/raw ops ratio to reach
};

std::vector<Scenario> scenarios() {
  return {
      {"insert_10k", [](const std::string& p) { return flatInsert(p, docs10k()); },
       [](const std::string& p) { return rawInsert(p, docs10k()); }, 0.6},
      {"fetch_range_1667", flatFetchRange, rawFetchRange, 0.6},
      {"fetch_by_key_10k", flatFetchByKey, rawFetchByKey, 0.6},
      {"update_10k", flatUpdate, rawUpdate, 0.6},
      {"update_10k_individually", flatUpdateIndividually, rawUpdateIndividually, 0.6},
      {"delete_10k", flatDelete, rawDelete, 0.6},
      {"mt_insert_4x10k", flatMtInsert, rawMtInsert, 0.6},
      {"insert_100k", [](const std::string& p) { return flatInsert(p, docs100k()); },
       [](const std::string& p) { return rawInsert(p, docs100k()); }, 0.75},
  };
}

void removeDatabase(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::error_code ec;
    std::filesystem::remove(path + suffix, ec);
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The median of each metric over the repeats.
Measurement medianOf(const std::vector<Measurement>& runs) {
  Measurement m;
  std::vector<double> ops, p50, p99, mx;
  for (const Measurement& r : runs) {
    ops.push_back(r.ops_per_s);
    if (r.p50_us) p50.push_back(*r.p50_us);
    if (r.p99_us) p99.push_back(*r.p99_us);
    if (r.max_us) mx.push_back(*r.max_us);
  }
  m.ops_per_s = median(ops);
  if (!p50.empty()) m.p50_us = median(p50);
  if (!p99.empty()) m.p99_us = median(p99);
  if (!mx.empty()) m.max_us = median(mx);
  return m;
}

struct Row {
  std::string scenario;
  std::string system;
  Measurement m;
  double goal;                  // the flatstore/raw ratio the scenario should reach
  std::optional<double> ratio;  // flatstore/raw, on flatstore's row when both ran
};

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
                 "\"p50_us\": %s, \"p99_us\": %s, \"max_us\": %s}%s\n",
                 r.scenario.c_str(), r.system.c_str(), jsonNumber(r.m.ops_per_s).c_str(),
                 jsonNumber(r.m.p50_us).c_str(), jsonNumber(r.m.p99_us).c_str(),
                 jsonNumber(r.m.max_us).c_str(), i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "]\n");
  if (std::fclose(f) != 0) die("cannot write " + file);
}

void usage() {
  std::fprintf(
      stderr,
      "usage: flatstore-bench [--filter REGEX] [--repeat N] [--json FILE] [--system NAME]\n"
      "                       [--list]\n"
      "  --filter REGEX  run only the scenarios whose name matches (std::regex search)\n"
      "  --repeat N      runs per scenario and system; the median is reported (3)\n"
      "  --json FILE     also write the results as a JSON array of records\n"
      "  --system NAME   run only one system, flatstore or sqlite-raw (for profiling)\n"
      "  --list          print the scenario names and exit\n");
}

int run(int argc, char** argv) {
  std::optional<std::regex> filter;
  int repeat = 3;
  std::string json;
  bool run_flat = true;
  bool run_raw = true;
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
      std::string re = value();
      try {
        filter = std::regex(re);
      } catch (const std::regex_error& e) {
        die("bad --filter '" + re + "': " + e.what());
      }
    } else if (a == "--repeat") {
      std::string v = value();
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || n < 1 || n > 1000) die("bad --repeat " + v);
      repeat = static_cast<int>(n);
    } else if (a == "--system") {
      std::string v = value();
      if (v != "flatstore" && v != "sqlite-raw") die("--system takes flatstore or sqlite-raw");
      run_flat = v == "flatstore";
      run_raw = !run_flat;
    } else if (a == "--json") {
      json = value();
    } else if (a == "--list") {
      for (const Scenario& s : scenarios()) std::printf("%s\n", s.name);
      return 0;
    } else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else {
      usage();
      die("unknown argument " + a);
    }
  }

  std::vector<Scenario> selected;
  for (Scenario& s : scenarios()) {
    if (!filter || std::regex_search(s.name, *filter)) selected.push_back(std::move(s));
  }
  if (selected.empty()) die("no scenario matches the filter (see --list)");

  std::string pattern =
      (std::filesystem::temp_directory_path() / "flatstore-bench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) die("mkdtemp: " + std::string(std::strerror(errno)));
  const std::string dir = pattern;
  std::fprintf(stderr, "databases in %s; sqlite %s; %d repeat(s)\n", dir.c_str(),
               sqlite3_libversion(), repeat);

  // Both systems must store the same bytes for the same object.
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
    std::fprintf(stderr, "object size: %u bytes (identical on both sides)\n", b.GetSize());
  }

  std::vector<Row> rows;
  for (const Scenario& s : selected) {
    std::vector<Measurement> flat_runs, raw_runs;
    for (int r = 0; r < repeat; ++r) {
      for (int side = 0; side < 2; ++side) {
        // Alternate which system goes first, so drift does not favour one.
        bool flat = (side == 0) == (r % 2 == 0);
        if (flat ? !run_flat : !run_raw) continue;
        std::string path = dir + "/" + s.name + (flat ? "-flatstore" : "-raw") + ".db";
        removeDatabase(path);
        Measurement m = flat ? s.flatstore(path) : s.raw(path);
        removeDatabase(path);
        std::fprintf(stderr,
                     "[%s] %-10s run %d/%d: %10.0f ops/s  wall %.2f µs/op  cpu %.2f µs/op  "
                     "p50 %s  p99 %s  max %s µs\n",
                     s.name, flat ? "flatstore" : "sqlite-raw", r + 1, repeat, m.ops_per_s,
                     1e6 / m.ops_per_s, m.cpu_us_per_op, opt(m.p50_us, "%.1f").c_str(),
                     opt(m.p99_us, "%.1f").c_str(), opt(m.max_us, "%.1f").c_str());
        if (m.commits > 0) {
          std::fprintf(stderr, "    %" PRId64 " group commits, %.2f transactions per group\n",
                       m.commits, static_cast<double>(m.ops) / static_cast<double>(m.commits));
        }
        (flat ? flat_runs : raw_runs).push_back(m);
      }
    }
    if (run_flat) rows.push_back({s.name, "flatstore", medianOf(flat_runs), s.goal, {}});
    if (run_raw) rows.push_back({s.name, "sqlite-raw", medianOf(raw_runs), s.goal, {}});
    if (run_flat && run_raw) {
      rows[rows.size() - 2].ratio = rows[rows.size() - 2].m.ops_per_s / rows.back().m.ops_per_s;
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);

  std::printf("%-24s %-11s %12s %10s %10s %10s %9s %s\n", "scenario", "system", "ops/s", "p50 µs",
              "p99 µs", "max µs", "flat/raw", "goal");
  for (const Row& r : rows) {
    std::string goal;
    if (r.ratio) goal = opt(r.goal, ">= %.2f") + (*r.ratio >= r.goal ? " ok" : " MISSED");
    std::printf("%-24s %-11s %12.0f %10s %10s %10s %9s %s\n", r.scenario.c_str(), r.system.c_str(),
                r.m.ops_per_s, opt(r.m.p50_us, "%.1f").c_str(), opt(r.m.p99_us, "%.1f").c_str(),
                opt(r.m.max_us, "%.1f").c_str(), opt(r.ratio, "%.2f").c_str(), goal.c_str());
  }
  if (!json.empty()) writeJson(json, rows);
  return 0;
}

}  // namespace
}  // namespace flatstore::bench

int main(int argc, char** argv) { return flatstore::bench::run(argc, argv); }
