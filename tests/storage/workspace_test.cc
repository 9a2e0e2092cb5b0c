// Workspace basics: open and its errors, CRUD for every request kind, composite keys,
// unique violations, abort, read-your-writes, shutdown.
#include "flatstore/workspace.h"

#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/small_disk.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"
#include "tests/support/workspace_fixture.h"

namespace flatstore::test::game {
namespace {

using ::flatstore::testing::TempDir;
using ::flatstore::testing::WorkspaceFixture;
using ::testing::HasSubstr;
using ::testing::Not;
using F = MonsterFields;

absl::StatusOr<SubmitOutcome> create(TransactionContext& txn, std::string_view name, int realm,
                                     int16_t hp) {
  auto r = MonsterChangeRequest::creation();
  r.setName(name).setRealm(realm).setHp(hp);
  return txn.submit(r);
}

class WorkspaceTest : public WorkspaceFixture {};

TEST_F(WorkspaceTest, InsertFetchUpdateDelete) {
  auto done = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) -> absl::Status {
    EXPECT_EQ(*create(txn, "orc", 1, 30), SubmitOutcome::kInserted);
    EXPECT_EQ(*create(txn, "troll", 1, 120), SubmitOutcome::kInserted);
    return absl::OkStatus();
  });
  ASSERT_OK(done);
  EXPECT_EQ(done->inserted, 2);
  EXPECT_GT(done->versionstamp, Versionstamp());

  auto all = ws_->fetch<Monster>().orderBy(F::hp.descending()).all();
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0]->name(), "troll");
  EXPECT_EQ((*all)[0]->versionstamp(), done->versionstamp);
  EXPECT_GT((*all)[0]->rowid(), 0);

  auto orc = ws_->get<Monster>("orc", 1);
  ASSERT_OK(orc);
  ASSERT_NE(*orc, nullptr);
  EXPECT_EQ((*orc)->hp(), 30);

  auto updated = ws_->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
    auto r = MonsterChangeRequest::changeOf(**orc);
    r.setHp(31);
    EXPECT_EQ(*txn.submit(r), SubmitOutcome::kUpdated);
    auto same = MonsterChangeRequest::changeOf(**orc);
    same.setHp(31);
    EXPECT_EQ(*txn.submit(same), SubmitOutcome::kUnchanged);
    return absl::OkStatus();
  });
  ASSERT_OK(updated);
  EXPECT_EQ(updated->updated, 1);
  EXPECT_GT(updated->versionstamp, done->versionstamp);
  EXPECT_EQ((*ws_->get<Monster>("orc", 1))->hp(), 31);

  ASSERT_OK(ws_->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
    EXPECT_EQ(*txn.submit(MonsterChangeRequest::deletion("orc", 1)), SubmitOutcome::kDeleted);
    return absl::OkStatus();
  }));
  EXPECT_EQ(*ws_->get<Monster>("orc", 1), nullptr);
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 1);
}

// A versionstamp's position counts transactions within a group commit, not changes:
// every object one transaction writes carries the transaction's versionstamp, and a
// transaction committed alone is position 0 of its commit.
TEST_F(WorkspaceTest, EveryObjectOfATransactionCarriesItsVersionstamp) {
  auto done = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) -> absl::Status {
    for (int realm = 1; realm <= 3; ++realm) {
      FLATSTORE_RETURN_IF_ERROR(create(txn, "orc", realm, 30).status());
    }
    return absl::OkStatus();
  });
  ASSERT_OK(done);
  EXPECT_EQ(done->versionstamp.position(), 0);
  auto all = ws_->fetch<Monster>().all();
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 3u);
  for (const auto& m : *all) EXPECT_EQ(m->versionstamp(), done->versionstamp) << m->realm();
}

