// The libpq wrapper (runtime/postgres.h) against a real PostgreSQL server: parameters of
// every kind, typed results, transactions, and each class of server error as its status
// code. The server is the one FLATSTORE_TEST_PG names (a URI; `scripts/pg-cluster.sh
// start DIR` starts a private server and prints one); without it those tests are
// skipped. The SQLSTATE mapping and the URI checks need no server and always run.
#include "runtime/postgres.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_macros.h"
#include "tests/support/wait.h"

namespace flatstore::internal {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The server's URI, or null when the tests that need one are to be skipped.
const char* serverUri() {
  const char* uri = std::getenv("FLATSTORE_TEST_PG");
  return uri != nullptr && *uri != '\0' ? uri : nullptr;
}

// The status's message as a std::string, which gMock prints readably.
std::string text(const absl::Status& s) { return std::string(s.message()); }

// Each test works in a schema of its own, dropped at the end, so that tests can run in
// parallel against one server and leave nothing behind.
class PostgresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (serverUri() == nullptr) {
      GTEST_SKIP() << "set FLATSTORE_TEST_PG to a PostgreSQL URI to run this test "
                      "(scripts/pg-cluster.sh start DIR prints one)";
    }
    schema_ = absl::StrCat("flatstore_test_", ::getpid());
    auto c = PgConnection::connect(serverUri());
    ASSERT_OK(c);
    ASSERT_OK((*c)->execute(
        absl::StrCat("DROP SCHEMA IF EXISTS ", schema_, " CASCADE; CREATE SCHEMA ", schema_)));
    conn_ = connect();
    ASSERT_NE(conn_, nullptr);
  }

  void TearDown() override {
    if (schema_.empty()) return;
    conn_.reset();
    auto c = PgConnection::connect(serverUri());
    ASSERT_OK(c);
    EXPECT_OK((*c)->execute(absl::StrCat("DROP SCHEMA ", schema_, " CASCADE")));
  }

  // A new connection working in the test's schema; null (with a failure) if it fails.
  std::unique_ptr<PgConnection> connect() {
    auto c = PgConnection::connect(serverUri());
    EXPECT_OK(c);
    if (!c.ok()) return nullptr;
    absl::Status s = (*c)->execute(absl::StrCat("SET search_path TO ", schema_));
    EXPECT_OK(s);
    return s.ok() ? std::move(*c) : nullptr;
  }

  // Creates the table the tests write: a bigint key and a bytea payload.
  void createTable() {
    ASSERT_OK(conn_->execute("CREATE TABLE item (id bigint PRIMARY KEY, payload bytea NOT NULL)"));
  }

  int64_t count(PgConnection& conn) {
    auto r = conn.query("SELECT count(*) FROM item");
    EXPECT_OK(r);
    if (!r.ok()) return -1;
    auto n = r->getInt64(0, 0);
    EXPECT_OK(n);
    return n.value_or(-1);
  }

  std::string schema_;
  std::unique_ptr<PgConnection> conn_;
};

TEST_F(PostgresTest, ConnectsAndRunsAQuery) {
  auto r = conn_->query("SELECT 41 + 1 AS answer, current_schema() AS schema");
  ASSERT_OK(r);
  ASSERT_EQ(r->rows(), 1);
  ASSERT_EQ(r->columns(), 2);
  EXPECT_EQ(r->columnName(0), "answer");
  EXPECT_EQ(r->getInt64(0, 0).value(), 42);
  EXPECT_EQ(r->getText(0, *r->column("schema")).value(), schema_);
  EXPECT_GT(conn_->backendPid(), 0);
  EXPECT_THAT(conn_->server(), HasSubstr("port="));
  EXPECT_FALSE(conn_->inTransaction());
  EXPECT_FALSE(conn_->broken());
}

