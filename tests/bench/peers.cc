#include "tests/bench/peers.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <lmdb.h>
#include <sys/stat.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <deque>
#include <semaphore>
#include <tuple>

namespace flatstore::bench {
namespace {

using namespace std::chrono_literals;

const char* synchronousPragma(Synchronous s) {
  return s == Synchronous::kFull ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL";
}

// The pause between the lookups of holdSnapshot.
constexpr auto kHoldPause = 1ms;

// Runs `lookup(i)` for i = 0, 1, ... with kHoldPause between calls until `seconds` have
// passed; the number of calls.
template <class Lookup>
int64_t lookupsFor(double seconds, Lookup lookup) {
  auto start = Clock::now();
  int64_t n = 0;
  while (secondsSince(start) < seconds) {
    lookup(n++);
    std::this_thread::sleep_for(kHoldPause);
  }
  return n;
}

// A verified copy of an object read from a store, as flatstore's fetches hand out. The
// copy comes first: FlatBuffers verification wants aligned memory.
template <class T>
RawObject verifiedCopy(int64_t rowid, int64_t vs, const void* blob, int size, const char* who) {
  RawObject o = RawObject::copyOf(rowid, vs, blob, size);
  if (verifiedRoot<T>(o.bytes.get(), size) == nullptr) {
    die(std::string(who) + ": a stored object fails verification");
  }
  return o;
}

// ---------------------------------------------------------------------------------------
// flatstore

std::atomic<bool> print_metrics{false};  // see printFlatstoreMetrics

class FlatWriter final : public WriteClient {
 public:
  FlatWriter(Workspace& ws, Priority priority, std::atomic<int64_t>* imports)
      : ws_(ws), imports_(imports) {
    options_.priority = priority;
  }

  void insert(int table, const DocData& d) override {
    withTable(table, [&]<class T>() {
      auto done = ws_.performChangesAndWait<T>(
          [&](TransactionContext& txn) { return submitCreation<T>(txn, d); }, options_);
      check(done.status(), "flatstore insert");
    });
  }

  // The API for bulk work: performChunked, whose chunks release the write lock between
  // them; the cursor is the number of objects done.
  int64_t import(int table, const std::vector<DocData>& docs, int chunk,
                 Clock::time_point stop) override {
    return withTable(table, [&]<class T>() {
      std::string name = "import-" + std::to_string(imports_->fetch_add(1));
      auto next = [&docs, chunk, stop](TransactionContext& txn,
                                       std::string& cursor) -> absl::StatusOr<bool> {
        size_t begin = cursor.empty() ? 0 : std::stoul(cursor);
        size_t end = std::min(docs.size(), begin + static_cast<size_t>(chunk));
        // At most `chunk` objects, fewer when they would hold the write lock longer
        // than the chunk budget (1 ms).
        for (size_t i = begin; i < end; ++i) {
          FLATSTORE_RETURN_IF_ERROR(submitCreation<T>(txn, docs[i]));
          if (txn.chunkFull()) end = i + 1;
        }
        cursor = std::to_string(end);
        return end < docs.size() && Clock::now() < stop;
      };
      TransactionOptions options = options_;
      options.name = "bulk-import";  // one metrics entry for all imports
      auto done = ws_.performChunked<T>(name, next, std::move(options)).wait();
      check(done.status(), "flatstore import");
      return done->inserted;
    });
  }

 private:
  Workspace& ws_;
  TransactionOptions options_;  // the defaults but for the priority
  std::atomic<int64_t>* imports_;
};

class FlatReader final : public ReadClient {
 public:
  explicit FlatReader(Workspace& ws) : ws_(ws) {}

  bool get(int table, const std::string& id) override {
    return withTable(table, [&]<class T>() {
      auto r = ws_.get<T>(id);
      check(r.status(), "flatstore get");
      return *r != nullptr;
    });
  }

