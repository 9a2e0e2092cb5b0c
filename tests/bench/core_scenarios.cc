// The core scenarios: the same operations through flatstore and through hand-written
// SQLite code ("sqlite-raw") over the same table layout and settings.
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
#include <random>

#include "tests/bench/bench_util.h"
#include "tests/bench/raw_sqlite.h"

namespace flatstore::bench {
namespace {

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

}  // namespace

void addCoreScenarios(Registry& r) {
  auto both = [&](const char* name, auto flat, auto raw, double goal) {
    r.scenarios.push_back({name, {{"flatstore", flat}, {"sqlite-raw", raw}}});
    Goal g;
    g.scenario = g.base_scenario = name;
    g.system = "flatstore";
    g.base_system = "sqlite-raw";
    g.bound = goal;
    r.goals.push_back(std::move(g));
  };
  both(
      "insert_10k", [](const std::string& p) { return flatInsert(p, docs10k()); },
      [](const std::string& p) { return rawInsert(p, docs10k()); }, 0.6);
  both("fetch_range_1667", flatFetchRange, rawFetchRange, 0.6);
  both("fetch_by_key_10k", flatFetchByKey, rawFetchByKey, 0.6);
  both("update_10k", flatUpdate, rawUpdate, 0.6);
  both("update_10k_individually", flatUpdateIndividually, rawUpdateIndividually, 0.6);
  both("delete_10k", flatDelete, rawDelete, 0.6);
  both("mt_insert_4x10k", flatMtInsert, rawMtInsert, 0.6);
  both(
      "insert_100k", [](const std::string& p) { return flatInsert(p, docs100k()); },
      [](const std::string& p) { return rawInsert(p, docs100k()); }, 0.75);
}

}  // namespace flatstore::bench