TEST_F(WorkspaceTest, UpsertInsertsThenUpdates) {
  const std::pair<int, SubmitOutcome> steps[] = {
      {5, SubmitOutcome::kInserted}, {6, SubmitOutcome::kUpdated}, {6, SubmitOutcome::kUnchanged}};
  for (auto [hp, expected] : steps) {
    auto r = ws_->performChangesAndWait<Monster>(
        [hp, expected](TransactionContext& txn) -> absl::Status {
          auto u = MonsterChangeRequest::upsert();
          u.setName("imp").setRealm(2).setHp(static_cast<int16_t>(hp));
          auto outcome = txn.submit(u);
          if (!outcome.ok()) return outcome.status();
          EXPECT_EQ(*outcome, expected);
          return absl::OkStatus();
        });
    ASSERT_OK(r);
  }
  EXPECT_EQ((*ws_->get<Monster>("imp", 2))->hp(), 6);
}

TEST_F(WorkspaceTest, DuplicateKeyAndUniqueViolations) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    auto r = MonsterChangeRequest::creation();
    r.setName("orc").setRealm(1).setEmail("orc@x");
    return txn.submit(r).status();
  }));
  auto dup = ws_->performChangesAndWait<Monster>(
      [](TransactionContext& txn) { return create(txn, "orc", 1, 9).status(); });
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(dup.status().message()), HasSubstr("(\"orc\", 1)"));

  auto unique = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    auto r = MonsterChangeRequest::creation();
    r.setName("orc2").setRealm(1).setEmail("orc@x");
    return txn.submit(r).status();
  });
  EXPECT_EQ(unique.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(unique.status().message()), HasSubstr("email"));
  EXPECT_THAT(std::string(unique.status().message()), HasSubstr("\"orc@x\""));
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 1);
}

TEST_F(WorkspaceTest, AbortAndClosureErrorsWriteNothing) {
  auto aborted = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    EXPECT_OK(create(txn, "orc", 1, 30));
    return txn.abort("changed my mind");
  });
  EXPECT_EQ(aborted.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(aborted.status().message()), HasSubstr("changed my mind"));
  auto thrown = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) -> absl::Status {
    EXPECT_OK(create(txn, "orc", 1, 30));
    throw std::runtime_error("boom");
  });
  EXPECT_EQ(thrown.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(thrown.status().message()), HasSubstr("boom"));
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 0);
}

TEST_F(WorkspaceTest, UndeclaredTableIsFailedPrecondition) {
  auto r = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) -> absl::Status {
    auto e = EventChangeRequest::creation();
    e.setKind("x");
    auto submitted = txn.submit(e);
    EXPECT_EQ(submitted.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(submitted.status().message()), HasSubstr("flatstore.test.game.Event"));
    auto fetched = txn.fetch<Event>().all();
    EXPECT_EQ(fetched.status().code(), absl::StatusCode::kFailedPrecondition);
    return submitted.status();
  });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(WorkspaceTest, ReadYourWritesInsideTheClosure) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>(
      [](TransactionContext& txn) { return create(txn, "orc", 1, 30).status(); }));
  ASSERT_OK(ws_->performChangesAndWait<Monster>([](TransactionContext& txn) -> absl::Status {
    EXPECT_OK(create(txn, "imp", 1, 8));
    auto orc = *txn.get<Monster>("orc", 1);
    auto hurt = MonsterChangeRequest::changeOf(*orc);
    hurt.setHp(3);
    EXPECT_OK(txn.submit(hurt));
    auto weak = txn.fetch<Monster>().where(F::hp < 10).orderBy(F::name.ascending()).all();
    EXPECT_OK(weak);
    EXPECT_EQ(weak->size(), 2u);
    EXPECT_EQ((*weak)[0]->name(), "imp");
    EXPECT_EQ((*weak)[1]->name(), "orc");
    EXPECT_EQ(*txn.fetch<Monster>().count(), 2);
    EXPECT_OK(txn.submit(MonsterChangeRequest::deletion("imp", 1)));
    EXPECT_EQ(*txn.get<Monster>("imp", 1), nullptr);
    EXPECT_EQ(*txn.fetch<Monster>().where(F::hp < 10).count(), 1);
    return absl::OkStatus();
  }));
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 1);
  EXPECT_EQ((*ws_->get<Monster>("orc", 1))->hp(), 3);
}