  int64_t scoreRange(int table, int32_t low, int32_t high) override {
    return withTable(table, [&]<class T>() {
      using F = typename EntityTraits<T>::Fields;
      auto r = ws_.fetch<T>().where(F::score >= low && F::score < high).all();
      check(r.status(), "flatstore range");
      return static_cast<int64_t>(r->size());
    });
  }

  int64_t holdSnapshot(int table, const std::vector<DocData>& docs, double seconds) override {
    return withTable(table, [&]<class T>() {
      int64_t n = 0;
      check(ws_.snapshot([&](Workspace::Snapshot& snap) {
        n = lookupsFor(seconds, [&](int64_t i) {
          auto r = snap.get<T>(docs[static_cast<size_t>(i) % docs.size()].id);
          check(r.status(), "flatstore snapshot get");
        });
        return absl::OkStatus();
      }),
            "flatstore snapshot");
      return n;
    });
  }

 private:
  Workspace& ws_;
};

class FlatStore final : public Store {
 public:
  FlatStore(const std::string& path, Synchronous synchronous)
      : ws_(openWorkspace(path, {.synchronous = synchronous})), path_(path) {
    for (int k = 0; k < kTables; ++k) withTable(k, [&]<class T>() { touchTable<T>(*ws_); });
  }

  std::unique_ptr<WriteClient> writer(Priority priority) override {
    return std::make_unique<FlatWriter>(*ws_, priority, &imports_);
  }
  std::unique_ptr<ReadClient> reader() override { return std::make_unique<FlatReader>(*ws_); }
  void preload(int table, const std::vector<DocData>& docs) override {
    withTable(table, [&]<class T>() { flatInsertAll<T>(*ws_, docs); });
  }
  int64_t count(int table) override {
    return withTable(table, [&]<class T>() {
      auto n = ws_->fetch<T>().count();
      check(n.status(), "flatstore count");
      return *n;
    });
  }
  std::string walPath() const override { return path_ + "-wal"; }

  void markStart() override {
    first_commit_ = ws_->lastCommitSequence();
    Metrics metrics = ws_->metrics();
    start_ = metrics.wal;
    start_reader_waits_ = metrics.reader_wait_us.count;
  }
  void addFigures(Measurement* m) override {
    m->commits = static_cast<int64_t>(ws_->lastCommitSequence() - first_commit_);
    if (print_metrics.load()) {
      std::fprintf(stderr, "flatstore metrics (since the workspace opened):\n%s",
                   ws_->metrics().toText().c_str());
    }
    WalMetrics now = ws_->metrics().wal;
    // Truncating checkpoints that succeeded, and those (passive ones too) that failed.
    m->extra.emplace_back("wal_truncations", static_cast<double>(now.truncating_checkpoints -
                                                                 start_.truncating_checkpoints));
    m->extra.emplace_back("checkpoints_failed",
                          static_cast<double>(now.failed_checkpoints - start_.failed_checkpoints));
    // Fetches (and closures' snapshots) that found no free reader connection.
    m->extra.emplace_back("reader_waits", static_cast<double>(ws_->metrics().reader_wait_us.count -
                                                              start_reader_waits_));
  }

 private:
  std::unique_ptr<Workspace> ws_;
  const std::string path_;
  std::atomic<int64_t> imports_{0};
  uint64_t first_commit_ = 0;
  WalMetrics start_;
  int64_t start_reader_waits_ = 0;
};

// ---------------------------------------------------------------------------------------
// The SQLite peers share their setup: the generated DDL, preloading and counting through
// the C API, outside the timed region.

// A RawStore for each of Doc0..Doc3 on one connection.
class RawTables {
 public:
  explicit RawTables(sqlite3* db)
      : stores_(std::make_unique<RawStore<Doc0>>(db), std::make_unique<RawStore<Doc1>>(db),
                std::make_unique<RawStore<Doc2>>(db), std::make_unique<RawStore<Doc3>>(db)) {}
  template <class T>
  RawStore<T>& of() {
    return *std::get<std::unique_ptr<RawStore<T>>>(stores_);
  }

