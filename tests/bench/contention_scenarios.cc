// The contention scenarios: many threads writing small transactions at once, with
// readers, bulk imports and long read transactions beside them, through flatstore and
// through the peers of peers.h (sqlite-naive, sqlite-writer-thread, lmdb). Every run
// gets a fresh database; the same threads do the same work on every system, and the
// objects are counted after each run.
//
// Scenarios (the names are read by scripts/plot-benchmarks.sh and docs/benchmarks.md):
//   storm_full_16t, storm_normal_16t
//       16 writer threads for 10 s; thread t creates new objects in table Doc(t % 4),
//       one object per transaction, waiting for each commit; synchronous FULL or NORMAL.
//       ops/s are commits per second, latencies submit -> commit acknowledged.
//   reads_idle, reads_under_storm
//       4 reader threads for 5 s over 4 x 10,000 preloaded objects, each starting a read
//       every millisecond: alternately a lookup by primary key and a range of 10 on the
//       indexed `score` (about 10 objects); under_storm with the 16 writers of
//       storm_normal_16t beside them. Latencies are per read; point_p99_us and
//       range_p99_us split them, write_ops_per_s is the writers' throughput.
//   priority_user_idle, priority_user_under_bulk
//       4 user threads for 6 s, each creating one object every 4 ms in Doc2 or Doc3 as a
//       user-initiated transaction (flatstore: Priority::kUserInitiated); under_bulk
//       with 2 threads importing into Doc0 and Doc1 beside them, imports of 5,000
//       objects in chunks of 500 (flatstore: performChunked, background priority, and
//       a chunk ends early at TransactionContext::chunkFull(), after about 1 ms of
//       write lock).
//       Latencies are the user transactions'; bulk_objects_per_s the imports' pace.
//   wal_bound
//       storm_normal_16t for 60 s while 2 readers keep read transactions of 100 ms open,
//       staggered by 50 ms so that one is always open. wal_max_bytes is the largest WAL
//       file seen (every SQLite run of this file reports it).
//   scaling_1t ... scaling_32t
//       storm_normal_16t's work with 1, 2, 4, 8, 16 and 32 writer threads for 5 s.
//
// The PostgreSQL scenarios, with the peers of pg_peers.h, run only when the environment
// variable FLATSTORE_BENCH_PG names a server; FLATSTORE_BENCH_PG_SECONDS sets their
// duration (10 s by default):
//   pg_storm_4tables
//       16 writer threads; thread t creates new objects in table t % 4, one object per
//       transaction, waiting for each commit. ops/s are commits per second.
//   pg_small_alone, pg_small_beside_big
//       4 threads each commit a one-object transaction into table B (Doc1) every 2 ms;
//       beside_big with one more thread committing transactions of 2,000 objects into
//       table A (Doc0) back to back. Latencies are B's; big_objects_per_s is the big
//       thread's pace. flatstore on SQLite runs them too, for contrast.
// Their goals are the workspace's (flatstore-pg): pg_storm_4tables at least 2x
// pg-global-lock's and at least pg-naive's commits/s; B's p99 beside the big
// transactions at most 2x its p99 alone, with the engine's and the peers' same ratios
// printed beside it.
#include <cstdlib>
#include <random>

#include "tests/bench/bench_util.h"
#include "tests/bench/peers.h"
#include "tests/bench/pg_peers.h"

