#include "runtime/postgres.h"

#include <arpa/inet.h>

#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/pg_pipeline.h"

namespace flatstore::internal {
namespace {

// The type OIDs of PostgreSQL's catalog (pg_type.dat) that the wrapper reads and sends.
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kNameOid = 19;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kTextOid = 25;
constexpr Oid kOidOid = 26;
constexpr Oid kFloat4Oid = 700;
constexpr Oid kFloat8Oid = 701;
constexpr Oid kBpcharOid = 1042;
constexpr Oid kVarcharOid = 1043;

std::string typeName(Oid type) {
  switch (type) {
    case kBoolOid:
      return "boolean";
    case kByteaOid:
      return "bytea";
    case kNameOid:
      return "name";
    case kInt8Oid:
      return "bigint";
    case kInt2Oid:
      return "smallint";
    case kInt4Oid:
      return "integer";
    case kTextOid:
      return "text";
    case kOidOid:
      return "oid";
    case kFloat4Oid:
      return "real";
    case kFloat8Oid:
      return "double precision";
    case kBpcharOid:
      return "character";
    case kVarcharOid:
      return "character varying";
    default:
      return absl::StrCat("the type with OID ", type);
  }
}

// Big-endian (network order) integers of 2, 4 or 8 bytes.
uint64_t readBigEndian(std::string_view bytes) {
  uint64_t v = 0;
  for (char c : bytes) v = (v << 8) | static_cast<uint8_t>(c);
  return v;
}

void writeBigEndian(uint64_t v, char* out, int size) {
  for (int i = size - 1; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

// libpq's messages end with a newline; the status message goes on after them.
std::string_view trimmed(const char* text) {
  if (text == nullptr) return {};
  std::string_view s(text);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  return s;
}

// `text` on one line: libpq breaks its own messages with newlines and tabs.
std::string oneLine(std::string_view text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == '\n' || c == '\t' || c == ' ') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string withContext(std::string_view what, std::string_view message, std::string_view sql) {
  std::string out;
  if (!what.empty()) absl::StrAppend(&out, av(what), ": ");
  absl::StrAppend(&out, av(message));
  if (!sql.empty()) absl::StrAppend(&out, " (in `", av(sql), "`)");
  return out;
}

void ignoreNotice(void*, const char*) {}

}  // namespace

absl::StatusCode pgStatusCode(std::string_view sqlstate, std::string_view message) {
  using absl::StatusCode;
  if (sqlstate.size() != 5) return StatusCode::kInternal;
  const std::string_view cls = sqlstate.substr(0, 2);
  // Codes more specific than their class come first.
  if (sqlstate == "23505") return StatusCode::kAlreadyExists;  // unique_violation
  if (sqlstate == "57014") {  // query_canceled: by a cancel request or by statement_timeout
    return absl::StrContains(av(message), "timeout") ? StatusCode::kDeadlineExceeded
                                                     : StatusCode::kCancelled;
  }
  if (sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03" ||
      sqlstate == "57P05") {  // the server ends or refuses the session
    return StatusCode::kUnavailable;
  }
  if (sqlstate == "55P03") return StatusCode::kUnavailable;  // lock_not_available
  if (sqlstate == "42501") return StatusCode::kPermissionDenied;
  if (sqlstate == "42P01" || sqlstate == "42703" || sqlstate == "42704" || sqlstate == "42883" ||
      sqlstate == "42P02") {  // undefined table, column, object, function, parameter
    return StatusCode::kNotFound;
  }
  if (sqlstate == "42P04" || sqlstate == "42P06" || sqlstate == "42P07" || sqlstate == "42701" ||
      sqlstate == "42710" || sqlstate == "42723") {  // duplicate database ... function
    return StatusCode::kAlreadyExists;
  }
  if (sqlstate == "22003" || sqlstate == "22008") return StatusCode::kOutOfRange;
  if (sqlstate == "3D000" || sqlstate == "3F000") return StatusCode::kNotFound;  // db, schema
  if (sqlstate == "XX001" || sqlstate == "XX002") return StatusCode::kDataLoss;  // corruption

  if (cls == "08") return StatusCode::kUnavailable;         // connection exception
  if (cls == "40") return StatusCode::kAborted;             // serialization, deadlock
  if (cls == "53") return StatusCode::kResourceExhausted;   // disk full, memory, connections
  if (cls == "54") return StatusCode::kResourceExhausted;   // program limit exceeded
  if (cls == "42") return StatusCode::kInvalidArgument;     // syntax error or rule violation
  if (cls == "22") return StatusCode::kInvalidArgument;     // data exception
  if (cls == "23") return StatusCode::kFailedPrecondition;  // other constraint violations
  if (cls == "25") return StatusCode::kFailedPrecondition;  // invalid transaction state
  if (cls == "55") return StatusCode::kFailedPrecondition;  // object not in required state
  if (cls == "28") return StatusCode::kUnauthenticated;     // invalid authorization
  if (cls == "0A") return StatusCode::kUnimplemented;       // feature not supported
  if (cls == "57") return StatusCode::kUnavailable;         // operator intervention
  if (cls == "58") return StatusCode::kUnavailable;         // system error (I/O)
  return StatusCode::kInternal;
}

absl::Status pgStatus(const PGresult* result, const PGconn* conn, std::string_view sql,
                      std::string_view what) {
  std::string message;
  std::string_view sqlstate;
  std::string_view primary;
  if (result != nullptr) {
    primary = trimmed(PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY));
    sqlstate = trimmed(PQresultErrorField(result, PG_DIAG_SQLSTATE));
    std::string_view detail = trimmed(PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL));
    // An error libpq raised itself (a lost connection) has no fields, only a message.
    message = oneLine(primary.empty() ? PQresultErrorMessage(result) : primary);
    if (!detail.empty()) absl::StrAppend(&message, " (", oneLine(detail), ")");
  }
  if (message.empty() && conn != nullptr) message = oneLine(PQerrorMessage(conn));
  if (message.empty()) message = "unknown PostgreSQL error";
  if (!sqlstate.empty()) absl::StrAppend(&message, " [SQLSTATE ", av(sqlstate), "]");
  const bool lost = conn != nullptr && PQstatus(conn) == CONNECTION_BAD;
  if (lost) {
    // PQhost and its kin take a non-const connection but only read it.
    auto* c = const_cast<PGconn*>(conn);
    message = absl::StrCat("connection to PostgreSQL lost (host=", PQhost(c), " port=", PQport(c),
                           " dbname=", PQdb(c), "): ", message);
  }
  std::string text = withContext(what, message, sql);