 private:
  std::tuple<std::unique_ptr<RawStore<Doc0>>, std::unique_ptr<RawStore<Doc1>>,
             std::unique_ptr<RawStore<Doc2>>, std::unique_ptr<RawStore<Doc3>>>
      stores_;
};

// A C-API connection (openRaw) with the run's synchronous setting.
sqlite3* openRawWith(const std::string& path, Synchronous synchronous) {
  sqlite3* db = openRaw(path);
  execRaw(db, synchronousPragma(synchronous));
  return db;
}

class SqliteStoreBase : public Store {
 public:
  SqliteStoreBase(const std::string& path, Synchronous synchronous)
      : path_(path), synchronous_(synchronous), setup_(openRawWith(path, synchronous)) {
    for (int k = 0; k < kTables; ++k) {
      withTable(k, [&]<class T>() { createRawTable(setup_, EntityTraits<T>::description()); });
    }
    tables_ = std::make_unique<RawTables>(setup_);
  }
  ~SqliteStoreBase() override {
    tables_.reset();
    sqlite3_close_v2(setup_);
  }

  void preload(int table, const std::vector<DocData>& docs) override {
    withTable(table, [&]<class T>() { tables_->of<T>().insertAll(docs); });
  }
  int64_t count(int table) override {
    return withTable(table, [&]<class T>() { return tables_->of<T>().count(); });
  }
  std::string walPath() const override { return path_ + "-wal"; }

 protected:
  const std::string path_;
  const Synchronous synchronous_;

 private:
  sqlite3* setup_;
  std::unique_ptr<RawTables> tables_;
};

// ---------------------------------------------------------------------------------------
// sqlite-naive: SQLiteCpp, a connection per thread, BEGIN IMMEDIATE with a busy timeout.

constexpr int kNaiveBusyTimeoutMs = 5000;

// A connection the way apps open one: WAL, the synchronous setting, a busy timeout.
SQLite::Database naiveConnection(const std::string& path, Synchronous synchronous) {
  SQLite::Database db(path, SQLite::OPEN_READWRITE, kNaiveBusyTimeoutMs);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec(synchronousPragma(synchronous));
  return db;
}

// The insert statements of one table, prepared once per connection.
struct NaiveInserts {
  NaiveInserts(SQLite::Database& db, const TableDescription& d)
      : object(db, "INSERT INTO " + quote(d.table_name) + "(" + quote(d.key_columns[0].column) +
                       ", p, vs) VALUES(?, ?, ?)"),
        index(db, "INSERT INTO " + quote(d.indexes[0].table) + "(rowid, value) VALUES(?, ?)") {}
  SQLite::Statement object;
  SQLite::Statement index;
};

class NaiveWriter final : public WriteClient {
 public:
  NaiveWriter(const std::string& path, Synchronous synchronous, std::atomic<int64_t>* busy)
      : db_(naiveConnection(path, synchronous)), busy_(busy) {
    for (int k = 0; k < kTables; ++k) {
      withTable(k, [&]<class T>() {
        inserts_.push_back(std::make_unique<NaiveInserts>(db_, EntityTraits<T>::description()));
      });
    }
  }

  void insert(int table, const DocData& d) override {
    transaction([&] { add(table, d, 0); });
  }

  int64_t import(int table, const std::vector<DocData>& docs, int chunk,
                 Clock::time_point stop) override {
    return importInChunks(docs, chunk, stop, [&](size_t begin, size_t end) {
      transaction([&] {
        for (size_t i = begin; i < end; ++i) add(table, docs[i], static_cast<int>(i - begin));
      });
    });
  }