namespace flatstore::bench {
namespace {

using namespace std::chrono_literals;

constexpr int kStormThreads = 16;
constexpr double kStormSeconds = 10;
constexpr int kReaders = 4;
constexpr double kReadSeconds = 5;
constexpr auto kReadPeriod = 1ms;
constexpr int32_t kRangeWidth = 10;
constexpr int kUserThreads = 4;
constexpr auto kUserPeriod = 4ms;
constexpr int kImporters = 2;
constexpr int kImportSize = 5000;
constexpr int kImportChunk = 500;
constexpr double kPrioritySeconds = 6;
constexpr double kWalSeconds = 60;
constexpr int kWalReaders = 2;
constexpr double kWalHoldSeconds = 0.1;
constexpr double kWalBoundBytes = 64 << 20;
constexpr double kScalingSeconds = 5;
constexpr double kPgSeconds = 10;
constexpr int kSmallThreads = 4;
constexpr auto kSmallPeriod = 2ms;
constexpr int kSmallTable = 1;
constexpr int kBigTable = 0;
constexpr int kBigObjects = 2000;

// The duration of the PostgreSQL scenarios: FLATSTORE_BENCH_PG_SECONDS or kPgSeconds.
double pgSeconds() {
  const char* text = std::getenv("FLATSTORE_BENCH_PG_SECONDS");
  if (text == nullptr) return kPgSeconds;
  char* end = nullptr;
  double s = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(s > 0))
    die("bad FLATSTORE_BENCH_PG_SECONDS " + std::string(text));
  return s;
}

// A safety cap: a run whose WAL grows past it ends there (sqlite-naive's WAL grows by
// about 250 MB/s in storm_normal_16t here, and wal_bound lasts 60 s).
constexpr int64_t kWalCapBytes = int64_t{4} << 30;

// When a timed run ends: at a fixed time, or earlier once cut() was called.
class Deadline {
 public:
  void set(Clock::time_point at) { at_ = at; }
  Clock::time_point at() const { return at_; }
  bool passed() const { return cut_.load(std::memory_order_relaxed) || Clock::now() >= at_; }
  void cut() { cut_.store(true); }
  bool wasCut() const { return cut_.load(); }

 private:
  Clock::time_point at_;
  std::atomic<bool> cut_{false};
};

// The threads of one timed run. Each prepares on its own thread (opening connections),
// then all start together and run until a shared deadline.
class TimedRun {
 public:
  using Body = std::function<void(const Deadline& deadline)>;

  // Adds a thread: `prepare` runs on it before the start and returns what it runs.
  void add(std::function<Body()> prepare) { prepares_.push_back(std::move(prepare)); }

  // Runs every thread for `seconds` and waits for all; with `store`'s WAL watched and
  // its own figures added. `measure(seconds)` turns the threads' records into the result.
  Measurement run(Store& store, double seconds,
                  const std::function<Measurement(double seconds)>& measure) {
    StartGate gate;
    Deadline deadline;  // set before the gate opens
    std::vector<std::thread> threads;
    for (auto& prepare : prepares_) {
      threads.emplace_back([&gate, &deadline, prepare] {
        Body body = prepare();
        gate.arriveAndWait();
        body(deadline);
      });
    }
    gate.waitArrived(static_cast<int>(threads.size()));
    Clock::time_point start = Clock::now();
    double cut_after_s = 0;
    WalMonitor wal(store.walPath(), kWalCapBytes, [&] {
      cut_after_s = secondsSince(start);
      deadline.cut();
    });
    store.markStart();
    Stopwatch timer;
    deadline.set(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(seconds)));
    gate.open();
    for (auto& t : threads) t.join();
    double elapsed = timer.seconds();
    int64_t wal_max = wal.stop();
    Measurement m = measure(elapsed);
    if (!store.walPath().empty()) m.extra.emplace_back("wal_max_bytes", wal_max);
    // The figures then cover the run until the cap (the writers stop at once).
    if (deadline.wasCut()) m.extra.emplace_back("wal_cap_after_s", cut_after_s);
    store.addFigures(&m);
    return m;
  }

 private:
  std::vector<std::function<Body()>> prepares_;
};

// Sleeps until the next tick of a fixed schedule; a thread that fell behind skips the
// ticks it missed instead of catching up in a burst.
class Pacer {
 public:
  explicit Pacer(Clock::duration period) : period_(period), next_(Clock::now()) {}
  void wait() {
    next_ += period_;
    auto now = Clock::now();
    if (next_ < now) {
      next_ = now;
    } else {
      std::this_thread::sleep_until(next_);
    }
  }

 private:
  Clock::duration period_;
  Clock::time_point next_;
};

std::vector<double> merged(const std::vector<std::vector<double>>& parts) {
  std::vector<double> all;
  for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  return all;
}

// One operation per latency, in `seconds`.
Measurement ofLatencies(std::vector<double> latencies, double seconds) {
  auto ops = static_cast<int64_t>(latencies.size());
  return fromLatencies(ops, seconds, std::move(latencies));
}

double p99Of(std::vector<double> latencies) {
  return ofLatencies(std::move(latencies), 1).p99_us.value_or(0);
}

int64_t totalCount(Store& store) {
  int64_t n = 0;
  for (int k = 0; k < kTables; ++k) n += store.count(k);
  return n;
}