TEST_F(WorkspaceTest, AutomaticIds) {
  auto r = ws_->performChangesAndWait<Event>([](TransactionContext& txn) -> absl::Status {
    for (int i = 0; i < 3; ++i) {
      auto e = EventChangeRequest::creation();
      e.setKind("tick").setAt(i);
      EXPECT_OK(txn.submit(e));
    }
    return absl::OkStatus();
  });
  ASSERT_OK(r);
  auto events = ws_->fetch<Event>().orderBy(EventFields::at.ascending()).all();
  ASSERT_OK(events);
  ASSERT_EQ(events->size(), 3u);
  int64_t id = (*events)[1]->rowid();
  auto one = ws_->get<Event>(id);
  ASSERT_OK(one);
  EXPECT_EQ((*one)->at(), 1);
  ASSERT_OK(ws_->performChangesAndWait<Event>([id](TransactionContext& txn) {
    return txn.submit(EventChangeRequest::deletion(id)).status();
  }));
  EXPECT_EQ(*ws_->fetch<Event>().count(), 2);
}

TEST_F(WorkspaceTest, ShutdownCompletesPendingWorkAndRefusesNew) {
  std::vector<TransactionHandle> handles;
  for (int i = 0; i < 50; ++i) {
    handles.push_back(ws_->performChanges<Monster>([i](TransactionContext& txn) {
      return create(txn, "m" + std::to_string(i), 0, 1).status();
    }));
  }
  ASSERT_OK(ws_->shutdown());
  for (auto& h : handles) {
    EXPECT_TRUE(h.done());
    EXPECT_OK(h.wait());
  }
  auto late = ws_->performChangesAndWait<Monster>(
      [](TransactionContext& txn) { return create(txn, "late", 0, 1).status(); });
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  ws_.reset();
  auto reopened = Workspace::open(dir_.file("test.db"));
  ASSERT_OK(reopened);
  EXPECT_EQ(*(*reopened)->fetch<Monster>().count(), 50);
}

// After shutdown() every call fails the same way, with FailedPrecondition: reads of the
// dictionary and of the latest versionstamp included, not only fetches and commits.
TEST_F(WorkspaceTest, EveryCallAfterShutdownIsFailedPrecondition) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>(
      [](TransactionContext& txn) { return create(txn, "m", 0, 1).status(); }));
  ASSERT_OK(ws_->dictionary().setInteger("k", 1));
  auto before = ws_->fetch<Monster>().all();
  ASSERT_OK(before);
  ASSERT_OK(ws_->shutdown());
  auto expectShutDown = [](const absl::Status& s, const char* call) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << call << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr("shut down")) << call;
  };
  expectShutDown(ws_->fetch<Monster>().all().status(), "fetch().all()");
  expectShutDown(ws_->fetch<Monster>().count().status(), "fetch().count()");
  expectShutDown(ws_->get<Monster>("m", 0).status(), "get");
  expectShutDown(ws_->dictionary().getInteger("k").status(), "dictionary().getInteger");
  expectShutDown(ws_->dictionary().getString("missing").status(), "dictionary().getString");
  expectShutDown(ws_->dictionary().setInteger("k", 2), "dictionary().setInteger");
  expectShutDown(ws_->latestVersionstamp().status(), "latestVersionstamp");
  expectShutDown(ws_->changesSince<Monster>(Versionstamp()).status(), "changesSince");
  expectShutDown(ws_->snapshot([](Workspace::Snapshot&) { return absl::OkStatus(); }), "snapshot");
  expectShutDown(
      ws_->subscribe(*before, [](const FetchedResult<Monster>&, const Changeset&) {}).status(),
      "subscribe");
  expectShutDown(
      ws_->performChangesAndWait<Monster>([](TransactionContext&) { return absl::OkStatus(); })
          .status(),
      "performChangesAndWait");
}

