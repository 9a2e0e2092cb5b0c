#include "tests/bench/pg_peers.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <span>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "runtime/pg_engine.h"
#include "runtime/postgres.h"

namespace flatstore::bench {
namespace {

using internal::PgConnection;
using internal::PgParam;
using internal::PgResult;

// The key of a client's n-th object: clients never share keys, so that inserts never
// wait for each other on a unique index, as in the SQLite peers.
constexpr int kClientKeyBits = 40;

std::string schemaName() { return "flatstore_bench_" + std::to_string(::getpid()); }

std::string tableName(int table) { return "doc" + std::to_string(table); }

std::unique_ptr<PgConnection> connectOrDie(const std::string& uri) {
  auto c = PgConnection::connect(uri);
  check(c.status(), "pg connect");
  return std::move(*c);
}

// The rows of `table` (a name SQL can take as it is).
int64_t countRows(PgConnection& c, const std::string& table) {
  auto r = c.query("SELECT count(*) FROM " + table);
  check(r.status(), "pg count");
  auto n = r->getInt64(0, 0);
  check(n.status(), "pg count");
  return *n;
}

// A connection that works in `schema`.
std::unique_ptr<PgConnection> connectTo(const std::string& uri, const std::string& schema) {
  std::unique_ptr<PgConnection> c = connectOrDie(uri);
  check(c->execute("SET search_path TO " + schema), "pg search_path");
  return c;
}

// The application's lock a peer's write transactions take first.
enum class AppLock { kNone, kGlobal, kTable };

class PgWriter final : public WriteClient {
 public:
  PgWriter(const std::string& uri, const std::string& schema, AppLock lock, int64_t client)
      : conn_(connectTo(uri, schema)), lock_(lock), next_key_(client << kClientKeyBits) {
    for (int k = 0; k < kTables; ++k) {
      inserts_.push_back("INSERT INTO " + tableName(k) + " (id, payload) VALUES ($1, $2)");
    }
  }

  void insert(int table, const DocData& d) override {
    transaction(table, [&] { add(table, d); });
  }

  int64_t import(int table, const std::vector<DocData>& docs, int chunk,
                 Clock::time_point stop) override {
    return importInChunks(docs, chunk, stop, [&](size_t begin, size_t end) {
      transaction(table, [&] {
        for (size_t i = begin; i < end; ++i) add(table, docs[i]);
      });
    });
  }

 private:
  // BEGIN, the global lock for pg-global-lock or the table's for pg-table-lock, the
  // body, COMMIT.
  template <class Body>
  void transaction(int table, Body body) {
    auto txn = conn_->begin();
    check(txn.status(), "pg begin");
    if (lock_ == AppLock::kGlobal) {
      check(conn_->query("SELECT id FROM global_lock WHERE id = 1 FOR UPDATE").status(),
            "pg global lock");
    } else if (lock_ == AppLock::kTable) {
      check(conn_
                ->query("SELECT id FROM table_locks WHERE id = $1 FOR UPDATE",
                        {PgParam::int32(table)})
                .status(),
            "pg table lock");
    }
    body();
    check(txn->commit(), "pg commit");
  }

  // Inserts `d`'s FlatBuffers bytes under a new key.
  void add(int table, const DocData& d) {
    withTable(table, [&]<class T>() { encodeDoc<T>(builder_, d); });
    std::span<const uint8_t> payload(builder_.GetBufferPointer(), builder_.GetSize());
    auto r = conn_->query(inserts_[static_cast<size_t>(table)],
                          {PgParam::int64(next_key_++), PgParam::bytes(payload)});
    check(r.status(), "pg insert");
  }

  std::unique_ptr<PgConnection> conn_;
  const AppLock lock_;
  int64_t next_key_;
  std::vector<std::string> inserts_;
  flatbuffers::FlatBufferBuilder builder_;
};

class PgStore final : public Store {
 public:
  explicit PgStore(AppLock lock) : uri_(pgBenchUri()), schema_(schemaName()), lock_(lock) {
    if (uri_.empty()) die("set FLATSTORE_BENCH_PG to a PostgreSQL URI");
    setup_ = connectOrDie(uri_);
    std::string ddl = "DROP SCHEMA IF EXISTS " + schema_ + " CASCADE; CREATE SCHEMA " + schema_ +
                      "; SET search_path TO " + schema_ + ";";
    for (int k = 0; k < kTables; ++k) {
      ddl += "CREATE TABLE " + tableName(k) + " (id bigint PRIMARY KEY, payload bytea NOT NULL);";
    }
    ddl += "CREATE TABLE global_lock (id integer PRIMARY KEY); INSERT INTO global_lock VALUES (1);";
    ddl += "CREATE TABLE table_locks (id integer PRIMARY KEY);";
    for (int k = 0; k < kTables; ++k)
      ddl += "INSERT INTO table_locks VALUES (" + std::to_string(k) + ");";
    check(setup_->execute(ddl, "pg setup"), "pg setup");
    preloader_ = std::make_unique<PgWriter>(uri_, schema_, AppLock::kNone, next_client_++);
  }
  ~PgStore() override {
    preloader_.reset();
    check(setup_->execute("DROP SCHEMA " + schema_ + " CASCADE"), "pg drop schema");
  }

