#include "runtime/sqlite.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"

namespace flatstore::internal {

absl::Status sqliteStatus(int rc, sqlite3* db, std::string_view sql, std::string_view what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return absl::OkStatus();
  std::string message = absl::StrCat(sqlite3_errstr(rc));
  if (db != nullptr) {
    const char* detail = sqlite3_errmsg(db);
    if (detail != nullptr && message != detail) absl::StrAppend(&message, ": ", detail);
  }
  if (!what.empty()) message = absl::StrCat(av(what), ": ", message);
  if (!sql.empty()) absl::StrAppend(&message, " (in `", av(sql), "`)");
  absl::StrAppend(&message, " [SQLite error ", rc, "]");
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return absl::AlreadyExistsError(message);
      }
      return absl::FailedPreconditionError(message);
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::ResourceExhaustedError(message);
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::PermissionDeniedError(message);
    case SQLITE_CORRUPT:
      return absl::DataLossError(message);
    case SQLITE_NOTADB:
      return absl::FailedPreconditionError(message);
    case SQLITE_INTERRUPT:
      return absl::CancelledError(message);
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
      return absl::InvalidArgumentError(message);
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
      // A full disk is a full disk wherever SQLite meets it: growing the -shm file at
      // open (SQLITE_IOERR_SHMSIZE), writing or syncing a page, creating a file.
      if (db != nullptr && sqlite3_system_errno(db) == ENOSPC) {
        return absl::ResourceExhaustedError(absl::StrCat(message, " (no space left on device)"));
      }
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

bool writesInDoubt(sqlite3* db) {
  int rc = sqlite3_extended_errcode(db);
  if (rc == SQLITE_IOERR_FSYNC || rc == SQLITE_IOERR_DIR_FSYNC) return true;
  return (rc & 0xff) == SQLITE_IOERR && sqlite3_system_errno(db) != ENOSPC;
}

Statement& Statement::operator=(Statement&& o) noexcept {
  if (this != &o) {
    if (stmt_ != nullptr) sqlite3_finalize(stmt_);
    stmt_ = o.stmt_;
    db_ = o.db_;
    bind_error_ = o.bind_error_;
    o.stmt_ = nullptr;
  }
  return *this;
}

Statement::~Statement() {
  if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

void Statement::bindStatic(int index, const Value& v) {
  if (v.kind() != Value::Kind::kText) return bind(index, v);
  std::string_view text = v.asText();
  noteBind(sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8));
}

void Statement::bind(int index, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      bindNull(index);
      break;
    case Value::Kind::kInteger:
      bindInt(index, v.asInteger());
      break;
    case Value::Kind::kReal:
      noteBind(sqlite3_bind_double(stmt_, index, v.asReal()));
      break;
    case Value::Kind::kText:
      bindText(index, v.asText());
      break;
  }
}

absl::StatusOr<bool> Statement::step(std::string_view what) {
  if (bind_error_ != SQLITE_OK) {
    return sqliteStatus(bind_error_, nullptr, sqlite3_sql(stmt_),
                        absl::StrCat(av(what), what.empty() ? "" : ": ", "binding a parameter"));
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  absl::Status s = sqliteStatus(sqlite3_extended_errcode(db_), db_, sqlite3_sql(stmt_), what);
  sqlite3_reset(stmt_);
  return s;
}

absl::Status Statement::run(std::string_view what) {
  while (true) {
    absl::StatusOr<bool> row = step(what);
    if (!row.ok()) {
      reset();
      return row.status();
    }
    if (!*row) break;
  }
  reset();
  return absl::OkStatus();
}

std::string_view Statement::columnText(int i) const {
  const unsigned char* p = sqlite3_column_text(stmt_, i);
  int n = sqlite3_column_bytes(stmt_, i);
  return p == nullptr ? std::string_view() : std::string_view(reinterpret_cast<const char*>(p), n);
}

std::span<const uint8_t> Statement::columnBlob(int i) const {
  const void* p = sqlite3_column_blob(stmt_, i);
  int n = sqlite3_column_bytes(stmt_, i);
  return p == nullptr ? std::span<const uint8_t>()
                      : std::span<const uint8_t>(static_cast<const uint8_t*>(p), n);
}

Value Statement::columnValue(int i) const {
  switch (sqlite3_column_type(stmt_, i)) {
    case SQLITE_INTEGER:
      return Value::integer(sqlite3_column_int64(stmt_, i));
    case SQLITE_FLOAT:
      return Value::real(sqlite3_column_double(stmt_, i));
    case SQLITE_TEXT:
      return Value::text(std::string(columnText(i)));
    default:
      return Value();
  }
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::open(const std::string& path,
                                                             bool read_only) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_NOMUTEX |
              (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = sqliteStatus(rc, db, {}, absl::StrCat("opening ", path));
    sqlite3_close_v2(db);
    return s;
  }
  sqlite3_extended_result_codes(db, 1);
  return std::unique_ptr<Connection>(new Connection(db, path));
}

Connection::~Connection() {
  cache_.clear();
  queries_.clear();
  sqlite3_close_v2(db_);
}

absl::Status Connection::exec(std::string_view sql, std::string_view what) {
  // A single statement (BEGIN, COMMIT, SAVEPOINT ...) is prepared once and reused.
  if (sql.find(';') == std::string_view::npos) {
    FLATSTORE_ASSIGN_OR_RETURN(Statement * s, cached(sql, what));
    return s->run(what);
  }
  std::string text(sql);
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return sqliteStatus(sqlite3_extended_errcode(db_), db_, sql, what);
  return absl::OkStatus();
}

absl::StatusOr<Statement> Connection::prepare(std::string_view sql, std::string_view what) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return sqliteStatus(sqlite3_extended_errcode(db_), db_, sql, what);
  return Statement(stmt, db_);
}

