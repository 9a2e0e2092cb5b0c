// Thin RAII wrappers over libpq, the PostgreSQL client library, and the one place that
// maps PostgreSQL errors (SQLSTATE codes) to absl::Status.
//
// A PgConnection, and a PgTransaction open on it, belong to one thread at a time: libpq
// runs different connections on different threads at once, never one connection on two
// threads. The exception is PgConnection::cancel(), which any thread may call while the
// owner waits for a statement. A PgResult does not refer to its connection: once made,
// it is immutable and any thread may read it, also after the connection is gone.
//
// Results always arrive in PostgreSQL's binary format, so that a bigint or a bytea is
// read without parsing or unescaping text; PgResult's typed getters check each column's
// type and decode it.
//
// Round trips are what a client of a server pays for, so a connection can hold
// statements back to send with its next one (queue), end a transaction without waiting
// for the reply (rollbackWithoutWaiting), and keeps the statements it has run prepared
// (pg_pipeline.h).
#ifndef FLATSTORE_RUNTIME_POSTGRES_H_
#define FLATSTORE_RUNTIME_POSTGRES_H_

#include <libpq-fe.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace flatstore::internal {

// The canonical code for a SQLSTATE (the five characters of PG_DIAG_SQLSTATE).
// `message` is the server's primary message; it tells a statement timeout
// (DeadlineExceeded) from a cancel request (Cancelled), which share SQLSTATE 57014 (a
// server whose messages are not in English reports both as Cancelled). Unknown codes
// give Internal.
absl::StatusCode pgStatusCode(std::string_view sqlstate, std::string_view message);

// The status for a failed call: `result` is its result (null when libpq returned none),
// `conn` its connection. The message names `what` (the table or purpose), the server's
// message and detail, the SQLSTATE and the SQL. An error after which the connection is
// broken is Unavailable whatever its SQLSTATE: the connection must be replaced.
absl::Status pgStatus(const PGresult* result, const PGconn* conn, std::string_view sql,
                      std::string_view what);

// A statement parameter ($1, $2, ...). Numbers, booleans and bytes are sent in binary
// with their type; text is sent as text of an unspecified type, so the server reads it as
// whatever type the statement needs there. A PgParam owns a copy of its text, but only
// refers to the bytes given to bytes(): those must outlive the call that sends it.
class PgParam {
 public:
  static PgParam null();
  static PgParam int32(int32_t v);
  static PgParam int64(int64_t v);
  static PgParam float64(double v);
  static PgParam boolean(bool v);
  static PgParam text(std::string_view v);
  static PgParam bytes(std::span<const uint8_t> v);

  Oid type() const { return type_; }
  // NUL-terminated for text; null for SQL NULL.
  const char* data() const;
  int length() const { return length_; }
  // 0 text, 1 binary, as libpq counts formats.
  int format() const { return format_; }

 private:
  enum class Storage { kNull, kInline, kOwned, kBorrowed };
  PgParam(Oid type, int format, Storage storage)
      : type_(type), format_(format), storage_(storage) {}

  Oid type_ = 0;
  int format_ = 0;
  Storage storage_ = Storage::kNull;
  int length_ = 0;
  char inline_[8] = {};                // kInline: a number in network byte order
  std::string owned_;                  // kOwned: text
  const uint8_t* borrowed_ = nullptr;  // kBorrowed: bytes
};

// The rows of one statement, in binary format. Rows and columns count from 0.
class PgResult {
 public:
  explicit PgResult(PGresult* result) : result_(result) {}
  PgResult(PgResult&& o) noexcept : result_(o.result_) { o.result_ = nullptr; }
  PgResult& operator=(PgResult&& o) noexcept;
  ~PgResult();

  int rows() const { return PQntuples(result_); }
  int columns() const { return PQnfields(result_); }
  std::string_view columnName(int col) const;
  // The index of the column named `name`; NotFound if there is none.
  absl::StatusOr<int> column(std::string_view name) const;
  // The rows an INSERT, UPDATE, DELETE, ... touched; 0 for other statements.
  int64_t affectedRows() const;

  // Each getter fails with OutOfRange for a row or column that does not exist,
  // FailedPrecondition for NULL and InvalidArgument for a column of another type; the
  // message names the column and its type.
  bool isNull(int row, int col) const { return PQgetisnull(result_, row, col) != 0; }
  // smallint, integer, bigint or oid.
  absl::StatusOr<int64_t> getInt64(int row, int col) const;
  // real or double precision.
  absl::StatusOr<double> getDouble(int row, int col) const;
  absl::StatusOr<bool> getBool(int row, int col) const;
  // text, varchar, char(n) or name. The view lives as long as this result.
  absl::StatusOr<std::string_view> getText(int row, int col) const;
  // bytea. The span lives as long as this result.
  absl::StatusOr<std::span<const uint8_t>> getBytes(int row, int col) const;

  const PGresult* get() const { return result_; }

 private:
  // The value's bytes, once the cell exists, is not NULL and has one of `types`, which
  // `type_names` names for the message.
  absl::StatusOr<std::string_view> cell(int row, int col, std::initializer_list<Oid> types,
                                        std::string_view type_names) const;

  PGresult* result_;
};

class PgConnection;

enum class PgIsolation { kReadCommitted, kRepeatableRead, kSerializable };

// An open transaction: BEGIN when made (by PgConnection::begin), ROLLBACK when destroyed
// unless commit() or rollback() ended it first. Used on its connection's thread, and
// must not outlive the connection. Statements inside it go through the connection.
class PgTransaction {
 public:
  PgTransaction(PgTransaction&& o) noexcept : conn_(o.conn_) { o.conn_ = nullptr; }
  PgTransaction& operator=(PgTransaction&&) = delete;
  ~PgTransaction();