  absl::StatusCode code = absl::StatusCode::kInternal;
  if (lost) {
    code = absl::StatusCode::kUnavailable;
  } else if (!sqlstate.empty()) {
    code = pgStatusCode(sqlstate, primary);
  } else if (result == nullptr) {
    code = absl::StatusCode::kUnavailable;  // libpq could not even send the statement
  }
  return absl::Status(code, text);
}

// ---------------------------------------------------------------------------------------
// PgParam

PgParam PgParam::null() { return PgParam(0, 0, Storage::kNull); }

PgParam PgParam::int32(int32_t v) {
  PgParam p(kInt4Oid, 1, Storage::kInline);
  writeBigEndian(static_cast<uint32_t>(v), p.inline_, 4);
  p.length_ = 4;
  return p;
}

PgParam PgParam::int64(int64_t v) {
  PgParam p(kInt8Oid, 1, Storage::kInline);
  writeBigEndian(static_cast<uint64_t>(v), p.inline_, 8);
  p.length_ = 8;
  return p;
}

PgParam PgParam::float64(double v) {
  PgParam p(kFloat8Oid, 1, Storage::kInline);
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  writeBigEndian(bits, p.inline_, 8);
  p.length_ = 8;
  return p;
}

PgParam PgParam::boolean(bool v) {
  PgParam p(kBoolOid, 1, Storage::kInline);
  p.inline_[0] = v ? 1 : 0;
  p.length_ = 1;
  return p;
}

PgParam PgParam::text(std::string_view v) {
  PgParam p(0, 0, Storage::kOwned);
  p.owned_ = std::string(v);
  p.length_ = static_cast<int>(v.size());
  return p;
}

PgParam PgParam::bytes(std::span<const uint8_t> v) {
  PgParam p(kByteaOid, 1, Storage::kBorrowed);
  p.borrowed_ = v.data();
  p.length_ = static_cast<int>(v.size());
  return p;
}

const char* PgParam::data() const {
  switch (storage_) {
    case Storage::kNull:
      return nullptr;
    case Storage::kInline:
      return inline_;
    case Storage::kOwned:
      return owned_.c_str();
    case Storage::kBorrowed:
      // libpq takes an empty binary value from any non-null pointer.
      return borrowed_ != nullptr ? reinterpret_cast<const char*>(borrowed_) : "";
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------
// PgResult

PgResult& PgResult::operator=(PgResult&& o) noexcept {
  if (this != &o) {
    if (result_ != nullptr) PQclear(result_);
    result_ = o.result_;
    o.result_ = nullptr;
  }
  return *this;
}

PgResult::~PgResult() {
  if (result_ != nullptr) PQclear(result_);
}

std::string_view PgResult::columnName(int col) const {
  const char* name = PQfname(result_, col);
  return name == nullptr ? std::string_view() : std::string_view(name);
}

absl::StatusOr<int> PgResult::column(std::string_view name) const {
  for (int c = 0; c < columns(); ++c) {
    if (columnName(c) == name) return c;
  }
  return absl::NotFoundError(absl::StrCat("the result has no column ", av(name)));
}

int64_t PgResult::affectedRows() const {
  const char* n = PQcmdTuples(result_);
  if (n == nullptr || *n == '\0') return 0;
  return std::strtoll(n, nullptr, 10);
}

absl::StatusOr<std::string_view> PgResult::cell(int row, int col, std::initializer_list<Oid> types,
                                                std::string_view type_names) const {
  if (col < 0 || col >= columns()) {
    return absl::OutOfRangeError(
        absl::StrCat("the result has no column ", col, " (it has ", columns(), ")"));
  }
  if (row < 0 || row >= rows()) {
    return absl::OutOfRangeError(
        absl::StrCat("the result has no row ", row, " (it has ", rows(), ")"));
  }
  const Oid type = PQftype(result_, col);
  bool matches = false;
  for (Oid t : types) matches = matches || t == type;
  if (!matches) {
    return absl::InvalidArgumentError(absl::StrCat("column ", av(columnName(col)), " is ",
                                                   typeName(type), ", not ", av(type_names)));
  }
  if (isNull(row, col)) {
    return absl::FailedPreconditionError(
        absl::StrCat("column ", av(columnName(col)), " of row ", row, " is NULL"));
  }
  return std::string_view(PQgetvalue(result_, row, col),
                          static_cast<size_t>(PQgetlength(result_, row, col)));
}

absl::StatusOr<int64_t> PgResult::getInt64(int row, int col) const {
  absl::StatusOr<std::string_view> v =
      cell(row, col, {kInt2Oid, kInt4Oid, kInt8Oid, kOidOid}, "an integer");
  if (!v.ok()) return v.status();
  uint64_t bits = readBigEndian(*v);
  switch (v->size()) {
    case 2:
      return static_cast<int16_t>(bits);
    case 4:
      // oid is unsigned; the others are signed.
      if (PQftype(result_, col) == kOidOid) return static_cast<uint32_t>(bits);
      return static_cast<int32_t>(bits);
    case 8:
      return static_cast<int64_t>(bits);
  }
  return absl::DataLossError(
      absl::StrCat("column ", av(columnName(col)), " holds ", v->size(), " bytes, not an integer"));
}

absl::StatusOr<double> PgResult::getDouble(int row, int col) const {
  absl::StatusOr<std::string_view> v = cell(row, col, {kFloat4Oid, kFloat8Oid}, "a float");
  if (!v.ok()) return v.status();
  uint64_t bits = readBigEndian(*v);
  if (v->size() == 4) {
    auto narrow = static_cast<uint32_t>(bits);
    float f;
    std::memcpy(&f, &narrow, sizeof f);
    return f;
  }
  if (v->size() == 8) {
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
  return absl::DataLossError(
      absl::StrCat("column ", av(columnName(col)), " holds ", v->size(), " bytes, not a float"));
}

absl::StatusOr<bool> PgResult::getBool(int row, int col) const {
  absl::StatusOr<std::string_view> v = cell(row, col, {kBoolOid}, "boolean");
  if (!v.ok()) return v.status();
  if (v->size() != 1) {
    return absl::DataLossError(absl::StrCat("column ", av(columnName(col)), " holds ", v->size(),
                                            " bytes, not a boolean"));
  }
  return (*v)[0] != 0;
}

absl::StatusOr<std::string_view> PgResult::getText(int row, int col) const {
  return cell(row, col, {kTextOid, kVarcharOid, kBpcharOid, kNameOid}, "text");
}

absl::StatusOr<std::span<const uint8_t>> PgResult::getBytes(int row, int col) const {
  absl::StatusOr<std::string_view> v = cell(row, col, {kByteaOid}, "bytea");
  if (!v.ok()) return v.status();
  return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v->data()), v->size());
}

// ---------------------------------------------------------------------------------------
// PgTransaction

PgTransaction::~PgTransaction() {
  // Quietly: on a broken connection there is nothing left to roll back.
  if (conn_ != nullptr) (void)rollback();
}

absl::Status PgTransaction::commit() {
  if (conn_ == nullptr) return absl::FailedPreconditionError("the transaction is over");
  PgConnection* conn = conn_;
  conn_ = nullptr;
  absl::StatusOr<PgResult> done = conn->query("COMMIT");
  if (!done.ok()) return done.status();
  // A transaction in which a statement failed ends in a rollback, and the server says
  // so only in the command tag.
  if (std::string_view(PQcmdStatus(const_cast<PGresult*>(done->get()))) == "ROLLBACK") {
    return absl::AbortedError(
        absl::StrCat("COMMIT rolled the transaction back: a statement in it had failed (server ",
                     conn->server(), ")"));
  }
  return absl::OkStatus();
}

absl::Status PgTransaction::rollback() {
  if (conn_ == nullptr) return absl::FailedPreconditionError("the transaction is over");
  PgConnection* conn = conn_;
  conn_ = nullptr;
  return conn->execute("ROLLBACK");
}

// ---------------------------------------------------------------------------------------
// PgConnection

absl::StatusOr<std::unique_ptr<PgConnection>> PgConnection::connect(const std::string& uri) {
  if (uri.empty()) return absl::InvalidArgumentError("no PostgreSQL URI given");
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(uri.c_str(), &parse_error);
  if (options == nullptr) {
    std::string why = parse_error != nullptr ? oneLine(parse_error) : "out of memory";
    PQfreemem(parse_error);
    return absl::InvalidArgumentError(absl::StrCat("not a valid PostgreSQL URI: ", why));
  }
  // What the URI names, for messages: never its password.
  std::string server;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string_view key(o->keyword);
    if (key == "host" || key == "hostaddr" || key == "port" || key == "dbname" || key == "user") {
      absl::StrAppend(&server, server.empty() ? "" : " ", av(key), "=", o->val);
    }
  }
  PQconninfoFree(options);
  if (server.empty()) server = "libpq's default server";

  if (PQisthreadsafe() == 0) {
    return absl::FailedPreconditionError("this libpq was built without thread safety");
  }
  PGconn* conn = PQconnectdb(uri.c_str());
  if (conn == nullptr) {
    return absl::ResourceExhaustedError("libpq could not allocate a connection");
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = oneLine(PQerrorMessage(conn));
    PQfinish(conn);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL (", server, "): ", why));
  }
  PQsetNoticeProcessor(conn, ignoreNotice, nullptr);
  PGcancel* cancel = PQgetCancel(conn);
  if (cancel == nullptr) {
    PQfinish(conn);
    return absl::ResourceExhaustedError("libpq could not allocate a cancel handle");
  }
  return std::unique_ptr<PgConnection>(new PgConnection(conn, cancel, std::move(server)));
}

PgConnection::~PgConnection() {
  PQfreeCancel(cancel_);
  PQfinish(conn_);
}

namespace {
thread_local int64_t round_trips = 0;
}  // namespace

int64_t PgConnection::roundTripsOnThisThread() { return round_trips; }
void PgConnection::countRoundTrip() { round_trips += 1; }

void PgConnection::queue(std::string sql, std::vector<PgParam> params, std::string what) {
  queued_.push_back(Queued{std::move(sql), std::move(params), std::move(what)});
}

absl::Status PgConnection::flushQueued() {
  if (queued_.empty()) return settle();
  PgPipeline pipe(*this);
  return pipe.run().status;
}

void PgConnection::rollbackWithoutWaiting() {
  if (reply_due_ || broken()) return;
  // On failure to send, the connection is broken or busy; the pool drops it.
  reply_due_ = PQsendQuery(conn_, "ROLLBACK") == 1;
}

absl::Status PgConnection::settle() {
  if (!reply_due_) return absl::OkStatus();
  reply_due_ = false;
  absl::Status s;
  bool any = false;
  while (PGresult* r = PQgetResult(conn_)) {
    any = true;
    if (s.ok() && PQresultStatus(r) != PGRES_COMMAND_OK) s = pgStatus(r, conn_, "ROLLBACK", {});
    PQclear(r);
  }
  if (!any && s.ok()) s = pgStatus(nullptr, conn_, "ROLLBACK", {});
  return s;
}

absl::Status PgConnection::execute(std::string_view sql, std::string_view what) {
  FLATSTORE_RETURN_IF_ERROR(flushQueued());
  std::string text(sql);
  countRoundTrip();
  PGresult* r = PQexec(conn_, text.c_str());
  absl::Status s;
  ExecStatusType status = r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
    s = pgStatus(r, conn_, sql, what);
  }
  PQclear(r);
  return s;
}