// performChangesAndWait on free tables runs the closure on the calling thread (which
// would only wait otherwise); performChanges hands it to a worker. Either way the rules
// inside are the same: shutdown() there is FailedPrecondition.
TEST_F(WorkspaceTest, WaitingCallerRunsItsOwnClosureWhenTablesAreFree) {
  std::thread::id ran_on;
  absl::Status shutdown_inside;
  ASSERT_OK(ws_->performChangesAndWait<Monster>([&](TransactionContext& txn) {
    ran_on = std::this_thread::get_id();
    shutdown_inside = ws_->shutdown();
    return create(txn, "orc", 1, 30).status();
  }));
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_TRUE(absl::IsFailedPrecondition(shutdown_inside)) << shutdown_inside;
  auto handle = ws_->performChanges<Monster>([&](TransactionContext& txn) {
    ran_on = std::this_thread::get_id();
    return create(txn, "troll", 1, 120).status();
  });
  ASSERT_OK(handle.wait());
  EXPECT_NE(ran_on, std::this_thread::get_id());
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 2);
}

TEST(WorkspaceOpen, ClearErrorsAndUntouchedFiles) {
  TempDir dir;
  auto missing = Workspace::open(dir.file("no/such/dir/x.db"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("does not exist"));

  std::string junk = dir.file("junk.db");
  { std::ofstream(junk) << std::string(8192, 'x'); }
  auto foreign = Workspace::open(junk);
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(foreign.status().message()), HasSubstr("not a database"));
  EXPECT_EQ(std::filesystem::file_size(junk), 8192u);

  std::string other = dir.file("other.db");
  {
    sqlite3* db;
    sqlite3_open(other.c_str(), &db);
    sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  auto notours = Workspace::open(other);
  EXPECT_EQ(notours.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(notours.status().message()), HasSubstr("did not create"));

  std::string newer = dir.file("newer.db");
  { ASSERT_OK(Workspace::open(newer)); }
  {
    sqlite3* db;
    sqlite3_open(newer.c_str(), &db);
    sqlite3_exec(db, "UPDATE flatstore_meta SET value = 99 WHERE key = 'format'", nullptr, nullptr,
                 nullptr);
    sqlite3_close(db);
  }
  auto future = Workspace::open(newer);
  EXPECT_EQ(future.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(future.status().message()), HasSubstr("newer flatstore (format 99)"));
}

// A PostgreSQL URI is refused as not available yet, not taken for a file in a missing
// directory, and the message names the server without the URI's password.
// A URI is a server, not a file name: one that cannot be reached is Unavailable once
// the reconnect limit has passed, and the message names it without its password.
TEST(WorkspaceOpen, APostgresUriIsAServerNotAPath) {
  for (std::string scheme : {"postgresql://", "postgres://"}) {
    // Port 1 on the loopback address: nothing listens there, so connecting fails at once.
    const std::string uri = scheme + "alice:s3cret@127.0.0.1:1/app?password=s3cret";
    auto ws = Workspace::open(uri, {.reconnect_limit = absl::Milliseconds(100)});
    EXPECT_EQ(ws.status().code(), absl::StatusCode::kUnavailable) << ws.status();
    std::string message(ws.status().message());
    EXPECT_THAT(message, HasSubstr(scheme + "127.0.0.1:1/app"));
    EXPECT_THAT(message, Not(HasSubstr("s3cret")));
    EXPECT_FALSE(std::filesystem::exists(uri)) << "the URI was taken for a file name";
  }
}

// Runs `sql` on the file at `path` outside flatstore; fails the test on an error.
void rawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  std::string message = error != nullptr ? error : "";
  sqlite3_free(error);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << message;
}