absl::StatusOr<Statement*> Connection::cached(std::string_view sql, std::string_view what) {
  // Fibonacci hashing of the address: heap-allocated texts are 16-byte aligned, so its
  // low bits alone would leave most slots unused.
  static_assert(std::tuple_size_v<decltype(recent_)> == 32);
  const uint64_t slot = (reinterpret_cast<uintptr_t>(sql.data()) * 0x9E3779B97F4A7C15ull) >> 59;
  RecentStatement& recent = recent_[slot];
  if (recent.entry != nullptr && recent.sql == sql.data() && recent.size == sql.size() &&
      std::memcmp(recent.entry->first.data(), sql.data(), sql.size()) == 0) {
    return &recent.entry->second;
  }
  auto it = cache_.find(av(sql));  // heterogeneous: no string is built to look one up
  if (it == cache_.end()) {
    absl::StatusOr<Statement> s = prepare(sql, what);
    if (!s.ok()) return s.status();
    it = cache_.emplace(std::string(sql), std::move(*s)).first;
  }
  recent = RecentStatement{sql.data(), sql.size(), &*it};
  return &it->second;
}

absl::StatusOr<Statement*> Connection::cachedQuery(std::string_view sql, std::string_view what) {
  query_uses_ += 1;
  auto it = queries_.find(av(sql));
  if (it == queries_.end()) {
    absl::StatusOr<Statement> s = prepare(sql, what);
    if (!s.ok()) return s.status();
    if (queries_.size() >= kQueryStatements) {
      // Evicting scans the entries, but only after a prepare, which costs far more.
      auto oldest = queries_.begin();
      for (auto e = queries_.begin(); e != queries_.end(); ++e) {
        if (e->second.last_use < oldest->second.last_use) oldest = e;
      }
      queries_.erase(oldest);
    }
    it = queries_.emplace(std::string(sql), QueryStatement{std::move(*s), 0}).first;
  }
  it->second.last_use = query_uses_;
  return &it->second.statement;
}

std::optional<uint32_t> Connection::dataVersion() const {
  unsigned int version = 0;
  if (sqlite3_file_control(db_, "main", SQLITE_FCNTL_DATA_VERSION, &version) != SQLITE_OK) {
    return std::nullopt;
  }
  return version;
}

void Connection::setBusyTimeout(absl::Duration timeout, absl::Duration max_pause) {
  busy_timeout_ = timeout;
  busy_max_pause_ = max_pause;
  sqlite3_busy_handler(db_, &Connection::onBusy, this);
}

int Connection::onBusy(void* arg, int attempt) {
  auto* self = static_cast<Connection*>(arg);
  absl::Time now = absl::Now();
  if (attempt == 0) self->busy_since_ = now;
  absl::Duration left = self->busy_timeout_ - (now - self->busy_since_);
  if (left <= absl::ZeroDuration()) return 0;
  thread_local std::minstd_rand rng(std::random_device{}());
  double jitter = std::uniform_real_distribution<double>(0.5, 1.5)(rng);
  absl::Duration wait =
      std::min(absl::Milliseconds(1 << std::min(attempt, 6)) * jitter, self->busy_max_pause_);
  absl::SleepFor(std::min(wait, left));
  return 1;
}

absl::Status Connection::rollback(std::string_view what) {
  if (sqlite3_get_autocommit(db_)) return absl::OkStatus();
  int rc = sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  if (sqlite3_get_autocommit(db_)) return absl::OkStatus();
  if (rc == SQLITE_OK) rc = SQLITE_INTERNAL;  // said done, yet the transaction is open
  return sqliteStatus(rc == SQLITE_INTERNAL ? rc : sqlite3_extended_errcode(db_), db_, "ROLLBACK",
                      what);
}

std::string quoteIdentifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

}  // namespace flatstore::internal