 private:
  // BEGIN IMMEDIATE (waiting up to the busy timeout in SQLite's busy handler), the body,
  // COMMIT. A transaction that still meets SQLITE_BUSY is counted and tried again.
  template <class Body>
  void transaction(Body body) {
    while (true) {
      try {
        SQLite::Transaction txn(db_, SQLite::TransactionBehavior::IMMEDIATE);
        body();
        txn.commit();
        seq_ += 1;
        return;
      } catch (const SQLite::Exception& e) {
        if ((e.getErrorCode() & 0xff) != SQLITE_BUSY) die(std::string("sqlite-naive: ") + e.what());
        busy_->fetch_add(1, std::memory_order_relaxed);
      }
    }
  }

  void add(int table, const DocData& d, int position) {
    withTable(table, [&]<class T>() { encodeDoc<T>(builder_, d); });
    NaiveInserts& s = *inserts_[static_cast<size_t>(table)];
    s.object.reset();
    s.object.bindNoCopy(1, d.id);
    s.object.bindNoCopy(2, builder_.GetBufferPointer(), static_cast<int>(builder_.GetSize()));
    s.object.bind(3, static_cast<int64_t>((seq_ + 1) << 16 | static_cast<uint64_t>(position)));
    s.object.exec();
    s.index.reset();
    s.index.bind(1, db_.getLastInsertRowid());
    s.index.bind(2, d.score);
    s.index.exec();
  }

  SQLite::Database db_;
  std::vector<std::unique_ptr<NaiveInserts>> inserts_;
  flatbuffers::FlatBufferBuilder builder_;
  uint64_t seq_ = 0;
  std::atomic<int64_t>* busy_;
};

// The read statements of one table, prepared once per connection.
struct NaiveQueries {
  NaiveQueries(SQLite::Database& db, const TableDescription& d)
      : by_key(db, "SELECT rowid, p, vs FROM " + quote(d.table_name) + " WHERE " +
                       quote(d.key_columns[0].column) + " = ?"),
        score_range(db, "SELECT t.rowid, t.p, t.vs FROM " + quote(d.table_name) + " t JOIN " +
                            quote(d.indexes[0].table) +
                            " j ON j.rowid = t.rowid WHERE j.value >= ? AND j.value < ?") {}
  SQLite::Statement by_key;
  SQLite::Statement score_range;
};

class NaiveReader final : public ReadClient {
 public:
  NaiveReader(const std::string& path, Synchronous synchronous)
      : db_(naiveConnection(path, synchronous)) {
    for (int k = 0; k < kTables; ++k) {
      withTable(k, [&]<class T>() {
        queries_.push_back(std::make_unique<NaiveQueries>(db_, EntityTraits<T>::description()));
      });
    }
  }

  bool get(int table, const std::string& id) override {
    SQLite::Statement& s = queries_[static_cast<size_t>(table)]->by_key;
    s.reset();
    s.bind(1, id);
    bool found = s.executeStep();
    if (found) copyRow(table, s);
    return found;
  }

  int64_t scoreRange(int table, int32_t low, int32_t high) override {
    SQLite::Statement& s = queries_[static_cast<size_t>(table)]->score_range;
    s.reset();
    s.bind(1, low);
    s.bind(2, high);
    int64_t n = 0;
    while (s.executeStep()) {
      copyRow(table, s);
      ++n;
    }
    return n;
  }

  int64_t holdSnapshot(int table, const std::vector<DocData>& docs, double seconds) override {
    SQLite::Transaction txn(db_);
    int64_t n = lookupsFor(
        seconds, [&](int64_t i) { get(table, docs[static_cast<size_t>(i) % docs.size()].id); });
    txn.commit();
    return n;
  }

 private:
  static RawObject copyRow(int table, SQLite::Statement& s) {
    SQLite::Column blob = s.getColumn(1);
    return withTable(table, [&]<class T>() {
      return verifiedCopy<T>(s.getColumn(0).getInt64(), s.getColumn(2).getInt64(), blob.getBlob(),
                             blob.getBytes(), "sqlite-naive");
    });
  }