// Format 1 kept the commit sequence in flatstore_meta; a file of that format is
// upgraded at open and its sequence, versionstamps and change log carry on.
TEST(WorkspaceOpen, UpgradesFormatOneFiles) {
  TempDir dir;
  std::string path = dir.file("old.db");
  Versionstamp orc_vs;
  {
    auto ws = Workspace::open(path);
    ASSERT_OK(ws);
    auto done = (*ws)->performChangesAndWait<Monster>(
        [](TransactionContext& txn) { return create(txn, "orc", 1, 30).status(); });
    ASSERT_OK(done);
    orc_vs = done->versionstamp;
  }
  // Make it a format 1 file, as format 1 left it after three more commits that changed
  // nothing (format 1 advanced the sequence without a log row for those).
  uint64_t old_seq = orc_vs.commitSequence() + 3;
  rawExec(path, absl::StrCat("BEGIN;"
                             "ALTER TABLE flatstore_changes DROP COLUMN last_vs;"
                             "DELETE FROM flatstore_changes WHERE length(changes) = 0;"
                             "INSERT INTO flatstore_meta VALUES('seq', ",
                             old_seq, "), ('last_vs', ", orc_vs.packed(),
                             ");"
                             "UPDATE flatstore_meta SET value = 1 WHERE key = 'format';"
                             "COMMIT;"));

  auto ws = Workspace::open(path);
  ASSERT_OK(ws);
  auto latest = (*ws)->latestVersionstamp();
  ASSERT_OK(latest);
  EXPECT_EQ(*latest, orc_vs);
  auto troll = (*ws)->performChangesAndWait<Monster>(
      [](TransactionContext& txn) { return create(txn, "troll", 1, 90).status(); });
  ASSERT_OK(troll);
  // Later than every format 1 commit (the first use of the table commits too).
  EXPECT_GT(troll->versionstamp.commitSequence(), old_seq);
  auto since = (*ws)->changesSince<Monster>(orc_vs);
  ASSERT_OK(since);
  ASSERT_EQ(since->changed.size(), 1u);
  EXPECT_EQ(since->changed[0]->name(), "troll");
  EXPECT_EQ(since->through, troll->versionstamp);
  auto before = (*ws)->changesSince<Monster>(Versionstamp());
  ASSERT_OK(before);
  EXPECT_EQ(before->changed.size(), 2u);
  ws->reset();

  // Upgraded once: the file now says format 2, and opens again unchanged.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT (SELECT value FROM flatstore_meta WHERE key = 'format'), "
                               "(SELECT count(*) FROM flatstore_meta WHERE key IN ('seq', "
                               "'last_vs'))",
                               -1, &st, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(st, 0), 2);
  EXPECT_EQ(sqlite3_column_int64(st, 1), 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  auto again = Workspace::open(path);
  ASSERT_OK(again);
  EXPECT_EQ(*(*again)->latestVersionstamp(), troll->versionstamp);
}

}  // namespace
}  // namespace flatstore::test::game

