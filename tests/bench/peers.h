// The systems of the contention benchmarks (contention_scenarios.cc) behind one small
// interface, so that every scenario drives the same threads against each of them:
//
//   flatstore             a Workspace with its default options; only `synchronous` is set
//                         by the scenario, and priorities through TransactionOptions.
//   sqlite-naive          what apps commonly write: a SQLiteCpp connection per thread with
//                         a 5 s busy timeout, SQLite::Transaction with BEGIN IMMEDIATE per
//                         transaction. When BEGIN still fails with SQLITE_BUSY after the
//                         timeout, the transaction is counted (busy_timeouts) and tried
//                         again, so that every system commits the same objects.
//   sqlite-writer-thread  a competent hand-written design on the C API: callers encode
//                         their objects, queue a request and wait; one thread takes every
//                         queued request (up to 1024), commits them in one BEGIN
//                         IMMEDIATE ... COMMIT and wakes the callers.
//   lmdb                  LMDB as a key-value store: a database per table (id -> object)
//                         and a sorted-duplicates database per index (score -> id); a
//                         write transaction per operation, as LMDB serializes writers.
//
// Every SQLite system uses the generated DDL, stores the same FlatBuffers bytes and the
// same index rows, runs in WAL mode with SQLite's default page cache, and gets the same
// `synchronous` setting on every connection; the raw peers keep SQLite's automatic
// checkpoint (1000 pages). LMDB maps synchronous=FULL to its default (sync on commit)
// and NORMAL to MDB_NOMETASYNC, the setting with NORMAL's guarantee (a crash may lose
// the last commits, never the database's integrity); it still syncs the data pages on
// each commit, which SQLite's NORMAL does not.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/bench/bench_util.h"
#include "tests/bench/raw_sqlite.h"

namespace flatstore::bench {

// The tables of the contention benchmarks: Doc0..Doc3 (schemas/bench_mt.fbs).
constexpr int kTables = 4;

// Calls fn.template operator()<DocK>() for table K = `table` (0..3).
template <class Fn>
decltype(auto) withTable(int table, Fn&& fn) {
  switch (table) {
    case 0:
      return fn.template operator()<Doc0>();
    case 1:
      return fn.template operator()<Doc1>();
    case 2:
      return fn.template operator()<Doc2>();
    case 3:
      return fn.template operator()<Doc3>();
  }
  die("no table " + std::to_string(table));
}

// One thread's handle for writing. Made on the thread that uses it and used only there.
class WriteClient {
 public:
  virtual ~WriteClient() = default;
  // Creates `d` in `table` in a transaction of its own; returns once it is committed.
  virtual void insert(int table, const DocData& d) = 0;
  // A bulk import: creates `docs` in `table` in transactions of `chunk` objects, stopping
  // after the chunk that ends at or after `stop`. Returns how many objects it created.
  virtual int64_t import(int table, const std::vector<DocData>& docs, int chunk,
                         Clock::time_point stop) = 0;
};

// One thread's handle for reading; made on the thread that uses it. Every fetched object
// is verified and copied out, as flatstore's fetches do.
class ReadClient {
 public:
  virtual ~ReadClient() = default;
  // Looks one object up by primary key; whether it exists.
  virtual bool get(int table, const std::string& id) = 0;
  // Fetches the objects whose indexed `score` is in [low, high); how many there are.
  virtual int64_t scoreRange(int table, int32_t low, int32_t high) = 0;
  // Keeps one read transaction open for `seconds`, looking up docs[i] by key one after
  // another with a 1 ms pause between lookups. Returns the lookups made.
  virtual int64_t holdSnapshot(int table, const std::vector<DocData>& docs, double seconds) = 0;
};

// One system on a fresh database file, for one run.
class Store {
 public:
  virtual ~Store() = default;
  // `priority` is flatstore's TransactionOptions::priority; the peers have none.
  virtual std::unique_ptr<WriteClient> writer(Priority priority) = 0;
  virtual std::unique_ptr<ReadClient> reader() = 0;
  // Creates `docs` in `table` before the timed region.
  virtual void preload(int table, const std::vector<DocData>& docs) = 0;
  virtual int64_t count(int table) = 0;
  // The WAL file whose size is watched; empty for a system without one.
  virtual std::string walPath() const = 0;
  // Called when the timed region starts, and after it ends to add the system's own
  // figures (failures, commits, checkpoints) to its measurement.
  virtual void markStart() {}
  virtual void addFigures(Measurement* m) {}
};

// Creates docs[begin, end) and returns end, for each chunk of `chunk` objects, stopping
// after the chunk that ends at or after `stop`: the import loop of the peers
// (pg_peers.cc too).
template <class Commit>
int64_t importInChunks(const std::vector<DocData>& docs, int chunk, Clock::time_point stop,
                       Commit commit) {
  size_t begin = 0;
  while (begin < docs.size()) {
    size_t end = std::min(docs.size(), begin + static_cast<size_t>(chunk));
    commit(begin, end);
    begin = end;
    if (Clock::now() >= stop) break;
  }
  return static_cast<int64_t>(begin);
}

using StoreFactory = std::unique_ptr<Store> (*)(const std::string& path, Synchronous synchronous);
std::unique_ptr<Store> openFlatstore(const std::string& path, Synchronous synchronous);
// With true, flatstore's stores print their workspace's metrics() to stderr at the end
// of each timed region (flatstore-bench --metrics).
void printFlatstoreMetrics(bool on);
std::unique_ptr<Store> openSqliteNaive(const std::string& path, Synchronous synchronous);
std::unique_ptr<Store> openSqliteWriterThread(const std::string& path, Synchronous synchronous);
std::unique_ptr<Store> openLmdb(const std::string& path, Synchronous synchronous);

// Polls the size of a file (a WAL) every 10 ms from a thread of its own and keeps the
// largest size seen. An empty path watches nothing.
class WalMonitor {
 public:
  // Once the file is larger than `limit` bytes, calls `on_limit` (once, on the polling
  // thread).
  WalMonitor(std::string path, int64_t limit, std::function<void()> on_limit);
  ~WalMonitor();
  // Stops polling (after one last look) and returns the largest size seen, in bytes.
  int64_t stop();

 private:
  void poll();

  const std::string path_;
  const int64_t limit_;
  const std::function<void()> on_limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  int64_t max_bytes_ = 0;  // written by the polling thread until it is joined
  std::thread thread_;
};

}  // namespace flatstore::bench