TEST_F(PostgresTest, BindsParametersOfEveryKind) {
  const std::vector<uint8_t> blob = {0x00, 0xff, 0x27, 0x5c, 0x00, 0x01};
  auto r = conn_->query(
      "SELECT $1::bigint, $2::integer, $3::float8, $4::boolean, $5::text, $6::bytea",
      {PgParam::int64(-1234567890123), PgParam::int32(-7), PgParam::float64(0.25),
       PgParam::boolean(true), PgParam::text("it's \\ \"quoted\""), PgParam::bytes(blob)});
  ASSERT_OK(r);
  EXPECT_EQ(r->getInt64(0, 0).value(), -1234567890123);
  EXPECT_EQ(r->getInt64(0, 1).value(), -7);
  EXPECT_EQ(r->getDouble(0, 2).value(), 0.25);
  EXPECT_EQ(r->getBool(0, 3).value(), true);
  EXPECT_EQ(r->getText(0, 4).value(), "it's \\ \"quoted\"");
  auto bytes = r->getBytes(0, 5);
  ASSERT_OK(bytes);
  EXPECT_EQ(std::vector<uint8_t>(bytes->begin(), bytes->end()), blob);
}

TEST_F(PostgresTest, TextParametersTakeTheTypeTheStatementNeeds) {
  auto r = conn_->query("SELECT $1::integer + 1, $2::bigint IS NULL, length($3)",
                        {PgParam::text("41"), PgParam::null(), PgParam::text("")});
  ASSERT_OK(r);
  EXPECT_EQ(r->getInt64(0, 0).value(), 42);
  EXPECT_EQ(r->getBool(0, 1).value(), true);
  EXPECT_EQ(r->getInt64(0, 2).value(), 0);

  auto bad = conn_->query("SELECT $1::integer", {PgParam::text("forty-two")});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_THAT(text(bad.status()), HasSubstr("[SQLSTATE 22P02]"));
}