  SQLite::Database db_;
  std::vector<std::unique_ptr<NaiveQueries>> queries_;
};

class NaiveStore final : public SqliteStoreBase {
 public:
  using SqliteStoreBase::SqliteStoreBase;

  std::unique_ptr<WriteClient> writer(Priority) override {
    return std::make_unique<NaiveWriter>(path_, synchronous_, &busy_);
  }
  std::unique_ptr<ReadClient> reader() override {
    return std::make_unique<NaiveReader>(path_, synchronous_);
  }
  void markStart() override { busy_ = 0; }
  void addFigures(Measurement* m) override {
    m->extra.emplace_back("busy_timeouts", static_cast<double>(busy_.load()));
  }

 private:
  std::atomic<int64_t> busy_{0};
};

// ---------------------------------------------------------------------------------------
// sqlite-writer-thread: callers queue encoded objects; one thread commits what is queued.

class WriterThreadStore final : public SqliteStoreBase {
 public:
  // One encoded object; its bytes belong to the caller, who waits for the commit.
  struct Item {
    int table;
    std::string_view id;
    const uint8_t* bytes;
    size_t size;
  };
  struct Request {
    std::vector<Item> items;
    std::binary_semaphore done{0};
  };

  WriterThreadStore(const std::string& path, Synchronous synchronous)
      : SqliteStoreBase(path, synchronous), db_(openRawWith(path, synchronous)) {
    writer_tables_ = std::make_unique<RawTables>(db_);
    thread_ = std::thread([this] { loop(); });
  }
  ~WriterThreadStore() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
    writer_tables_.reset();
    sqlite3_close_v2(db_);
  }

  // Queues `r` and returns once it is committed.
  void submitAndWait(Request& r) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(&r);
    }
    cv_.notify_one();
    r.done.acquire();
  }

  std::unique_ptr<WriteClient> writer(Priority) override;
  std::unique_ptr<ReadClient> reader() override;
  void markStart() override { first_commit_ = commits_.load(); }
  void addFigures(Measurement* m) override { m->commits = commits_.load() - first_commit_; }

 private:
  // At most this many requests per commit.
  static constexpr size_t kMaxBatch = 1024;

  void loop() {
    std::vector<Request*> batch;
    uint64_t seq = 0;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;
        while (!queue_.empty() && batch.size() < kMaxBatch) {
          batch.push_back(queue_.front());
          queue_.pop_front();
        }
      }
      seq += 1;
      int position = 0;
      writer_tables_->of<Doc0>().begin();
      for (Request* r : batch) {
        for (const Item& item : r->items) {
          withTable(item.table, [&]<class T>() {
            writer_tables_->of<T>().insertEncoded(
                item.id, item.bytes, item.size,
                static_cast<int64_t>(seq << 16 | (position++ & 0xffff)));
          });
        }
      }
      writer_tables_->of<Doc0>().commit();
      commits_ += 1;
      for (Request* r : batch) r->done.release();
      batch.clear();
    }
  }

  sqlite3* db_;  // the writer thread's
  std::unique_ptr<RawTables> writer_tables_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request*> queue_;  // guarded by mu_
  bool stopping_ = false;       // guarded by mu_
  std::atomic<int64_t> commits_{0};
  int64_t first_commit_ = 0;
  std::thread thread_;
};

class WriterThreadClient final : public WriteClient {
 public:
  explicit WriterThreadClient(WriterThreadStore& store) : store_(store) {}

  void insert(int table, const DocData& d) override {
    withTable(table, [&]<class T>() { encodeDoc<T>(builder_, d); });
    WriterThreadStore::Request r;
    r.items.push_back({table, d.id, builder_.GetBufferPointer(), builder_.GetSize()});
    store_.submitAndWait(r);
  }