// A new object for writer `thread`'s `i`-th transaction: the fields of a pregenerated
// document under an id no other write uses.
DocData newDoc(const char* prefix, int thread, int64_t i) {
  static const std::vector<DocData> pool = makeDocs(4096, 20);
  DocData d = pool[static_cast<size_t>(i * 31 + thread) % pool.size()];
  char id[48];
  std::snprintf(id, sizeof id, "%s%02d-%09lld", prefix, thread, static_cast<long long>(i));
  d.id = id;
  return d;
}

// The storm's writers: `threads` threads, thread t creating new objects in table t % 4,
// one per transaction, each waited for; (*latencies)[t] gets thread t's
// submit-to-commit times in µs.
void addWriters(TimedRun& run, Store& store, int threads,
                std::vector<std::vector<double>>* latencies) {
  latencies->assign(static_cast<size_t>(threads), {});
  for (int t = 0; t < threads; ++t) {
    std::vector<double>* out = &(*latencies)[static_cast<size_t>(t)];
    run.add([&store, t, out]() -> TimedRun::Body {
      std::shared_ptr<WriteClient> client = store.writer(Priority::kDefault);
      out->reserve(1 << 16);
      return [client, t, out](const Deadline& deadline) {
        for (int64_t i = 0; !deadline.passed(); ++i) {
          DocData d = newDoc("w", t, i);
          auto t0 = Clock::now();
          client->insert(t % kTables, d);
          out->push_back(microsSince(t0));
        }
      };
    });
  }
}

// die() unless the tables hold what was preloaded plus what the run created.
void expectCreated(Store& store, int64_t preloaded, int64_t created, const std::string& what) {
  expectCount(totalCount(store), preloaded + created, what);
}

// Preloads docsForThread(k) into table k; the number of objects.
int64_t preloadAll(Store& store) {
  int64_t n = 0;
  for (int k = 0; k < kTables; ++k) {
    store.preload(k, docsForThread(k));
    n += static_cast<int64_t>(docsForThread(k).size());
  }
  return n;
}

// ---------------------------------------------------------------------------------------
// Scenarios. Each gets a fresh database path and the system to open on it.

Measurement storm(const std::string& path, StoreFactory open, Synchronous synchronous, int threads,
                  double seconds) {
  auto store = open(path, synchronous);
  TimedRun run;
  std::vector<std::vector<double>> latencies;
  addWriters(run, *store, threads, &latencies);
  Measurement m =
      run.run(*store, seconds, [&](double s) { return ofLatencies(merged(latencies), s); });
  expectCreated(*store, 0, m.ops, "storm");
  return m;
}

Measurement reads(const std::string& path, StoreFactory open, bool with_writers) {
  auto store = open(path, Synchronous::kNormal);
  int64_t preloaded = preloadAll(*store);
  TimedRun run;
  std::vector<std::vector<double>> writes;
  if (with_writers) addWriters(run, *store, kStormThreads, &writes);
  std::vector<std::vector<double>> points(kReaders), ranges(kReaders);
  for (int r = 0; r < kReaders; ++r) {
    run.add([&store, r, point = &points[static_cast<size_t>(r)],
             range = &ranges[static_cast<size_t>(r)]]() -> TimedRun::Body {
      std::shared_ptr<ReadClient> client = store->reader();
      return [client, r, point, range](const Deadline& deadline) {
        std::mt19937_64 rng(100 + static_cast<uint64_t>(r));
        Pacer pacer(kReadPeriod);
        for (int64_t i = 0; !deadline.passed(); ++i, pacer.wait()) {
          int table = static_cast<int>(rng() % kTables);
          const std::vector<DocData>& docs = docsForThread(table);
          if (i % 2 == 0) {
            const std::string& id = docs[rng() % docs.size()].id;
            auto t0 = Clock::now();
            bool found = client->get(table, id);
            point->push_back(microsSince(t0));
            if (!found) die("reads: missing " + id);
          } else {
            auto low = static_cast<int32_t>(rng() % (10000 - kRangeWidth));
            auto t0 = Clock::now();
            client->scoreRange(table, low, low + kRangeWidth);
            range->push_back(microsSince(t0));
          }
        }
      };
    });
  }
  Measurement m = run.run(*store, kReadSeconds, [&](double s) {
    std::vector<double> all = merged(points);
    std::vector<double> r = merged(ranges);
    all.insert(all.end(), r.begin(), r.end());
    Measurement out = ofLatencies(std::move(all), s);
    out.extra.emplace_back("point_p99_us", p99Of(merged(points)));
    out.extra.emplace_back("range_p99_us", p99Of(std::move(r)));
    if (with_writers) {
      out.extra.emplace_back("write_ops_per_s", static_cast<double>(merged(writes).size()) / s);
    }
    return out;
  });
  expectCreated(*store, preloaded, static_cast<int64_t>(merged(writes).size()), "reads");
  // The driver's transactions-per-group diagnostic divides ops by group commits, and ops
  // are reads here.
  m.commits = 0;
  return m;
}