TEST_F(PostgresTest, TypedGettersCheckTypeNullAndRange) {
  auto r =
      conn_->query("SELECT 7::bigint AS n, NULL::text AS t, 1.5::real AS f, 'x'::varchar AS v");
  ASSERT_OK(r);
  auto wrong = r->getText(0, 0);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(text(wrong.status()), HasSubstr("column n is bigint, not text"));
  EXPECT_EQ(r->getBytes(0, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(r->isNull(0, 1));
  auto null = r->getText(0, 1);
  EXPECT_EQ(null.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(text(null.status()), HasSubstr("column t of row 0 is NULL"));
  EXPECT_EQ(r->getDouble(0, 2).value(), 1.5);
  EXPECT_EQ(r->getText(0, 3).value(), "x");
  EXPECT_EQ(r->getInt64(1, 0).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(r->getInt64(0, 4).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(r->column("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PostgresTest, CommittedRowsReachAnotherConnection) {
  createTable();
  std::vector<uint8_t> payload(200, 0xab);
  {
    auto txn = conn_->begin();
    ASSERT_OK(txn);
    EXPECT_TRUE(conn_->inTransaction());
    for (int64_t id = 0; id < 100; ++id) {
      auto r = conn_->query("INSERT INTO item (id, payload) VALUES ($1, $2)",
                            {PgParam::int64(id), PgParam::bytes(payload)});
      ASSERT_OK(r);
      EXPECT_EQ(r->affectedRows(), 1);
    }
    ASSERT_OK(txn->commit());
  }
  EXPECT_FALSE(conn_->inTransaction());
  auto other = connect();
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(count(*other), 100);
  auto r = other->query("SELECT payload FROM item WHERE id = $1", {PgParam::int64(99)});
  ASSERT_OK(r);
  ASSERT_EQ(r->rows(), 1);
  auto bytes = r->getBytes(0, 0);
  ASSERT_OK(bytes);
  EXPECT_EQ(std::vector<uint8_t>(bytes->begin(), bytes->end()), payload);
}

TEST_F(PostgresTest, DroppedTransactionRollsBack) {
  createTable();
  {
    auto txn = conn_->begin(PgIsolation::kRepeatableRead);
    ASSERT_OK(txn);
    ASSERT_OK(conn_->query("INSERT INTO item VALUES (1, '\\x00')"));
    auto again = conn_->begin();
    EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_FALSE(conn_->inTransaction());
  EXPECT_EQ(count(*conn_), 0);
}

TEST_F(PostgresTest, UniqueViolationIsAlreadyExists) {
  createTable();
  ASSERT_OK(conn_->query("INSERT INTO item VALUES ($1, '\\x00')", {PgParam::int64(5)}));
  auto dup = conn_->query("INSERT INTO item VALUES ($1, '\\x00')", {PgParam::int64(5)}, "item");
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists) << dup.status();
  EXPECT_THAT(text(dup.status()), HasSubstr("item: duplicate key value"));
  EXPECT_THAT(text(dup.status()), HasSubstr("Key (id)=(5) already exists."));
  EXPECT_THAT(text(dup.status()), HasSubstr("[SQLSTATE 23505]"));
  EXPECT_THAT(text(dup.status()), HasSubstr("(in `INSERT INTO item"));
}

TEST_F(PostgresTest, FailedStatementMakesCommitAborted) {
  createTable();
  ASSERT_OK(conn_->query("INSERT INTO item VALUES (1, '\\x00')"));
  auto txn = conn_->begin();
  ASSERT_OK(txn);
  ASSERT_OK(conn_->query("INSERT INTO item VALUES (2, '\\x00')"));
  EXPECT_EQ(conn_->query("INSERT INTO item VALUES (1, '\\x00')").status().code(),
            absl::StatusCode::kAlreadyExists);
  auto next = conn_->query("SELECT 1");
  EXPECT_EQ(next.status().code(), absl::StatusCode::kFailedPrecondition) << next.status();
  EXPECT_THAT(text(next.status()), HasSubstr("[SQLSTATE 25P02]"));
  absl::Status s = txn->commit();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(text(s), HasSubstr("rolled the transaction back"));
  EXPECT_FALSE(conn_->inTransaction());
  EXPECT_EQ(count(*conn_), 1);
}

TEST_F(PostgresTest, SyntaxErrorIsInvalidArgument) {
  auto r = conn_->query("SELEC 1");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(text(r.status()), HasSubstr("syntax error at or near \"SELEC\""));
  EXPECT_THAT(text(r.status()), HasSubstr("[SQLSTATE 42601]"));
  absl::Status s = conn_->execute("CREATE TABLE (", "setup");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(text(s), HasSubstr("setup: syntax error"));
}

TEST_F(PostgresTest, UndefinedTableIsNotFound) {
  auto r = conn_->query("SELECT * FROM no_such_table");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_THAT(text(r.status()), HasSubstr("relation \"no_such_table\" does not exist"));
  EXPECT_THAT(text(r.status()), HasSubstr("[SQLSTATE 42P01]"));
}

TEST_F(PostgresTest, ConcurrentUpdateUnderRepeatableReadIsAborted) {
  createTable();
  ASSERT_OK(conn_->query("INSERT INTO item VALUES (1, '\\x00')"));
  auto txn = conn_->begin(PgIsolation::kRepeatableRead);
  ASSERT_OK(txn);
  EXPECT_EQ(count(*conn_), 1);  // takes the transaction's snapshot
  auto other = connect();
  ASSERT_NE(other, nullptr);
  ASSERT_OK(other->query("UPDATE item SET payload = '\\x01' WHERE id = 1"));
  auto r = conn_->query("UPDATE item SET payload = '\\x02' WHERE id = 1");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  EXPECT_THAT(text(r.status()), HasSubstr("[SQLSTATE 40001]"));
}

// Counts the round trips `conn` makes while `fn` runs: the Sync messages it sends, as
// libpq's protocol trace shows them (every statement or pipeline ends with one).
template <class Fn>
int roundTrips(PgConnection& conn, Fn fn) {
  std::FILE* trace = std::tmpfile();
  EXPECT_NE(trace, nullptr);
  if (trace == nullptr) return -1;
  PQtrace(conn.get(), trace);
  fn();
  PQuntrace(conn.get());
  std::rewind(trace);
  int syncs = 0;
  char line[4096];
  while (std::fgets(line, sizeof line, trace) != nullptr) {
    std::string_view l(line);
    if (l.find("\tF\t") != std::string_view::npos && l.find("\tSync") != std::string_view::npos) {
      syncs += 1;
    }
  }
  std::fclose(trace);
  return syncs;
}

TEST_F(PostgresTest, QueuedStatementsGoWithTheNextStatementInItsRoundTrip) {
  conn_->queue("BEGIN ISOLATION LEVEL REPEATABLE READ");
  conn_->queue("SELECT set_config('application_name', $1, true)", {PgParam::text("queued")});
  EXPECT_TRUE(conn_->hasQueued());
  absl::StatusOr<PgResult> r;
  int trips = roundTrips(*conn_, [&] {
    r = conn_->query("SELECT current_setting($1)", {PgParam::text("application_name")});
  });
  ASSERT_OK(r);
  EXPECT_EQ(trips, 1);
  EXPECT_FALSE(conn_->hasQueued());
  // The statement ran after the queued ones, inside their transaction.
  EXPECT_EQ(r->getText(0, 0).value(), "queued");
  EXPECT_TRUE(conn_->inTransaction());
  std::vector<PgResult> queued = conn_->takeQueuedResults();
  ASSERT_EQ(queued.size(), 2u);
  EXPECT_EQ(queued[1].getText(0, 0).value(), "queued");
  EXPECT_TRUE(conn_->takeQueuedResults().empty());
  ASSERT_OK(conn_->execute("ROLLBACK"));
}

TEST_F(PostgresTest, AFailedQueuedStatementFailsTheNextCall) {
  createTable();
  conn_->queue("BEGIN");
  conn_->queue("INSERT INTO no_such_table VALUES (1)", {}, "the queued insert");
  auto r =
      conn_->query("INSERT INTO item VALUES ($1, $2)", {PgParam::int64(1), PgParam::bytes({})});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_THAT(text(r.status()), HasSubstr("no_such_table"));
  ASSERT_OK(conn_->execute("ROLLBACK"));
  // The statement after the failed one did not run.
  EXPECT_EQ(count(*conn_), 0);
  // execute() runs what is queued first, in a round trip of its own.
  conn_->queue("INSERT INTO item VALUES (2, '')");
  ASSERT_OK(conn_->execute("INSERT INTO item VALUES (3, '')"));
  EXPECT_EQ(count(*conn_), 2);
  // Dropped statements never run.
  conn_->queue("INSERT INTO item VALUES (4, '')");
  conn_->dropQueued();
  EXPECT_EQ(count(*conn_), 2);
}

TEST_F(PostgresTest, RollbackWithoutWaitingEndsTheTransactionBeforeTheNextCall) {
  createTable();
  ASSERT_OK(conn_->execute("BEGIN; INSERT INTO item VALUES (1, '')"));
  // A lock the transaction holds, which another connection waits for.
  ASSERT_OK(conn_->execute("SELECT pg_advisory_xact_lock(4242)"));
  conn_->rollbackWithoutWaiting();
  EXPECT_TRUE(conn_->replyDue());
  // The server ends the transaction without this connection reading the reply: the
  // other connection gets the lock (pg_advisory_lock would wait forever otherwise; the
  // statement timeout bounds the test).
  auto other = connect();
  ASSERT_NE(other, nullptr);
  ASSERT_OK(other->execute("SET statement_timeout = '60s'"));
  ASSERT_OK(other->execute("SELECT pg_advisory_lock(4242)"));
  ASSERT_OK(other->execute("SELECT pg_advisory_unlock(4242)"));
  EXPECT_EQ(count(*other), 0);
  EXPECT_TRUE(conn_->replyDue());
  // The next call reads the reply first.
  EXPECT_EQ(count(*conn_), 0);
  EXPECT_FALSE(conn_->replyDue());
  EXPECT_FALSE(conn_->inTransaction());
  EXPECT_OK(conn_->settle());
}

TEST_F(PostgresTest, StatementsRunPreparedOncePerConnectionAndType) {
  createTable();
  auto prepared = [&]() -> int64_t {
    auto r = conn_->query("SELECT count(*) FROM pg_prepared_statements");
    EXPECT_OK(r);
    return r.ok() ? r->getInt64(0, 0).value_or(-1) : -1;
  };
  const int64_t before = prepared();
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(
        conn_->query("INSERT INTO item VALUES ($1, $2)", {PgParam::int64(i), PgParam::bytes({})}));
  }
  // One, for the inserts (the count has no parameters and runs unprepared).
  EXPECT_EQ(prepared(), before + 1);
  // The same text with parameters of other types is another statement: a value is
  // read as the type it was prepared for.
  const char* sql = "SELECT $1::text";
  auto a = conn_->query(sql, {PgParam::int64(7)});
  auto b = conn_->query(sql, {PgParam::text("seven")});
  auto c = conn_->query(sql, {PgParam::float64(7.5)});
  ASSERT_OK(a);
  ASSERT_OK(b);
  ASSERT_OK(c);
  EXPECT_EQ(a->getText(0, 0).value(), "7");
  EXPECT_EQ(b->getText(0, 0).value(), "seven");
  EXPECT_EQ(c->getText(0, 0).value(), "7.5");
  EXPECT_EQ(prepared(), before + 4);
  // A statement without parameters is prepared too when it goes in a pipeline (here
  // queued ahead of another).
  for (int i = 0; i < 2; ++i) {
    conn_->queue("SELECT 2");
    ASSERT_OK(conn_->query(sql, {PgParam::int64(7)}));
  }
  EXPECT_EQ(prepared(), before + 5);
  // A statement prepared in a pipeline that failed before it was never made: the
  // connection prepares it again rather than naming one the server does not have.
  conn_->queue("SELECT 1/0");
  auto failed = conn_->query("SELECT count(*) FROM item WHERE id > $1", {PgParam::int64(0)});
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument) << failed.status();
  auto again = conn_->query("SELECT count(*) FROM item WHERE id > $1", {PgParam::int64(0)});
  ASSERT_OK(again);
  EXPECT_EQ(again->getInt64(0, 0).value(), 4);
  // Past the bound, statements still run, unprepared.
  for (int i = 0; i < static_cast<int>(PgConnection::kMaxPrepared) + 10; ++i) {
    auto r = conn_->query(absl::StrCat("SELECT $1::bigint + ", i), {PgParam::int64(1)});
    ASSERT_OK(r);
    ASSERT_EQ(r->getInt64(0, 0).value(), 1 + i);
  }
  EXPECT_EQ(prepared(), static_cast<int64_t>(PgConnection::kMaxPrepared));
}

TEST_F(PostgresTest, TerminatedConnectionIsUnavailable) {
  auto victim = connect();
  ASSERT_NE(victim, nullptr);
  // pg_terminate_backend with a timeout returns once the process is gone (or fails).
  auto killed = conn_->query("SELECT pg_terminate_backend($1, 60000)",
                             {PgParam::int32(victim->backendPid())});
  ASSERT_OK(killed);
  ASSERT_TRUE(killed->getBool(0, 0).value());
  auto r = victim->query("SELECT 1");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  // The server's FATAL message may or may not arrive before libpq sees the socket close;
  // either way the message names the lost server and the statement.
  EXPECT_THAT(text(r.status()), HasSubstr("connection to PostgreSQL lost (host="));
  EXPECT_THAT(text(r.status()), HasSubstr("(in `SELECT 1`)"));
  EXPECT_THAT(text(r.status()), Not(HasSubstr("\n")));
  EXPECT_TRUE(victim->broken());
  EXPECT_EQ(victim->query("SELECT 1").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(victim->begin().status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(PostgresTest, StatementTimeoutIsDeadlineExceeded) {
  ASSERT_OK(conn_->execute("SET statement_timeout = '50ms'"));
  auto r = conn_->query("SELECT pg_sleep(60)");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_THAT(text(r.status()), HasSubstr("[SQLSTATE 57014]"));
}

TEST_F(PostgresTest, CancelFromAnotherThreadIsCancelled) {
  absl::StatusOr<PgResult> result = absl::UnknownError("not run");
  absl::Notification done;
  std::thread sleeper([&] {
    result = conn_->query("SELECT pg_sleep(600)");
    done.Notify();
  });
  // A cancel request that arrives before the statement starts is lost; send one until
  // the statement ends.
  absl::Time deadline = absl::Now() + ::flatstore::testing::kBoundedWait;
  while (!done.WaitForNotificationWithTimeout(absl::Milliseconds(50))) {
    absl::Status sent = conn_->cancel();
    if (!sent.ok()) ::flatstore::testing::failStuck(std::string(sent.message()));
    if (absl::Now() > deadline) ::flatstore::testing::failStuck("the cancelled statement runs on");
  }
  sleeper.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled) << result.status();
  EXPECT_THAT(text(result.status()), HasSubstr("[SQLSTATE 57014]"));
}

TEST(PostgresConnectTest, BadUriIsInvalidArgument) {
  for (const char* uri : {"postgresql://localhost/db?no_such_option=1", "postgresql://[::1/db",
                          "host=localhost port", ""}) {
    auto c = PgConnection::connect(uri);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << uri << ": " << c.status();
  }
  auto c = PgConnection::connect("postgresql://localhost/db?no_such_option=1");
  EXPECT_THAT(
      c.status().message(),
      HasSubstr("not a valid PostgreSQL URI: invalid URI query parameter: \"no_such_option\""));
}

TEST(PostgresConnectTest, UnreachableServerIsUnavailable) {
  auto c = PgConnection::connect(
      "postgresql://someone:secret@/postgres?host=/nonexistent-flatstore-dir&port=5");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_THAT(text(c.status()), HasSubstr("cannot connect to PostgreSQL ("));
  EXPECT_THAT(text(c.status()), HasSubstr("host=/nonexistent-flatstore-dir"));
  EXPECT_THAT(text(c.status()), HasSubstr("port=5"));
  EXPECT_THAT(text(c.status()), HasSubstr("No such file or directory"));
  EXPECT_THAT(text(c.status()), Not(HasSubstr("secret")));
}

TEST(PostgresStatusTest, SqlstatesMapToTheMostSpecificCode) {
  using absl::StatusCode;
  const std::vector<std::pair<std::string_view, StatusCode>> cases = {
      {"08006", StatusCode::kUnavailable},
      {"08001", StatusCode::kUnavailable},
      {"40001", StatusCode::kAborted},
      {"40P01", StatusCode::kAborted},
      {"23505", StatusCode::kAlreadyExists},
      {"23503", StatusCode::kFailedPrecondition},
      {"23502", StatusCode::kFailedPrecondition},
      {"53100", StatusCode::kResourceExhausted},
      {"53300", StatusCode::kResourceExhausted},
      {"42601", StatusCode::kInvalidArgument},
      {"42P01", StatusCode::kNotFound},
      {"42P07", StatusCode::kAlreadyExists},
      {"42501", StatusCode::kPermissionDenied},
      {"22P02", StatusCode::kInvalidArgument},
      {"22003", StatusCode::kOutOfRange},
      {"25P02", StatusCode::kFailedPrecondition},
      {"28P01", StatusCode::kUnauthenticated},
      {"3D000", StatusCode::kNotFound},
      {"55P03", StatusCode::kUnavailable},
      {"57P01", StatusCode::kUnavailable},
      {"0A000", StatusCode::kUnimplemented},
      {"XX001", StatusCode::kDataLoss},
      {"XX000", StatusCode::kInternal},
      {"", StatusCode::kInternal},
  };
  for (const auto& [sqlstate, code] : cases) {
    EXPECT_EQ(pgStatusCode(sqlstate, "some message"), code) << sqlstate;
  }
  EXPECT_EQ(pgStatusCode("57014", "canceling statement due to user request"),
            StatusCode::kCancelled);
  EXPECT_EQ(pgStatusCode("57014", "canceling statement due to statement timeout"),
            StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace flatstore::internal