absl::StatusOr<PgResult> PgConnection::query(std::string_view sql, std::span<const PgParam> params,
                                             std::string_view what) {
  if (!queued_.empty() || !params.empty()) {
    // Through a pipeline: queued statements go ahead, and the statement runs prepared
    // (pg_pipeline.h).
    PgPipeline pipe(*this);
    pipe.add(std::string(sql), std::vector<PgParam>(params.begin(), params.end()),
             std::string(what));
    PgPipeline::Outcome out = pipe.run();
    if (!out.status.ok()) return out.status;
    return std::move(out.results.back());
  }
  FLATSTORE_RETURN_IF_ERROR(settle());
  const int n = static_cast<int>(params.size());
  std::vector<Oid> types(params.size());
  std::vector<const char*> values(params.size());
  std::vector<int> lengths(params.size());
  std::vector<int> formats(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    types[i] = params[i].type();
    values[i] = params[i].data();
    lengths[i] = params[i].length();
    formats[i] = params[i].format();
  }
  std::string text(sql);
  countRoundTrip();
  PgResult result(PQexecParams(conn_, text.c_str(), n, types.data(), values.data(), lengths.data(),
                               formats.data(), /*resultFormat=*/1));
  ExecStatusType status =
      result.get() == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return pgStatus(result.get(), conn_, sql, what);
  }
  return result;
}

absl::StatusOr<PgTransaction> PgConnection::begin(PgIsolation isolation) {
  if (inTransaction()) {
    return absl::FailedPreconditionError(
        absl::StrCat("a transaction is open already on this connection (server ", server_, ")"));
  }
  const char* sql = "BEGIN";
  switch (isolation) {
    case PgIsolation::kReadCommitted:
      break;
    case PgIsolation::kRepeatableRead:
      sql = "BEGIN ISOLATION LEVEL REPEATABLE READ";
      break;
    case PgIsolation::kSerializable:
      sql = "BEGIN ISOLATION LEVEL SERIALIZABLE";
      break;
  }
  absl::Status s = execute(sql);
  if (!s.ok()) return s;
  return PgTransaction(this);
}

bool PgConnection::inTransaction() const {
  PGTransactionStatusType t = PQtransactionStatus(conn_);
  return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

absl::Status PgConnection::cancel() {
  char error[256] = {};
  if (PQcancel(cancel_, error, sizeof error) == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot send a cancel request (server ", server_, "): ", oneLine(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatstore::internal
