// The hand-written SQLite peer of the core scenarios: statements, raw connections with
// the generated DDL, and RawStore, the raw side of every comparison with flatstore. The
// contention peers (peers.h) build on it.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flatbuffers/flatbuffers.h"
#include "flatstore/entity.h"
#include "tests/bench/bench_util.h"
#include "tests/bench/data.h"

namespace flatstore::bench {

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

}  // namespace flatstore::bench
