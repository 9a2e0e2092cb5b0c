// Shared pieces of flatstore-bench: timing, results, input data, the hand-written SQLite
// side (statements, the raw store) and the flatstore helpers every scenario file uses,
// plus the scenario registry the driver (main.cc) runs.
#pragma once

#include <sqlite3.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
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

using Clock = std::chrono::steady_clock;

// Prints "flatstore-bench: MESSAGE" and exits 1: a benchmark that cannot do its work
// must not report a figure.
[[noreturn]] void die(const std::string& message);
// die(what + status) unless `s` is ok.
void check(const absl::Status& s, const std::string& what);
double secondsSince(Clock::time_point start);
double microsSince(Clock::time_point start);

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
// Input data, generated once and shared by every system.

struct DocData {
  std::string id;
  int32_t score;
  int32_t rank;
  int64_t size;
  double ratio;
  std::string body;
};

// `n` documents with ids doc-000000..., random scalars and a 100-byte body; `rank` is a
// permutation of 0..n-1, so a rank range of n/6 selects exactly n/6 objects.
std::vector<DocData> makeDocs(int n, uint64_t seed);
const std::vector<DocData>& docs10k();
const std::vector<DocData>& docs100k();
// 10,000 documents for thread `t` (0..3) of the multi-threaded scenarios.
const std::vector<DocData>& docsForThread(int t);

// ---------------------------------------------------------------------------------------
// Results.

struct Measurement {
  double ops_per_s = 0;
  std::optional<double> p50_us, p99_us, max_us;
  int64_t ops = 0;
  double cpu_us_per_op = 0;  // process CPU time per op (diagnostic, stderr only)
  int64_t commits = 0;       // flatstore's group commits in the timed region (diagnostic)
  // Further figures of a scenario, written into its JSON records and the table under
  // their names (for example "wal_max_bytes"); the driver reports their medians.
  std::vector<std::pair<std::string, double>> extra;
};

// A measurement of `ops` operations in `seconds`, with percentiles of the latencies when
// there are any, and the CPU time of the last Stopwatch region.
Measurement fromLatencies(int64_t ops, double seconds, std::vector<double> latencies_us);
Measurement throughput(int64_t ops, double seconds);

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

// `name` as an SQL identifier in double quotes.
std::string quote(std::string_view name);

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

// One connection in WAL mode with synchronous=NORMAL (flatstore's default), waiting up to
// 30 s for other connections' locks.
sqlite3* openRaw(const std::string& path);
void execRaw(sqlite3* db, std::string_view sql);
// The generated DDL: the entity table and its index table with the SQL index.
void createRawTable(sqlite3* db, const TableDescription& d);

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
    score_range_ = Stmt(db, "SELECT t.rowid, t.p, t.vs FROM " + t + " t JOIN " + idx +
                                " j ON j.rowid = t.rowid WHERE j.value >= ? AND j.value < ?");
  }

  void begin() { begin_.run(); }
  void commit() {
    commit_.run();
    seq_ += 1;
  }

  // Encodes and inserts one object and its index row. REQUIRES: inside begin/commit.
  void insert(const DocData& d, int position) {
    encodeDoc<T>(builder_, d);
    insertEncoded(d.id, builder_.GetBufferPointer(), builder_.GetSize(), versionstamp(position));
  }

  // Inserts an object encoded elsewhere (by encodeDoc<T>) with its index row: the
  // score is read back from the bytes, as flatstore computes index values from the
  // object. REQUIRES: inside a write transaction on this connection.
  void insertEncoded(std::string_view id, const uint8_t* bytes, size_t size, int64_t vs) {
    sqlite3_bind_text(insert_.get(), 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
    sqlite3_bind_blob(insert_.get(), 2, bytes, static_cast<int>(size), SQLITE_STATIC);
    sqlite3_bind_int64(insert_.get(), 3, vs);
    insert_.run();
    int64_t rowid = sqlite3_last_insert_rowid(db_);
    sqlite3_bind_int64(index_insert_.get(), 1, rowid);
    sqlite3_bind_int64(index_insert_.get(), 2, flatbuffers::GetRoot<T>(bytes)->score());
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
      rowObject(by_key_, "get");
      out = copyRow(by_key_);
    }
    by_key_.reset();
    return out;
  }

  // Every object whose `rank` is in [low, high): a scan that verifies and decodes each
  // stored object, since the field has no index.
  std::vector<RawObject> rankRange(int32_t low, int32_t high) {
    std::vector<RawObject> out;
    while (scan_.step()) {
      const T* doc = rowObject(scan_, "scan");
      if (doc->rank() >= low && doc->rank() < high) out.push_back(copyRow(scan_));
    }
    scan_.reset();
    return out;
  }

  std::vector<RawObject> all() { return rankRange(INT32_MIN, INT32_MAX); }

  // Every object whose indexed `score` is in [low, high): a join with the index table,
  // the plan flatstore compiles such a query to.
  std::vector<RawObject> scoreRange(int32_t low, int32_t high) {
    sqlite3_bind_int64(score_range_.get(), 1, low);
    sqlite3_bind_int64(score_range_.get(), 2, high);
    std::vector<RawObject> out;
    while (score_range_.step()) {
      rowObject(score_range_, "score range");
      out.push_back(copyRow(score_range_));
    }
    score_range_.reset();
    return out;
  }

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

  // The object of the current row of `s` (columns rowid, p, vs), verified; dies when it
  // fails verification.
  static const T* rowObject(Stmt& s, const char* what) {
    const T* doc =
        verifiedRoot<T>(sqlite3_column_blob(s.get(), 1), sqlite3_column_bytes(s.get(), 1));
    if (doc == nullptr) die(std::string(what) + ": a stored object fails verification");
    return doc;
  }
  static RawObject copyRow(Stmt& s) {
    return RawObject::copyOf(sqlite3_column_int64(s.get(), 0), sqlite3_column_int64(s.get(), 2),
                             sqlite3_column_blob(s.get(), 1), sqlite3_column_bytes(s.get(), 1));
  }

  sqlite3* db_;
  uint64_t seq_ = 0;
  flatbuffers::FlatBufferBuilder builder_;
  Stmt begin_, commit_, insert_, index_insert_, by_key_, by_rowid_, scan_, update_, delete_,
      index_delete_, count_, score_range_;
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