// What a group of writer threads does: `threads` threads, thread u writing into table
// table(u), its objects' ids starting with `prefix`.
struct WriterGroup {
  int threads;
  Priority priority;
  const char* prefix;
  std::function<int(int thread)> table;
};

// Paced writers: each thread creates one object every `period`, one per transaction, and
// waits for it; (*latencies)[u] gets thread u's submit-to-commit times in µs.
void addPacedWriters(TimedRun& run, Store& store, const WriterGroup& group, Clock::duration period,
                     std::vector<std::vector<double>>* latencies) {
  latencies->assign(static_cast<size_t>(group.threads), {});
  for (int u = 0; u < group.threads; ++u) {
    run.add([&store, group, period, u, out = &(*latencies)[static_cast<size_t>(u)]]() {
      std::shared_ptr<WriteClient> client = store.writer(group.priority);
      return TimedRun::Body([client, group, period, u, out](const Deadline& deadline) {
        Pacer pacer(period);
        for (int64_t i = 0; !deadline.passed(); ++i, pacer.wait()) {
          DocData d = newDoc(group.prefix, u, i);
          auto t0 = Clock::now();
          client->insert(group.table(u), d);
          out->push_back(microsSince(t0));
        }
      });
    });
  }
}

// Importers: each thread imports `size` new objects at a time, in transactions of
// `chunk`, back to back; (*imported)[b] counts thread b's objects.
void addImporters(TimedRun& run, Store& store, const WriterGroup& group, int size, int chunk,
                  std::vector<int64_t>* imported) {
  imported->assign(static_cast<size_t>(group.threads), 0);
  for (int b = 0; b < group.threads; ++b) {
    run.add([&store, group, size, chunk, b, out = &(*imported)[static_cast<size_t>(b)]]() {
      std::shared_ptr<WriteClient> client = store.writer(group.priority);
      return TimedRun::Body([client, group, size, chunk, b, out](const Deadline& deadline) {
        std::vector<DocData> docs(static_cast<size_t>(size));
        for (int64_t n = 0; !deadline.passed(); ++n) {
          for (int i = 0; i < size; ++i) {
            docs[static_cast<size_t>(i)] = newDoc(group.prefix, b, n * size + i);
          }
          *out += client->import(group.table(b), docs, chunk, deadline.at());
        }
      });
    });
  }
}

int64_t sum(const std::vector<int64_t>& v) {
  int64_t n = 0;
  for (int64_t x : v) n += x;
  return n;
}

Measurement priority(const std::string& path, StoreFactory open, bool with_bulk) {
  auto store = open(path, Synchronous::kNormal);
  TimedRun run;
  std::vector<int64_t> imported;
  if (with_bulk) {
    addImporters(run, *store, {kImporters, Priority::kBackground, "i", [](int b) { return b; }},
                 kImportSize, kImportChunk, &imported);
  }
  std::vector<std::vector<double>> latencies;
  addPacedWriters(run, *store,
                  {kUserThreads, Priority::kUserInitiated, "u", [](int u) { return 2 + u % 2; }},
                  kUserPeriod, &latencies);
  Measurement m = run.run(*store, kPrioritySeconds, [&](double s) {
    Measurement out = ofLatencies(merged(latencies), s);
    if (with_bulk) {
      out.extra.emplace_back("bulk_objects_per_s", static_cast<double>(sum(imported)) / s);
    }
    return out;
  });
  expectCreated(*store, sum(imported), m.ops, "priority");
  m.commits = 0;  // ops are the user transactions only; the imports commit too
  return m;
}