namespace flatstore::test::game {
namespace {

TEST_F(WorkspaceTest, CorruptBlobIsDataLossNamingTableAndRowid) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>(
      [](TransactionContext& txn) { return create(txn, "orc", 1, 30).status(); }));
  int64_t rowid = (*ws_->get<Monster>("orc", 1))->rowid();
  {
    sqlite3* db;
    ASSERT_EQ(sqlite3_open(dir_.file("test.db").c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE \"flatstore.test.game.Monster\" SET p = x'0badf00d0badf00d'",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  for (auto result : {ws_->fetch<Monster>().all().status(), ws_->get<Monster>("orc", 1).status()}) {
    EXPECT_EQ(result.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(result.message()), HasSubstr("flatstore.test.game.Monster"));
    EXPECT_THAT(std::string(result.message()), HasSubstr("rowid " + std::to_string(rowid)));
  }
  // A change of the corrupt object fails the same way inside a transaction.
  auto change = ws_->performChangesAndWait<Monster>([](TransactionContext& txn) {
    return txn.submit(MonsterChangeRequest::deletion("orc", 1)).status();
  });
  EXPECT_EQ(change.status().code(), absl::StatusCode::kDataLoss);
}

// Settings written from inside closures: a waiting caller's closure (inside the write
// transaction when the writer is idle) and a worker's closure (on a snapshot).
TEST_F(WorkspaceTest, DictionaryWritesFromInsideClosures) {
  Dictionary& d = ws_->dictionary();
  auto waited = ws_->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(d.setInteger("waited", 1));
    auto m = MonsterChangeRequest::creation();
    m.setName("orc").setRealm(1).setHp(7);
    return txn.submit(m).status();
  });
  ASSERT_OK(waited);
  auto queued = ws_->performChanges<Monster>([&](TransactionContext& txn) -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(d.setInteger("queued", 2));
    auto m = MonsterChangeRequest::creation();
    m.setName("elf").setRealm(1).setHp(8);
    return txn.submit(m).status();
  });
  ASSERT_OK(queued.wait());
  EXPECT_EQ(**d.getInteger("waited"), 1);
  EXPECT_EQ(**d.getInteger("queued"), 2);
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 2);
}

TEST_F(WorkspaceTest, DictionaryKeepsTypedValues) {
  Dictionary& d = ws_->dictionary();
  ASSERT_OK(d.setString("name", "flatstore"));
  ASSERT_OK(d.setInteger("count", -42));
  ASSERT_OK(d.setDouble("ratio", 0.25));
  std::vector<uint8_t> blob = {0, 1, 2, 255};
  ASSERT_OK(d.setBytes("blob", blob));
  auto m = MonsterChangeRequest::creation();
  m.setName("orc").setRealm(1).setHp(7);
  auto entity = MonsterEntity::fromBytes(m.encodeOver(nullptr)->bytes.span());
  ASSERT_OK(d.setObject("boss", **entity));

  EXPECT_EQ(**d.getString("name"), "flatstore");
  EXPECT_EQ(**d.getInteger("count"), -42);
  EXPECT_EQ(**d.getDouble("ratio"), 0.25);
  EXPECT_EQ(**d.getBytes("blob"), blob);
  auto boss = d.getObject<MonsterEntity>("boss");
  ASSERT_OK(boss);
  EXPECT_EQ((*boss)->hp(), 7);
  EXPECT_EQ(*d.getString("absent"), std::nullopt);

  auto wrong = d.getInteger("name");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(wrong.status().message()), HasSubstr("'name' holds a string"));
  auto wrong_type = d.getObject<EventEntity>("boss");
  EXPECT_EQ(wrong_type.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(wrong_type.status().message()), HasSubstr("flatstore.test.game.Monster"));

  ASSERT_OK(d.setString("count", "now a string"));
  EXPECT_EQ(**d.getString("count"), "now a string");
  ASSERT_OK(d.erase("count"));
  EXPECT_EQ(*d.getString("count"), std::nullopt);

  // Values persist in the file.
  ws_.reset();
  auto reopened = Workspace::open(dir_.file("test.db"));
  ASSERT_OK(reopened);
  EXPECT_EQ(**(*reopened)->dictionary().getDouble("ratio"), 0.25);
}

TEST_F(WorkspaceTest, SnapshotSeesOneState) {
  ASSERT_OK(ws_->performChangesAndWait<Monster>(
      [](TransactionContext& txn) { return create(txn, "orc", 1, 30).status(); }));
  ASSERT_OK(ws_->snapshot([&](Workspace::Snapshot& s) -> absl::Status {
    EXPECT_EQ(*s.fetch<Monster>().count(), 1);
    // A commit made while the snapshot is open is not visible through it.
    EXPECT_OK(ws_->performChangesAndWait<Monster>(
        [](TransactionContext& txn) { return create(txn, "imp", 1, 3).status(); }));
    EXPECT_EQ(*s.fetch<Monster>().count(), 1);
    EXPECT_EQ(*s.get<Monster>("imp", 1), nullptr);
    return absl::OkStatus();
  }));
  EXPECT_EQ(*ws_->fetch<Monster>().count(), 2);
}