  std::unique_ptr<WriteClient> writer(Priority) override {
    return std::make_unique<PgWriter>(uri_, schema_, lock_, next_client_++);
  }
  std::unique_ptr<ReadClient> reader() override { die("the PostgreSQL peers have no reader yet"); }
  void preload(int table, const std::vector<DocData>& docs) override {
    preloader_->import(table, docs, static_cast<int>(docs.size()), Clock::time_point::max());
  }
  int64_t count(int table) override { return countRows(*setup_, tableName(table)); }
  std::string walPath() const override { return ""; }

 private:
  const std::string uri_;
  const std::string schema_;
  const AppLock lock_;
  std::unique_ptr<PgConnection> setup_;
  std::unique_ptr<PgWriter> preloader_;
  std::atomic<int64_t> next_client_{1};
};

// pg-engine and pg-engine-grouped: a fresh schema, the engine working in it.
class PgEngineStore final : public Store {
 public:
  explicit PgEngineStore(bool grouped)
      : uri_(pgBenchUri()), schema_(schemaName()), grouped_(grouped), groups_(kTables) {
    if (uri_.empty()) die("set FLATSTORE_BENCH_PG to a PostgreSQL URI");
    setup_ = connectOrDie(uri_);
    check(
        setup_->execute("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE; CREATE SCHEMA " + schema_),
        "pg setup");
    std::string uri = uri_ + (uri_.find('?') == std::string::npos ? "?" : "&") +
                      "options=-csearch_path%3D" + schema_;
    auto engine = internal::PgEngine::open({.uri = uri, .max_idle_connections = 64});
    check(engine.status(), "pg engine open");
    engine_ = std::move(*engine);
    for (int k = 0; k < kTables; ++k) {
      withTable(k, [&]<class T>() {
        tables_.push_back(std::make_unique<internal::TableState>(EntityTraits<T>::description()));
      });
      check(engine_->registerTable(*tables_.back()), "pg engine table");
    }
  }
  ~PgEngineStore() override {
    engine_.reset();
    check(setup_->execute("DROP SCHEMA " + schema_ + " CASCADE"), "pg drop schema");
  }

  class Writer final : public WriteClient {
   public:
    explicit Writer(PgEngineStore* store) : store_(store) {}
    void insert(int table, const DocData& d) override { commit(table, {&d, 1}); }
    int64_t import(int table, const std::vector<DocData>& docs, int chunk,
                   Clock::time_point stop) override {
      return importInChunks(docs, chunk, stop, [&](size_t begin, size_t end) {
        commit(table, std::span<const DocData>(docs).subspan(begin, end - begin));
      });
    }

   private:
    void commit(int table, std::span<const DocData> docs) {
      if (!store_->grouped_) {
        const std::span<const DocData> one[] = {docs};
        commitSession(table, one);
        return;
      }
      // The transactions waiting for the table while a session runs go into the next
      // session together; the first of them in the queue runs it.
      Group& g = store_->groups_[static_cast<size_t>(table)];
      Waiting me{docs};
      std::vector<Waiting*> batch;
      {
        absl::MutexLock lock(&g.mu);
        g.queue.push_back(&me);
        auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g.mu) { return me.done || !g.busy; };
        g.mu.Await(absl::Condition(&ready));
        if (me.done) return;
        g.busy = true;
        batch.swap(g.queue);
      }
      std::vector<std::span<const DocData>> requests;
      for (const Waiting* w : batch) requests.push_back(w->docs);
      commitSession(table, requests);
      absl::MutexLock lock(&g.mu);
      for (Waiting* w : batch) w->done = true;
      g.busy = false;
    }

    // One write session: the table's lock, each request's objects at its own position,
    // the change log, COMMIT.
    void commitSession(int table, std::span<const std::span<const DocData>> requests) {
      internal::TableState* t = store_->tables_[static_cast<size_t>(table)].get();
      const internal::TableState* tables[] = {t};
      auto session = store_->engine_->beginWrite(tables);
      check(session.status(), "pg engine begin");
      for (size_t position = 0; position < requests.size(); ++position) {
        std::vector<internal::EncodedChange> changes;
        for (const DocData& d : requests[position]) {
          withTable(table, [&]<class T>() { encodeDoc<T>(builder_, d); });
          internal::EncodedChange c;
          c.op = internal::EncodedChange::Op::kInsert;
          c.table = t;
          c.bridge = t->bridge();
          c.bytes = ObjectBuffer::copyOf({builder_.GetBufferPointer(), builder_.GetSize()});
          t->desc.key_of(c.bytes.data(), &c.key);
          t->desc.index_values_of(c.bytes.data(), &c.index_values);
          changes.push_back(std::move(c));
        }
        check((*session)->apply(static_cast<uint16_t>(position), changes), "pg engine apply");
      }
      check((*session)->commit(), "pg engine commit");
    }