  int64_t import(int table, const std::vector<DocData>& docs, int chunk,
                 Clock::time_point stop) override {
    return importInChunks(docs, chunk, stop, [&](size_t begin, size_t end) {
      std::vector<flatbuffers::DetachedBuffer> encoded;
      WriterThreadStore::Request r;
      for (size_t i = begin; i < end; ++i) {
        withTable(table, [&]<class T>() { encodeDoc<T>(builder_, docs[i]); });
        encoded.push_back(builder_.Release());
      }
      for (size_t i = begin; i < end; ++i) {
        const flatbuffers::DetachedBuffer& b = encoded[i - begin];
        r.items.push_back({table, docs[i].id, b.data(), b.size()});
      }
      store_.submitAndWait(r);
    });
  }

 private:
  WriterThreadStore& store_;
  flatbuffers::FlatBufferBuilder builder_;
};

// A reader of the C-API peer: its own connection and prepared statements.
class RawReader final : public ReadClient {
 public:
  RawReader(const std::string& path, Synchronous synchronous)
      : db_(openRawWith(path, synchronous)), tables_(std::make_unique<RawTables>(db_)) {}
  ~RawReader() override {
    tables_.reset();
    sqlite3_close_v2(db_);
  }

  bool get(int table, const std::string& id) override {
    return withTable(table, [&]<class T>() { return tables_->of<T>().get(id).has_value(); });
  }
  int64_t scoreRange(int table, int32_t low, int32_t high) override {
    return withTable(table, [&]<class T>() {
      return static_cast<int64_t>(tables_->of<T>().scoreRange(low, high).size());
    });
  }
  int64_t holdSnapshot(int table, const std::vector<DocData>& docs, double seconds) override {
    execRaw(db_, "BEGIN");
    int64_t n = lookupsFor(
        seconds, [&](int64_t i) { get(table, docs[static_cast<size_t>(i) % docs.size()].id); });
    execRaw(db_, "COMMIT");
    return n;
  }

 private:
  sqlite3* db_;
  std::unique_ptr<RawTables> tables_;
};

std::unique_ptr<WriteClient> WriterThreadStore::writer(Priority) {
  return std::make_unique<WriterThreadClient>(*this);
}
std::unique_ptr<ReadClient> WriterThreadStore::reader() {
  return std::make_unique<RawReader>(path_, synchronous_);
}

// ---------------------------------------------------------------------------------------
// lmdb

void checkMdb(int rc, const char* what) {
  if (rc != MDB_SUCCESS) die(std::string("lmdb ") + what + ": " + mdb_strerror(rc));
}

// A score as an index key: big-endian with the sign bit flipped, so that LMDB's byte
// order is the numeric order.
std::array<uint8_t, 4> scoreKey(int32_t score) {
  uint32_t u = static_cast<uint32_t>(score) ^ 0x80000000u;
  return {static_cast<uint8_t>(u >> 24), static_cast<uint8_t>(u >> 16),
          static_cast<uint8_t>(u >> 8), static_cast<uint8_t>(u)};
}

MDB_val mdbVal(const void* data, size_t size) { return MDB_val{size, const_cast<void*>(data)}; }

class LmdbStore final : public Store {
 public:
  LmdbStore(const std::string& path, Synchronous synchronous) {
    checkMdb(mdb_env_create(&env_), "env_create");
    checkMdb(mdb_env_set_maxdbs(env_, 2 * kTables), "set_maxdbs");
    checkMdb(mdb_env_set_mapsize(env_, size_t{4} << 30), "set_mapsize");
    unsigned flags = MDB_NOSUBDIR | (synchronous == Synchronous::kFull ? 0u : MDB_NOMETASYNC);
    checkMdb(mdb_env_open(env_, path.c_str(), flags, 0644), "env_open");
    MDB_txn* txn = nullptr;
    checkMdb(mdb_txn_begin(env_, nullptr, 0, &txn), "txn_begin");
    for (int k = 0; k < kTables; ++k) {
      std::string name = "Doc" + std::to_string(k);
      checkMdb(mdb_dbi_open(txn, name.c_str(), MDB_CREATE, &objects_[k]), "dbi_open");
      checkMdb(mdb_dbi_open(txn, (name + "$score").c_str(), MDB_CREATE | MDB_DUPSORT, &scores_[k]),
               "dbi_open");
    }
    checkMdb(mdb_txn_commit(txn), "txn_commit");
  }
  ~LmdbStore() override { mdb_env_close(env_); }