Measurement walBound(const std::string& path, StoreFactory open) {
  auto store = open(path, Synchronous::kNormal);
  int64_t preloaded = preloadAll(*store);
  TimedRun run;
  std::vector<std::vector<double>> latencies;
  addWriters(run, *store, kStormThreads, &latencies);
  for (int r = 0; r < kWalReaders; ++r) {
    run.add([&store, r]() -> TimedRun::Body {
      std::shared_ptr<ReadClient> client = store->reader();
      return [client, r](const Deadline& deadline) {
        // Staggered, so that the next transaction opens before the last one closes.
        std::this_thread::sleep_for(
            std::chrono::duration<double>(kWalHoldSeconds * r / kWalReaders));
        while (!deadline.passed()) {
          client->holdSnapshot(r, docsForThread(r), kWalHoldSeconds);
        }
      };
    });
  }
  Measurement m =
      run.run(*store, kWalSeconds, [&](double s) { return ofLatencies(merged(latencies), s); });
  expectCreated(*store, preloaded, m.ops, "wal_bound");
  return m;
}

// kSmallThreads threads each commit one object into table B every kSmallPeriod; with
// `with_big`, one more thread commits kBigObjects objects into table A per transaction,
// back to back.
Measurement smallBesideBig(const std::string& path, StoreFactory open, bool with_big,
                           double seconds) {
  auto store = open(path, Synchronous::kNormal);
  TimedRun run;
  std::vector<int64_t> big;
  if (with_big) {
    addImporters(run, *store, {1, Priority::kDefault, "b", [](int) { return kBigTable; }},
                 kBigObjects, kBigObjects, &big);
  }
  std::vector<std::vector<double>> latencies;
  addPacedWriters(run, *store,
                  {kSmallThreads, Priority::kDefault, "s", [](int) { return kSmallTable; }},
                  kSmallPeriod, &latencies);
  Measurement m = run.run(*store, seconds, [&](double s) {
    Measurement out = ofLatencies(merged(latencies), s);
    if (with_big) out.extra.emplace_back("big_objects_per_s", static_cast<double>(sum(big)) / s);
    return out;
  });
  expectCreated(*store, sum(big), m.ops, "small_beside_big");
  m.commits = 0;  // ops are the small transactions only
  return m;
}

}  // namespace