// ---------------------------------------------------------------------------------------
// A full disk (a small tmpfs; these tests skip where mounting one is not allowed)

constexpr int64_t kSmallDisk = 4 << 20;

// Creates `n` Monsters of about 40 KB each.
absl::Status createLarge(Workspace& ws, int first, int n) {
  for (int i = first; i < first + n; ++i) {
    FLATSTORE_RETURN_IF_ERROR(ws.performChangesAndWait<Monster>([i](TransactionContext& txn) {
                                  auto r = MonsterChangeRequest::creation();
                                  r.setName("big" + std::to_string(i)).setRealm(0);
                                  r.setInventory(std::vector<uint8_t>(40 << 10, uint8_t(i)));
                                  return txn.submit(r).status();
                                }).status());
  }
  return absl::OkStatus();
}

// shutdown() ends with a checkpoint that copies the WAL back into the database; on a
// full disk that fails, and shutdown() says so (the WAL keeps every commit).
TEST(FullDiskTest, ShutdownReturnsTheFinalCheckpointsError) {
  testing::SmallDisk disk(kSmallDisk);
  if (!disk.mounted()) GTEST_SKIP() << "mounting a small file system is not allowed here";
  {
    auto ws = Workspace::open(disk.file("full.db"));
    ASSERT_OK(ws);
    ASSERT_OK(createLarge(**ws, 0, 10));  // over 1 MB in the WAL, none in the file yet
    disk.fill();
    absl::Status closed = (*ws)->shutdown();
    EXPECT_EQ(closed.code(), absl::StatusCode::kResourceExhausted) << closed;
    EXPECT_THAT(closed.message(), HasSubstr("checkpoint"));
    EXPECT_EQ((*ws)->shutdown().code(), absl::StatusCode::kResourceExhausted)
        << "a second call returns what the first one did";
  }
  disk.release();
  auto reopened = Workspace::open(disk.file("full.db"));
  ASSERT_OK(reopened);
  auto count = (*reopened)->fetch<Monster>().count();
  ASSERT_OK(count);
  EXPECT_EQ(*count, 10);
}

// Opening on a full disk: a new file cannot be made (ResourceExhausted); an existing
// one opens, and reading its tables needs no write, so fetches and lookups work while
// the disk stays full, and a commit fails with ResourceExhausted.
TEST(FullDiskTest, ReadsWorkOnAFullDisk) {
  testing::SmallDisk disk(kSmallDisk);
  if (!disk.mounted()) GTEST_SKIP() << "mounting a small file system is not allowed here";
  {
    auto ws = Workspace::open(disk.file("existing.db"));
    ASSERT_OK(ws);
    ASSERT_OK(createLarge(**ws, 0, 2));
    ASSERT_OK((*ws)->shutdown());
  }
  disk.fill();
  auto created = Workspace::open(disk.file("new.db"));
  EXPECT_EQ(created.status().code(), absl::StatusCode::kResourceExhausted) << created.status();

  auto ws = Workspace::open(disk.file("existing.db"));
  ASSERT_OK(ws);
  auto count = (*ws)->fetch<Monster>().count();
  ASSERT_OK(count);
  EXPECT_EQ(*count, 2);
  auto big = (*ws)->get<Monster>("big1", 0);
  ASSERT_OK(big);
  ASSERT_NE(*big, nullptr);
  ASSERT_NE((*big)->inventory(), nullptr);
  EXPECT_EQ((*big)->inventory()->size(), 40u << 10);
  absl::Status more = createLarge(**ws, 2, 1);
  EXPECT_EQ(more.code(), absl::StatusCode::kResourceExhausted) << more;
}

}  // namespace
}  // namespace flatstore::test::game