std::unique_ptr<Workspace> openWorkspace(const std::string& path, WorkspaceOptions options = {});

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

// Creates `docs` in one waited transaction in table T.
template <class T = Doc>
void flatInsertAll(Workspace& ws, const std::vector<DocData>& docs) {
  auto done = ws.performChangesAndWait<T>([&](TransactionContext& txn) -> absl::Status {
    for (const DocData& d : docs) FLATSTORE_RETURN_IF_ERROR(submitCreation<T>(txn, d));
    return absl::OkStatus();
  });
  check(done.status(), "insert");
  if (done->inserted != static_cast<int64_t>(docs.size())) die("insert: wrong count");
}
std::vector<std::shared_ptr<const DocEntity>> flatAll(Workspace& ws);
// die() unless actual == expected.
void expectCount(int64_t actual, int64_t expected, const std::string& what);

// ---------------------------------------------------------------------------------------
// Threads.

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

// ---------------------------------------------------------------------------------------
// The scenario registry.

// One system's run of a scenario: gets a fresh database path in the run's temporary
// directory (the file does not exist yet) and returns what it measured.
struct System {
  std::string name;
  std::function<Measurement(const std::string& path)> run;
};

struct Scenario {
  std::string name;
  std::vector<System> systems;
};

// A goal compares one figure of (scenario, system) with the same figure of (base
// scenario, base system), as a ratio: ops_per_s ratios should be at least `bound`,
// latency ratios at most `bound`. Checked when both were run. An absolute goal has no
// base: the figure itself is compared with `bound` (in the figure's own unit).
struct Goal {
  enum class Figure { kOpsPerSecond, kP50, kP99, kMax, kExtra };
  std::string scenario, system;
  std::string base_scenario, base_system;
  Figure figure = Figure::kOpsPerSecond;
  double bound = 1;
  bool at_least = true;    // ratio >= bound, else ratio <= bound
  std::string extra_name;  // the figure's name for kExtra
  bool absolute = false;   // compare the figure with `bound`, not with a base's figure
  // A peer whose same ratio is printed beside flatstore's, for reference: it takes the
  // place of `system`, and of `base_system` where that is `system` too.
  std::string reference_system;
};

struct Registry {
  std::vector<Scenario> scenarios;
  std::vector<Goal> goals;
};

// Scenario files add their scenarios and goals here; main.cc calls each.
void addCoreScenarios(Registry& r);
void addObserveScenarios(Registry& r);
void addContentionScenarios(Registry& r);

}  // namespace flatstore::bench