  // COMMIT. Aborted when the server rolled the transaction back instead: after an earlier
  // statement of it failed, or for a serialization failure or deadlock found at commit.
  // The transaction is over whatever the outcome.
  absl::Status commit();
  absl::Status rollback();

 private:
  friend class PgConnection;
  explicit PgTransaction(PgConnection* conn) : conn_(conn) {}

  PgConnection* conn_;  // null once ended
};

class PgConnection {
 public:
  // Connects to the server that `uri` names: a URI (postgresql://user@host:port/db?...)
  // or libpq's key=value form; what it leaves out comes from libpq's environment
  // variables (PGHOST, PGPORT, ...) and defaults. InvalidArgument when `uri` is empty or
  // libpq cannot parse it; Unavailable when the server cannot be reached or refuses the
  // connection (the message says which, and names host, port and database, never a
  // password).
  static absl::StatusOr<std::unique_ptr<PgConnection>> connect(const std::string& uri);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Runs one or more statements, separated by `;`, without parameters; their rows are
  // dropped. `what` names the table or purpose in error messages.
  absl::Status execute(std::string_view sql, std::string_view what = {});
  // Runs one statement with `params` bound to $1, $2, ...; returns its rows.
  absl::StatusOr<PgResult> query(std::string_view sql, std::span<const PgParam> params,
                                 std::string_view what = {});
  absl::StatusOr<PgResult> query(std::string_view sql, std::initializer_list<PgParam> params = {},
                                 std::string_view what = {}) {
    return query(sql, std::span<const PgParam>(params.begin(), params.size()), what);
  }

  // Queues a statement to go out ahead of the next statement this connection runs
  // (query(), or a PgPipeline), in the same round trip: a read view's BEGIN and snapshot
  // travel with its first read, a write session's BEGIN and locks with its first
  // statement. A failure among them fails that next call. Bytes that `params` borrow must
  // outlive it. execute() runs them first, in a round trip of their own.
  void queue(std::string sql, std::vector<PgParam> params = {}, std::string what = {});
  bool hasQueued() const { return !queued_.empty(); }
  // Runs the queued statements now, on their own.
  absl::Status flushQueued();
  // The results of the queued statements once they ran, in order; empty before, and
  // after the first call.
  std::vector<PgResult> takeQueuedResults() { return std::move(queued_results_); }
  // Drops queued statements that have not gone out.
  void dropQueued() { queued_.clear(); }

  // Sends ROLLBACK and returns without waiting for the reply: the server ends the
  // transaction as soon as it reads it, and the next call on this connection (or
  // settle()) reads the reply first. For a transaction whose end nobody waits for.
  void rollbackWithoutWaiting();
  // True while the reply of rollbackWithoutWaiting() is not read yet.
  bool replyDue() const { return reply_due_; }
  // Reads that reply, if one is due. Unavailable when the connection was lost meanwhile;
  // another error when the ROLLBACK failed (the connection should then be dropped).
  absl::Status settle();

  // How many times this thread waited for the server's replies on any connection (each
  // query(), execute() or pipeline segment once; a reply read later, as settle() does,
  // is not counted): round trips, for tests and measurements.
  static int64_t roundTripsOnThisThread();

  // Statements in pipelines, and query()'s with parameters, run prepared
  // (pg_pipeline.h); a connection keeps at most this many, and runs further ones
  // unprepared.
  static constexpr size_t kMaxPrepared = 256;

  // Starts a transaction. FailedPrecondition if one is open already.
  absl::StatusOr<PgTransaction> begin(PgIsolation isolation = PgIsolation::kReadCommitted);
  // True while a transaction is open (also one that failed and awaits its ROLLBACK).
  bool inTransaction() const;
  // True once the connection is lost; every later call fails with Unavailable.
  bool broken() const { return PQstatus(conn_) == CONNECTION_BAD; }

  // Asks the server to cancel the statement this connection runs now, if any; the
  // statement then fails with Cancelled. Any thread may call this.
  absl::Status cancel();

  // The process id of the server process that serves this connection.
  int backendPid() const { return PQbackendPID(conn_); }
  // "host=... port=... dbname=... user=...", for messages.
  const std::string& server() const { return server_; }
  PGconn* get() const { return conn_; }

 private:
  PgConnection(PGconn* conn, PGcancel* cancel, std::string server)
      : conn_(conn), cancel_(cancel), server_(std::move(server)) {}

  friend class PgPipeline;
  static void countRoundTrip();
  // The connection's prepared statements (PgPipeline), by statement text and parameter
  // types.
  const std::string* preparedName(const std::string& key) const {
    auto it = prepared_.find(key);
    return it == prepared_.end() ? nullptr : &it->second;
  }
  bool mayPrepare(size_t pending) const { return prepared_.size() + pending < kMaxPrepared; }
  std::string nextPreparedName() { return absl::StrCat("fs", next_prepared_++); }
  void addPrepared(std::string key, std::string name) {
    prepared_.emplace(std::move(key), std::move(name));
  }
  struct Queued {
    std::string sql;
    std::vector<PgParam> params;
    std::string what;
  };

  PGconn* const conn_;
  PGcancel* const cancel_;  // read-only after construction: PQcancel may use it anywhere
  const std::string server_;
  std::vector<Queued> queued_;
  std::vector<PgResult> queued_results_;
  bool reply_due_ = false;
  absl::flat_hash_map<std::string, std::string> prepared_;
  int64_t next_prepared_ = 0;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_POSTGRES_H_