void addContentionScenarios(Registry& r) {
  struct Sys {
    const char* name;
    StoreFactory open;
  };
  const Sys flat{"flatstore", openFlatstore};
  const Sys naive{"sqlite-naive", openSqliteNaive};
  const Sys writer_thread{"sqlite-writer-thread", openSqliteWriterThread};
  const Sys lmdb{"lmdb", openLmdb};
  auto add = [&](const std::string& name, const std::vector<Sys>& systems,
                 std::function<Measurement(const std::string&, StoreFactory)> run) {
    Scenario s{name, {}};
    for (const Sys& sys : systems) {
      s.systems.push_back(
          {sys.name, [run, open = sys.open](const std::string& path) { return run(path, open); }});
    }
    r.scenarios.push_back(std::move(s));
  };
  // `system`'s figure against a base (scenario, system) figure, with the same ratio of
  // the `references` printed beside it.
  auto systemGoal = [&](const std::string& system, const std::string& scenario,
                        const std::string& base_scenario, const std::string& base_system,
                        Goal::Figure figure, double bound, bool at_least,
                        std::vector<std::string> references) {
    Goal g;
    g.scenario = scenario;
    g.system = system;
    g.base_scenario = base_scenario;
    g.base_system = base_system;
    g.figure = figure;
    g.bound = bound;
    g.at_least = at_least;
    g.reference_systems = std::move(references);
    r.goals.push_back(std::move(g));
  };
  // flatstore's figure, with the hand-written single writer's same ratio beside it:
  // whether this machine lets any single-writer design over SQLite reach the goal.
  auto goal = [&](const std::string& scenario, const std::string& base_scenario,
                  const std::string& base_system, Goal::Figure figure, double bound,
                  bool at_least) {
    systemGoal("flatstore", scenario, base_scenario, base_system, figure, bound, at_least,
               {"sqlite-writer-thread"});
  };

  const std::vector<Sys> all = {flat, naive, writer_thread, lmdb};
  const std::vector<Sys> sqlite = {flat, naive, writer_thread};
  for (auto [name, synchronous, ratio] :
       {std::tuple{"storm_full_16t", Synchronous::kFull, 5.0},
        std::tuple{"storm_normal_16t", Synchronous::kNormal, 1.5}}) {
    add(name, all, [synchronous](const std::string& path, StoreFactory open) {
      return storm(path, open, synchronous, kStormThreads, kStormSeconds);
    });
    goal(name, name, "sqlite-naive", Goal::Figure::kOpsPerSecond, ratio, true);
    goal(name, name, "sqlite-naive", Goal::Figure::kP99, 1, false);
  }
  add("reads_idle", all,
      [](const std::string& path, StoreFactory open) { return reads(path, open, false); });
  add("reads_under_storm", all,
      [](const std::string& path, StoreFactory open) { return reads(path, open, true); });
  goal("reads_under_storm", "reads_idle", "flatstore", Goal::Figure::kP99, 2, false);
  add("priority_user_idle", sqlite,
      [](const std::string& path, StoreFactory open) { return priority(path, open, false); });
  add("priority_user_under_bulk", sqlite,
      [](const std::string& path, StoreFactory open) { return priority(path, open, true); });
  goal("priority_user_under_bulk", "priority_user_idle", "flatstore", Goal::Figure::kP99, 3, false);
  add("wal_bound", sqlite, walBound);
  Goal wal;
  wal.scenario = "wal_bound";
  wal.system = "flatstore";
  wal.figure = Goal::Figure::kExtra;
  wal.extra_name = "wal_max_bytes";
  wal.bound = kWalBoundBytes;
  wal.at_least = false;
  wal.absolute = true;
  r.goals.push_back(std::move(wal));
  for (int threads : {1, 2, 4, 8, 16, 32}) {
    add("scaling_" + std::to_string(threads) + "t", sqlite,
        [threads](const std::string& path, StoreFactory open) {
          return storm(path, open, Synchronous::kNormal, threads, kScalingSeconds);
        });
  }

  if (!pgBenchUri().empty()) {
    const std::vector<Sys> pg = {
        {"flatstore-pg", openFlatstorePg}, {"pg-global-lock", openPgGlobalLock},
        {"pg-naive", openPgNaive},         {"pg-table-lock", openPgTableLock},
        {"pg-engine", openPgEngine},       {"pg-engine-grouped", openPgEngineGrouped}};
    const double seconds = pgSeconds();
    add("pg_storm_4tables", pg, [seconds](const std::string& path, StoreFactory open) {
      return storm(path, open, Synchronous::kNormal, kStormThreads, seconds);
    });
    // flatstore on SQLite beside them for contrast: its tables share one writer.
    std::vector<Sys> small = pg;
    small.push_back(flat);
    add("pg_small_alone", small, [seconds](const std::string& path, StoreFactory open) {
      return smallBesideBig(path, open, false, seconds);
    });
    add("pg_small_beside_big", small, [seconds](const std::string& path, StoreFactory open) {
      return smallBesideBig(path, open, true, seconds);
    });
    // The workspace's figures, the engine's (alone and grouped) and the peers' beside them.
    systemGoal("flatstore-pg", "pg_storm_4tables", "pg_storm_4tables", "pg-global-lock",
               Goal::Figure::kOpsPerSecond, 2, true, {"pg-engine", "pg-engine-grouped"});
    systemGoal("flatstore-pg", "pg_storm_4tables", "pg_storm_4tables", "pg-naive",
               Goal::Figure::kOpsPerSecond, 1, true, {"pg-engine", "pg-engine-grouped"});
    // The goal proposed in its place (docs/benchmarks-postgres.md): against plain
    // transactions that keep flatstore's order, one writer per table at a time.
    systemGoal("flatstore-pg", "pg_storm_4tables", "pg_storm_4tables", "pg-table-lock",
               Goal::Figure::kOpsPerSecond, 1, true, {"pg-engine", "pg-engine-grouped"});
    systemGoal("flatstore-pg", "pg_small_beside_big", "pg_small_alone", "flatstore-pg",
               Goal::Figure::kP99, 2, false,
               {"pg-engine", "pg-engine-grouped", "pg-global-lock", "pg-naive", "flatstore"});
  }
}

}  // namespace flatstore::bench
