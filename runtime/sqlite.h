// Thin RAII wrappers over the SQLite C API, and the one place that maps SQLite result
// codes to absl::Status.
//
// A Connection and its Statements belong to one thread at a time (the SQLite handle is
// opened with SQLITE_OPEN_NOMUTEX); the owner serializes access.
#ifndef FLATSTORE_RUNTIME_SQLITE_H_
#define FLATSTORE_RUNTIME_SQLITE_H_

#include <sqlite3.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flatstore/value.h"

namespace flatstore::internal {

// Maps a SQLite result code to the most specific status code, with a message naming
// the SQLite error, the SQL (if any) and the table or file it concerns.
absl::Status sqliteStatus(int rc, sqlite3* db, std::string_view sql, std::string_view what);

// After a COMMIT or a checkpoint on `db` failed: whether the pages SQLite wrote are in
// doubt. A failed sync (the operating system may have dropped the dirty pages and marked
// them clean) or another I/O error than a full disk leaves the file on disk in a state
// SQLite does not know. A full disk does not: SQLite rolled back, nothing written before
// is in doubt, and later commits succeed once space is freed.
bool writesInDoubt(sqlite3* db);

class Statement {
 public:
  Statement() = default;
  Statement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  Statement(Statement&& o) noexcept : stmt_(o.stmt_), db_(o.db_), bind_error_(o.bind_error_) {
    o.stmt_ = nullptr;
  }
  Statement& operator=(Statement&& o) noexcept;
  ~Statement();

  // Binds are 1-based, as in SQLite. A bind that fails (a value past SQLite's length
  // limit: SQLITE_TOOBIG) makes the next step() fail with its error, rather than run
  // with the parameter NULL.
  void bind(int index, const Value& v);
  // As bind(), without copying text: `v` must stay valid until the statement is reset.
  void bindStatic(int index, const Value& v);
  void bindNull(int index) { noteBind(sqlite3_bind_null(stmt_, index)); }
  void bindInt(int index, int64_t v) { noteBind(sqlite3_bind_int64(stmt_, index, v)); }
  void bindText(int index, std::string_view v) {
    noteBind(sqlite3_bind_text64(stmt_, index, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  // The blob must stay valid until the statement is reset.
  void bindBlobStatic(int index, std::span<const uint8_t> v) {
    noteBind(sqlite3_bind_blob64(stmt_, index, v.data(), v.size(), SQLITE_STATIC));
  }
  void bindBlob(int index, std::span<const uint8_t> v) {
    noteBind(sqlite3_bind_blob64(stmt_, index, v.data(), v.size(), SQLITE_TRANSIENT));
  }

  // Steps once: true with a row, false when done; an error otherwise (also that of a
  // failed bind). `what` names the table or purpose for error messages.
  absl::StatusOr<bool> step(std::string_view what = {});
  // Steps to completion, ignoring rows, then resets.
  absl::Status run(std::string_view what = {});
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    bind_error_ = SQLITE_OK;
  }

  int64_t columnInt(int i) const { return sqlite3_column_int64(stmt_, i); }
  bool columnIsNull(int i) const { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }
  std::string_view columnText(int i) const;
  std::span<const uint8_t> columnBlob(int i) const;
  Value columnValue(int i) const;

  sqlite3_stmt* get() const { return stmt_; }

 private:
  void noteBind(int rc) {
    if (rc != SQLITE_OK && bind_error_ == SQLITE_OK) bind_error_ = rc;
  }

  sqlite3_stmt* stmt_ = nullptr;
  sqlite3* db_ = nullptr;
  int bind_error_ = SQLITE_OK;  // the first failed bind since the last reset
};

class Connection {
 public:
  // Opens `path`: read-write (creating it) or read-only.
  static absl::StatusOr<std::unique_ptr<Connection>> open(const std::string& path, bool read_only);
  ~Connection();

  // Runs one or more statements without results.
  absl::Status exec(std::string_view sql, std::string_view what = {});
  absl::StatusOr<Statement> prepare(std::string_view sql, std::string_view what = {});
  // A statement prepared once and kept for this connection's life, reset on return.
  absl::StatusOr<Statement*> cached(std::string_view sql, std::string_view what = {});
  // A statement for SQL the runtime builds per query shape (a query plan): prepared on
  // first use and kept while it is among the kQueryStatements most recently used, so a
  // program's repeated queries are parsed once while an unbounded variety of shapes
  // holds a bounded number of statements. The pointer is valid until the next
  // cachedQuery() call on this connection; the caller resets the statement when done
  // (a statement left stepping would hold its read transaction open).
  absl::StatusOr<Statement*> cachedQuery(std::string_view sql, std::string_view what = {});
  static constexpr size_t kQueryStatements = 64;
  // Rolls back an open transaction, if any. OK when none is left open; otherwise why
  // (the connection cannot be used for another transaction then).
  absl::Status rollback(std::string_view what = {});
  // rollback() on error paths of read-only connections, whose error goes back to the
  // caller: the next BEGIN on the connection reports a transaction left open.
  void rollbackQuietly() { rollback().IgnoreError(); }
  // While another connection (of any process) holds a lock, retries with jittered
  // exponential back-off (1 ms doubling to 64 ms, times 0.5-1.5, but never more than
  // `max_pause`) until `timeout` has passed, then lets SQLITE_BUSY surface. Never spins.
  void setBusyTimeout(absl::Duration timeout, absl::Duration max_pause = absl::InfiniteDuration());

  sqlite3* db() const { return db_; }
  const std::string& path() const { return path_; }
  int64_t lastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }
  int changes() const { return sqlite3_changes(db_); }
  // True when no transaction is open.
  bool autocommit() const { return sqlite3_get_autocommit(db_) != 0; }
  // The main database's data version (SQLITE_FCNTL_DATA_VERSION): it changes with every
  // commit of this connection and, once this connection starts its next transaction,
  // with every commit another connection made meanwhile. Empty if SQLite cannot tell.
  std::optional<uint32_t> dataVersion() const;

 private:
  Connection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  static int onBusy(void* self, int attempt);
  sqlite3* db_;
  absl::Duration busy_timeout_ = absl::ZeroDuration();
  absl::Duration busy_max_pause_ = absl::InfiniteDuration();
  absl::Time busy_since_;
  std::string path_;
  // Node-based: cached() hands out pointers that stay valid as statements are added.
  absl::node_hash_map<std::string, Statement> cache_;
  // In front of cache_, by the address and length of the SQL text a caller passes (most
  // pass the same string or literal every time): a hit compares the text with its
  // entry's instead of hashing it. An address whose text changed misses, and the slot
  // is taken over.
  struct RecentStatement {
    const char* sql = nullptr;
    size_t size = 0;
    std::pair<const std::string, Statement>* entry = nullptr;
  };
  std::array<RecentStatement, 32> recent_;
  struct QueryStatement {
    Statement statement;
    uint64_t last_use = 0;
  };
  absl::node_hash_map<std::string, QueryStatement> queries_;
  uint64_t query_uses_ = 0;
};

// Quotes an SQL identifier ("name" with inner quotes doubled).
std::string quoteIdentifier(std::string_view name);

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_SQLITE_H_