  std::unique_ptr<WriteClient> writer(Priority) override;
  std::unique_ptr<ReadClient> reader() override;
  void preload(int table, const std::vector<DocData>& docs) override {
    flatbuffers::FlatBufferBuilder b;
    write([&](MDB_txn* txn) {
      for (const DocData& d : docs) put(txn, table, d, b);
    });
  }
  int64_t count(int table) override {
    MDB_txn* txn = nullptr;
    checkMdb(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn), "txn_begin");
    MDB_stat st;
    checkMdb(mdb_stat(txn, objects_[table], &st), "stat");
    mdb_txn_abort(txn);
    return static_cast<int64_t>(st.ms_entries);
  }
  std::string walPath() const override { return ""; }

  // One write transaction around `body(txn)`; LMDB lets one writer in at a time.
  template <class Body>
  void write(Body body) {
    MDB_txn* txn = nullptr;
    checkMdb(mdb_txn_begin(env_, nullptr, 0, &txn), "txn_begin");
    body(txn);
    checkMdb(mdb_txn_commit(txn), "txn_commit");
  }

  // Encodes `d` with `b` and puts the object (a new key) and its index entry.
  void put(MDB_txn* txn, int table, const DocData& d, flatbuffers::FlatBufferBuilder& b) {
    withTable(table, [&]<class T>() { encodeDoc<T>(b, d); });
    MDB_val key = mdbVal(d.id.data(), d.id.size());
    MDB_val value = mdbVal(b.GetBufferPointer(), b.GetSize());
    checkMdb(mdb_put(txn, objects_[table], &key, &value, MDB_NOOVERWRITE), "put");
    auto score = scoreKey(d.score);
    MDB_val index_key = mdbVal(score.data(), score.size());
    checkMdb(mdb_put(txn, scores_[table], &index_key, &key, 0), "put index");
  }

  // Looks `id` up in `table` and copies the verified object out; whether it exists.
  bool lookup(MDB_txn* txn, int table, const MDB_val& id) {
    MDB_val key = id, value;
    int rc = mdb_get(txn, objects_[table], &key, &value);
    if (rc == MDB_NOTFOUND) return false;
    checkMdb(rc, "get");
    withTable(table, [&]<class T>() {
      verifiedCopy<T>(0, 0, value.mv_data, static_cast<int>(value.mv_size), "lmdb");
    });
    return true;
  }

  MDB_env* env() const { return env_; }
  MDB_dbi scores(int table) const { return scores_[table]; }

 private:
  MDB_env* env_ = nullptr;
  MDB_dbi objects_[kTables];
  MDB_dbi scores_[kTables];
};

class LmdbWriter final : public WriteClient {
 public:
  explicit LmdbWriter(LmdbStore& store) : store_(store) {}

  void insert(int table, const DocData& d) override {
    store_.write([&](MDB_txn* txn) { store_.put(txn, table, d, builder_); });
  }

  int64_t import(int table, const std::vector<DocData>& docs, int chunk,
                 Clock::time_point stop) override {
    return importInChunks(docs, chunk, stop, [&](size_t begin, size_t end) {
      store_.write([&](MDB_txn* txn) {
        for (size_t i = begin; i < end; ++i) store_.put(txn, table, docs[i], builder_);
      });
    });
  }

 private:
  LmdbStore& store_;
  flatbuffers::FlatBufferBuilder builder_;
};

// A reader keeps one read-only transaction handle and renews it for each read.
class LmdbReader final : public ReadClient {
 public:
  explicit LmdbReader(LmdbStore& store) : store_(store) {
    checkMdb(mdb_txn_begin(store_.env(), nullptr, MDB_RDONLY, &txn_), "txn_begin");
    mdb_txn_reset(txn_);
  }
  ~LmdbReader() override { mdb_txn_abort(txn_); }