    PgEngineStore* const store_;
    flatbuffers::FlatBufferBuilder builder_;
  };

  std::unique_ptr<WriteClient> writer(Priority) override { return std::make_unique<Writer>(this); }
  std::unique_ptr<ReadClient> reader() override { die("the PostgreSQL peers have no reader yet"); }
  void preload(int table, const std::vector<DocData>& docs) override {
    Writer(this).import(table, docs, static_cast<int>(docs.size()), Clock::time_point::max());
  }
  int64_t count(int table) override {
    return countRows(*setup_,
                     schema_ + ".fs" + std::to_string(tables_[static_cast<size_t>(table)]->id));
  }
  std::string walPath() const override { return ""; }

 private:
  // A transaction waiting for its table's next session (pg-engine-grouped).
  struct Waiting {
    std::span<const DocData> docs;
    bool done = false;
  };
  struct Group {
    absl::Mutex mu;
    std::vector<Waiting*> queue ABSL_GUARDED_BY(mu);
    bool busy ABSL_GUARDED_BY(mu) = false;  // a session of this process runs on the table
  };

  const std::string uri_;
  const std::string schema_;
  const bool grouped_;
  std::vector<Group> groups_;  // per table
  std::unique_ptr<PgConnection> setup_;
  std::unique_ptr<internal::PgEngine> engine_;
  std::vector<std::unique_ptr<internal::TableState>> tables_;
};

// flatstore-pg: the workspace itself (Workspace::open with the server's URI), the same
// Store as flatstore on SQLite (peers.cc), in a fresh schema dropped at the end.
class FlatstorePgStore final : public Store {
 public:
  FlatstorePgStore() : uri_(pgBenchUri()), schema_(schemaName()) {
    if (uri_.empty()) die("set FLATSTORE_BENCH_PG to a PostgreSQL URI");
    setup_ = connectOrDie(uri_);
    check(
        setup_->execute("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE; CREATE SCHEMA " + schema_),
        "pg setup");
    inner_ = openFlatstore(uri_ + (uri_.find('?') == std::string::npos ? "?" : "&") +
                               "options=-csearch_path%3D" + schema_,
                           Synchronous::kNormal);
  }
  ~FlatstorePgStore() override {
    inner_.reset();
    check(setup_->execute("DROP SCHEMA " + schema_ + " CASCADE"), "pg drop schema");
  }

  std::unique_ptr<WriteClient> writer(Priority priority) override {
    return inner_->writer(priority);
  }
  std::unique_ptr<ReadClient> reader() override { return inner_->reader(); }
  void preload(int table, const std::vector<DocData>& docs) override {
    inner_->preload(table, docs);
  }
  int64_t count(int table) override { return inner_->count(table); }
  std::string walPath() const override { return ""; }
  void markStart() override { inner_->markStart(); }
  void addFigures(Measurement* m) override { inner_->addFigures(m); }

 private:
  const std::string uri_;
  const std::string schema_;
  std::unique_ptr<PgConnection> setup_;
  std::unique_ptr<Store> inner_;
};

}  // namespace

std::unique_ptr<Store> openFlatstorePg(const std::string&, Synchronous) {
  return std::make_unique<FlatstorePgStore>();
}

std::string pgBenchUri() {
  const char* uri = std::getenv("FLATSTORE_BENCH_PG");
  return uri == nullptr ? std::string() : std::string(uri);
}

std::unique_ptr<Store> openPgGlobalLock(const std::string&, Synchronous) {
  return std::make_unique<PgStore>(AppLock::kGlobal);
}

std::unique_ptr<Store> openPgNaive(const std::string&, Synchronous) {
  return std::make_unique<PgStore>(AppLock::kNone);
}

std::unique_ptr<Store> openPgTableLock(const std::string&, Synchronous) {
  return std::make_unique<PgStore>(AppLock::kTable);
}

std::unique_ptr<Store> openPgEngine(const std::string&, Synchronous) {
  return std::make_unique<PgEngineStore>(false);
}

std::unique_ptr<Store> openPgEngineGrouped(const std::string&, Synchronous) {
  return std::make_unique<PgEngineStore>(true);
}

}  // namespace flatstore::bench