  bool get(int table, const std::string& id) override {
    checkMdb(mdb_txn_renew(txn_), "txn_renew");
    bool found = store_.lookup(txn_, table, mdbVal(id.data(), id.size()));
    mdb_txn_reset(txn_);
    return found;
  }

  int64_t scoreRange(int table, int32_t low, int32_t high) override {
    checkMdb(mdb_txn_renew(txn_), "txn_renew");
    MDB_cursor* cursor = nullptr;
    checkMdb(mdb_cursor_open(txn_, store_.scores(table), &cursor), "cursor_open");
    auto from = scoreKey(low);
    auto to = scoreKey(high);
    MDB_val key = mdbVal(from.data(), from.size()), id;
    int64_t n = 0;
    int rc = mdb_cursor_get(cursor, &key, &id, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS && std::memcmp(key.mv_data, to.data(), to.size()) < 0) {
      if (!store_.lookup(txn_, table, id)) die("lmdb: an index entry without its object");
      ++n;
      rc = mdb_cursor_get(cursor, &key, &id, MDB_NEXT);
    }
    if (rc != MDB_NOTFOUND) checkMdb(rc, "cursor_get");
    mdb_cursor_close(cursor);
    mdb_txn_reset(txn_);
    return n;
  }

  int64_t holdSnapshot(int table, const std::vector<DocData>& docs, double seconds) override {
    checkMdb(mdb_txn_renew(txn_), "txn_renew");
    int64_t n = lookupsFor(seconds, [&](int64_t i) {
      const std::string& id = docs[static_cast<size_t>(i) % docs.size()].id;
      store_.lookup(txn_, table, mdbVal(id.data(), id.size()));
    });
    mdb_txn_reset(txn_);
    return n;
  }

 private:
  LmdbStore& store_;
  MDB_txn* txn_ = nullptr;
};

std::unique_ptr<WriteClient> LmdbStore::writer(Priority) {
  return std::make_unique<LmdbWriter>(*this);
}
std::unique_ptr<ReadClient> LmdbStore::reader() { return std::make_unique<LmdbReader>(*this); }

}  // namespace

std::unique_ptr<Store> openFlatstore(const std::string& path, Synchronous synchronous) {
  return std::make_unique<FlatStore>(path, synchronous);
}
std::unique_ptr<Store> openSqliteNaive(const std::string& path, Synchronous synchronous) {
  return std::make_unique<NaiveStore>(path, synchronous);
}
std::unique_ptr<Store> openSqliteWriterThread(const std::string& path, Synchronous synchronous) {
  return std::make_unique<WriterThreadStore>(path, synchronous);
}
std::unique_ptr<Store> openLmdb(const std::string& path, Synchronous synchronous) {
  return std::make_unique<LmdbStore>(path, synchronous);
}

// ---------------------------------------------------------------------------------------
// WalMonitor

WalMonitor::WalMonitor(std::string path, int64_t limit, std::function<void()> on_limit)
    : path_(std::move(path)), limit_(limit), on_limit_(std::move(on_limit)) {
  if (!path_.empty()) thread_ = std::thread([this] { poll(); });
}

WalMonitor::~WalMonitor() { stop(); }

void WalMonitor::poll() {
  bool over = false;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    struct stat st;
    if (::stat(path_.c_str(), &st) == 0) {
      max_bytes_ = std::max(max_bytes_, static_cast<int64_t>(st.st_size));
    }
    if (!over && max_bytes_ > limit_) {
      over = true;
      on_limit_();
    }
    if (stopping_) return;
    cv_.wait_for(lock, 10ms);
  }
}

int64_t WalMonitor::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  return max_bytes_;
}

void printFlatstoreMetrics(bool on) { print_metrics.store(on); }

}  // namespace flatstore::bench
