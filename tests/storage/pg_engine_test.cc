// The PostgreSQL storage engine (runtime/pg_engine.h) at the StorageEngine interface,
// against the server FLATSTORE_TEST_PG names (skipped without one): opening and
// refusing, writes and reads, unique violations, per-table locks (disjoint tables in
// parallel, one table serial), versionstamp order, the change feed that never skips a
// transaction that commits late, NOTIFY wake-ups, and compiled queries against a brute-
// force filter. Two engines on one database are two clients.
#include "runtime/pg_engine.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/pg_change_feed.h"
#include "tests/support/status_macros.h"
#include "tests/support/wait.h"

namespace flatstore::internal {
namespace {

using ::flatstore::test::game::Color;
using ::flatstore::test::game::EventEntity;
using ::flatstore::test::game::MonsterEntity;
using ::flatstore::testing::kBoundedWait;
using ::testing::HasSubstr;

const char* serverUri() {
  const char* uri = std::getenv("FLATSTORE_TEST_PG");
  return uri != nullptr && *uri != '\0' ? uri : nullptr;
}

std::string text(const absl::Status& s) { return std::string(s.message()); }

struct MonsterSpec {
  std::string name;
  int32_t realm = 0;
  int16_t hp = 100;
  int16_t mana = 150;
  Color color = Color::Blue;
  float x = 0;
  std::optional<std::string> email = std::nullopt;
};

ObjectBuffer monsterBytes(const MonsterSpec& m) {
  flatbuffers::FlatBufferBuilder fbb;
  auto name = fbb.CreateString(m.name);
  flatbuffers::Offset<flatbuffers::String> email;
  if (m.email.has_value()) email = fbb.CreateString(*m.email);
  flatstore::test::common::Vec3 pos(m.x, 0, 0);
  flatstore::test::game::MonsterBuilder b(fbb);
  b.add_name(name);
  b.add_realm(m.realm);
  b.add_hp(m.hp);
  b.add_mana(m.mana);
  b.add_color(m.color);
  b.add_pos(&pos);
  if (m.email.has_value()) b.add_email(email);
  fbb.Finish(b.Finish());
  return ObjectBuffer::copyOf({fbb.GetBufferPointer(), fbb.GetSize()});
}

ObjectBuffer eventBytes(const std::string& kind, int64_t at) {
  flatbuffers::FlatBufferBuilder fbb;
  auto k = fbb.CreateString(kind);
  flatstore::test::game::EventBuilder b(fbb);
  b.add_kind(k);
  b.add_at(at);
  fbb.Finish(b.Finish());
  return ObjectBuffer::copyOf({fbb.GetBufferPointer(), fbb.GetSize()});
}

EncodedChange insertOf(TableState* t, ObjectBuffer bytes) {
  EncodedChange c;
  c.op = EncodedChange::Op::kInsert;
  c.table = t;
  c.bridge = t->bridge();  // encoded as the table's program writes now
  t->desc.key_of(bytes.data(), &c.key);
  t->desc.index_values_of(bytes.data(), &c.index_values);
  c.bytes = std::move(bytes);
  return c;
}

// Each test works in a schema of its own (the engine's URI sets the search_path), dropped
// at the end.
class PgEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (serverUri() == nullptr) {
      GTEST_SKIP() << "set FLATSTORE_TEST_PG to a PostgreSQL URI to run this test "
                      "(scripts/pg-cluster.sh start DIR prints one)";
    }
    static std::atomic<int> counter{0};
    schema_ = absl::StrCat("fs_engine_", ::getpid(), "_", counter++);
    admin_ = connect();
    ASSERT_NE(admin_, nullptr);
    ASSERT_OK(admin_->execute(
        absl::StrCat("DROP SCHEMA IF EXISTS ", schema_, " CASCADE; CREATE SCHEMA ", schema_)));
    monsters_ = std::make_unique<TableState>(MonsterEntity::description());
    events_ = std::make_unique<TableState>(EventEntity::description());
  }

  void TearDown() override {
    if (admin_ != nullptr)
      EXPECT_OK(admin_->execute(absl::StrCat("DROP SCHEMA ", schema_, " CASCADE")));
  }

  std::string engineUri() const {
    std::string uri = serverUri();
    return absl::StrCat(uri, uri.find('?') == std::string::npos ? "?" : "&",
                        "options=-csearch_path%3D", schema_);
  }

  std::unique_ptr<PgConnection> connect() {
    auto c = PgConnection::connect(serverUri());
    EXPECT_OK(c);
    return c.ok() ? std::move(*c) : nullptr;
  }

  // A client: an engine on the test's schema with both tables registered. Each client
  // keeps its own TableStates, as each workspace does.
  struct Client {
    std::unique_ptr<PgEngine> engine;
    std::unique_ptr<TableState> monsters;
    std::unique_ptr<TableState> events;
  };
  Client client() {
    Client c;
    auto engine = PgEngine::open({.uri = engineUri()});
    EXPECT_OK(engine);
    if (!engine.ok()) return c;
    c.engine = std::move(*engine);
    c.monsters = std::make_unique<TableState>(MonsterEntity::description());
    c.events = std::make_unique<TableState>(EventEntity::description());
    EXPECT_OK(c.engine->registerTable(*c.monsters));
    EXPECT_OK(c.engine->registerTable(*c.events));
    return c;
  }

  // `n` clients; fewer (with a failure) when one cannot open.
  std::vector<Client> clients(int n) {
    std::vector<Client> out;
    for (int i = 0; i < n; ++i) {
      Client c = client();
      if (c.engine == nullptr) break;
      out.push_back(std::move(c));
    }
    return out;
  }

  // Commits `changes` in one session on `tables`; returns the session's versionstamp.
  static absl::StatusOr<Versionstamp> commitOne(PgEngine& e, std::vector<const TableState*> tables,
                                                std::vector<EncodedChange> changes) {
    FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<WriteSession> s, e.beginWrite(tables));
    FLATSTORE_RETURN_IF_ERROR(s->apply(0, changes));
    FLATSTORE_RETURN_IF_ERROR(s->commit());
    return s->versionstamp(0);
  }

  // A session of `c` on `table` that inserted `object` and stays open.
  static absl::StatusOr<std::unique_ptr<WriteSession>> openSession(Client& c, TableState* table,
                                                                   ObjectBuffer object) {
    FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<WriteSession> s,
                               c.engine->beginWrite(std::vector<const TableState*>{table}));
    std::vector<EncodedChange> changes;
    changes.push_back(insertOf(table, std::move(object)));
    FLATSTORE_RETURN_IF_ERROR(s->apply(0, changes));
    return s;
  }

  // Commits `object` into `table` in a session of `c` on `tables`.
  static absl::StatusOr<Versionstamp> commitObject(Client& c, std::vector<const TableState*> tables,
                                                   TableState* table, ObjectBuffer object) {
    std::vector<EncodedChange> changes;
    changes.push_back(insertOf(table, std::move(object)));
    return commitOne(*c.engine, std::move(tables), std::move(changes));
  }

  // Four writer threads, two on each client, `commits` commits each; `plan(thread, i)`
  // says whether commit i of a thread writes a Monster, an Event, or both (one object
  // each). Returns how many commits failed.
  static int writeConcurrently(Client& a, Client& b, int commits,
                               const std::function<std::pair<bool, bool>(int, int)>& plan) {
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        Client& c = t % 2 == 0 ? a : b;
        for (int i = 0; i < commits; ++i) {
          auto [monster, event] = plan(t, i);
          std::vector<const TableState*> tables;
          std::vector<EncodedChange> changes;
          if (monster) {
            tables.push_back(c.monsters.get());
            changes.push_back(
                insertOf(c.monsters.get(), monsterBytes({.name = absl::StrCat("w", t, "_", i)})));
          }
          if (event) {
            tables.push_back(c.events.get());
            changes.push_back(insertOf(c.events.get(), eventBytes(absl::StrCat("e", t), i)));
          }
          if (!commitOne(*c.engine, tables, std::move(changes)).ok()) failures++;
        }
      });
    }
    for (auto& th : threads) th.join();
    return failures.load();
  }

  // Whether a backend other than `self` waits for an advisory lock now.
  // Whether a session waits for an advisory lock of this test's schema (a table's, in
  // its lock space) or, given `key`, for the one-key lock `key`. Other tests' locks on
  // the same server do not count.
  bool someoneWaitsForLock(std::optional<int64_t> key = std::nullopt) {
    const std::string which =
        key.has_value()
            ? absl::StrCat("classid = ", static_cast<uint32_t>(*key >> 32),
                           " AND objid = ", static_cast<uint32_t>(*key), " AND objsubid = 1")
            : absl::StrCat("classid = ", static_cast<uint32_t>(pgLockSpace(schema_)),
                           " AND objsubid = 2");
    auto r = admin_->query(absl::StrCat(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND ", which));
    EXPECT_OK(r);
    return r.ok() && *r->getInt64(0, 0) > 0;
  }

  std::string schema_;
  std::unique_ptr<PgConnection> admin_;
  std::unique_ptr<TableState> monsters_;
  std::unique_ptr<TableState> events_;
};

// ---------------------------------------------------------------------------------------
// Compiled queries against a brute-force filter.

std::shared_ptr<const ExprNode> cmp(const FieldInfo& f, CompareOp op, Value v) {
  auto n = std::make_shared<ExprNode>();
  n->kind = ExprNode::Kind::kCompare;
  n->op = op;
  n->field = &f;
  n->values.push_back(std::move(v));
  return n;
}
std::shared_ptr<const ExprNode> in(const FieldInfo& f, std::vector<Value> values, bool negated) {
  auto n = std::make_shared<ExprNode>();
  n->kind = ExprNode::Kind::kIn;
  n->negated = negated;
  n->field = &f;
  n->values = std::move(values);
  return n;
}
std::shared_ptr<const ExprNode> isNull(const FieldInfo& f, bool negated) {
  auto n = std::make_shared<ExprNode>();
  n->kind = ExprNode::Kind::kIsNull;
  n->negated = negated;
  n->field = &f;
  return n;
}
std::shared_ptr<const ExprNode> both(ExprNode::Kind kind, std::shared_ptr<const ExprNode> l,
                                     std::shared_ptr<const ExprNode> r) {
  auto n = std::make_shared<ExprNode>();
  n->kind = kind;
  n->lhs = std::move(l);
  n->rhs = std::move(r);
  return n;
}
std::shared_ptr<const ExprNode> negate(std::shared_ptr<const ExprNode> l) {
  auto n = std::make_shared<ExprNode>();
  n->kind = ExprNode::Kind::kNot;
  n->lhs = std::move(l);
  return n;
}

// What the query must return, from every row and the runtime's in-memory evaluation.
std::vector<int64_t> bruteForce(const std::vector<RawRow>& all, const QuerySpec& spec) {
  std::vector<const RawRow*> rows;
  for (const RawRow& r : all) {
    if (spec.where == nullptr || evaluate(*spec.where, r.bytes.data()) == Truth::kTrue) {
      rows.push_back(&r);
    }
  }
  std::stable_sort(rows.begin(), rows.end(), [&](const RawRow* a, const RawRow* b) {
    for (const auto& [field, desc] : spec.order) {
      auto c = sortOrder(field->read(a->bytes.data()), field->read(b->bytes.data()));
      if (c != 0) return desc ? c > 0 : c < 0;
    }
    return a->rowid < b->rowid;
  });
  std::vector<int64_t> out;
  for (size_t i = static_cast<size_t>(spec.offset); i < rows.size(); ++i) {
    if (spec.limit.has_value() && static_cast<int64_t>(out.size()) >= *spec.limit) break;
    out.push_back(rows[i]->rowid);
  }
  return out;
}

TEST_F(PgEngineTest, CreatesTheCatalogAndOpensItAgain) {
  auto first = PgEngine::open({.uri = engineUri()});
  ASSERT_OK(first);
  EXPECT_EQ((*first)->schema(), schema_);
  auto r = admin_->query(
      absl::StrCat("SELECT value FROM ", schema_, ".flatstore_meta WHERE key = 'format'"));
  ASSERT_OK(r);
  EXPECT_EQ(*r->getInt64(0, 0), kPgFormatVersion);
  ASSERT_OK((*first)->registerTable(*monsters_));
  auto second = PgEngine::open({.uri = engineUri()});
  ASSERT_OK(second);
  TableState again(MonsterEntity::description());
  ASSERT_OK((*second)->registerTable(again));
  EXPECT_EQ(again.id, monsters_->id);
}

TEST_F(PgEngineTest, RefusesASchemaItDidNotCreate) {
  ASSERT_OK(admin_->execute(absl::StrCat("CREATE TABLE ", schema_, ".orders(id int)")));
  auto engine = PgEngine::open({.uri = engineUri()});
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(text(engine.status()), HasSubstr("is not a flatstore database"));
  EXPECT_THAT(text(engine.status()), HasSubstr(schema_));
  // Nothing was written.
  auto r = admin_->query(
      absl::StrCat("SELECT count(*) FROM pg_tables WHERE schemaname = '", schema_, "'"));
  ASSERT_OK(r);
  EXPECT_EQ(*r->getInt64(0, 0), 1);
}

TEST_F(PgEngineTest, RefusesANewerFormat) {
  ASSERT_OK(PgEngine::open({.uri = engineUri()}));
  ASSERT_OK(admin_->execute(
      absl::StrCat("UPDATE ", schema_, ".flatstore_meta SET value = 99 WHERE key = 'format'")));
  auto engine = PgEngine::open({.uri = engineUri()});
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(text(engine.status()), HasSubstr("newer flatstore (format 99)"));
}

TEST_F(PgEngineTest, RefusesATableWhosePrimaryKeyChanged) {
  Client c = client();
  ASSERT_NE(c.engine, nullptr);
  ASSERT_OK(admin_->execute(absl::StrCat(
      "UPDATE ", schema_, ".flatstore_tables SET schema_hash = 7 WHERE id = ", c.monsters->id)));
  TableState again(MonsterEntity::description());
  absl::Status s = c.engine->registerTable(again);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(text(s), HasSubstr("primary key changed"));
}

TEST_F(PgEngineTest, WritesAndReadsBack) {
  Client c = client();
  ASSERT_NE(c.engine, nullptr);
  ObjectBuffer orc = monsterBytes({.name = std::string("o\0rc", 4), .realm = 2, .hp = 30});
  std::vector<uint8_t> orc_bytes(orc.span().begin(), orc.span().end());
  std::vector<EncodedChange> changes;
  changes.push_back(insertOf(c.monsters.get(), std::move(orc)));
  changes.push_back(insertOf(c.events.get(), eventBytes("spawn", 5)));
  auto s = c.engine->beginWrite(std::vector<const TableState*>{c.monsters.get(), c.events.get()});
  ASSERT_OK(s);
  ASSERT_OK((*s)->apply(0, changes));
  EXPECT_GT(changes[0].rowid, 0);
  EXPECT_GT(changes[1].rowid, 0);
  ASSERT_OK((*s)->putEntry("greeting", Dictionary::Kind::kString, "", {orc_bytes.data(), 3}));
  ASSERT_OK((*s)->commit());
  const Versionstamp vs = (*s)->versionstamp(0);

  auto view = c.engine->snapshot();
  ASSERT_OK(view);
  auto row =
      (*view)->rowByKey(*c.monsters, {Value::text(std::string("o\0rc", 4)), Value::integer(2)});
  ASSERT_OK(row);
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->rowid, changes[0].rowid);
  EXPECT_EQ((*row)->versionstamp, vs);
  EXPECT_EQ(std::vector<uint8_t>((*row)->bytes.span().begin(), (*row)->bytes.span().end()),
            orc_bytes);
  auto by_rowid = (*view)->rowByRowid(*c.events, changes[1].rowid);
  ASSERT_OK(by_rowid);
  ASSERT_TRUE(by_rowid->has_value());
  auto entry = (*view)->entry("greeting");
  ASSERT_OK(entry);
  ASSERT_TRUE(entry->has_value());
  EXPECT_EQ((*entry)->value.size(), 3u);
  auto missing = (*view)->rowByKey(*c.monsters, {Value::text("orc"), Value::integer(2)});
  ASSERT_OK(missing);
  EXPECT_FALSE(missing->has_value());
}

// applyUnlessChanged: the check for another client's commits since a snapshot, the
// request and the session's start go in one round trip; a conflict leaves the session
// only to be rolled back, and nothing of it is written.
TEST_F(PgEngineTest, ApplyUnlessChangedChecksAppliesAndStartsInOneRoundTrip) {
  Client a = client();
  Client b = client();
  ASSERT_NE(a.engine, nullptr);
  ASSERT_NE(b.engine, nullptr);
  const std::vector<const TableState*> monsters = {a.monsters.get()};
  auto mark_of = [&]() -> ReadMark {
    auto view = a.engine->snapshot();
    EXPECT_OK(view);
    if (!view.ok()) return {};
    auto mark = (*view)->mark();
    EXPECT_OK(mark);
    return mark.value_or(ReadMark{});
  };

  // Nothing changed since the mark: applied, in one round trip with the session's start.
  ReadMark mark = mark_of();
  auto s = a.engine->beginWrite(monsters);
  ASSERT_OK(s);
  std::vector<EncodedChange> changes;
  changes.push_back(insertOf(a.monsters.get(), monsterBytes({.name = "first", .hp = 1})));
  absl::StatusOr<int> changed = -2;
  const int64_t before = PgConnection::roundTripsOnThisThread();
  changed = (*s)->applyUnlessChanged(0, changes, monsters, &mark);
  const int64_t trips = PgConnection::roundTripsOnThisThread() - before;
  ASSERT_OK(changed);
  EXPECT_EQ(*changed, -1);
  EXPECT_EQ(trips, 1);
  EXPECT_GT(changes[0].rowid, 0);
  ASSERT_OK((*s)->commit());
  const Versionstamp first = (*s)->versionstamp(0);
  s->reset();

  // The mark predates the first commit, but that was this client's own: no conflict. Then
  // another client commits: a conflict on its table, and nothing of the request stays.
  auto own = a.engine->beginWrite(monsters);
  ASSERT_OK(own);
  std::vector<EncodedChange> mine;
  mine.push_back(insertOf(a.monsters.get(), monsterBytes({.name = "mine", .hp = 2})));
  auto not_changed = (*own)->applyUnlessChanged(0, mine, monsters, &mark);
  ASSERT_OK(not_changed);
  EXPECT_EQ(*not_changed, -1);
  own->reset();  // rolled back

  mark = mark_of();
  ASSERT_OK(commitObject(b, {b.monsters.get()}, b.monsters.get(),
                         monsterBytes({.name = "theirs", .hp = 3})));
  auto late = a.engine->beginWrite(monsters);
  ASSERT_OK(late);
  std::vector<EncodedChange> lost;
  lost.push_back(insertOf(a.monsters.get(), monsterBytes({.name = "lost", .hp = 4})));
  const std::vector<const TableState*> both = {a.events.get(), a.monsters.get()};
  auto conflict = (*late)->applyUnlessChanged(0, lost, both, &mark);
  ASSERT_OK(conflict);
  EXPECT_EQ(*conflict, 1) << "the index of the changed table among those read";
  EXPECT_EQ((*late)->commit().code(), absl::StatusCode::kFailedPrecondition);
  late->reset();

  auto view = a.engine->snapshot();
  ASSERT_OK(view);
  for (const char* name : {"mine", "lost"}) {
    auto row = (*view)->rowByKey(*a.monsters, {Value::text(name), Value::integer(0)});
    ASSERT_OK(row);
    EXPECT_FALSE(row->has_value()) << name;
  }
  auto kept = (*view)->rowByKey(*a.monsters, {Value::text("first"), Value::integer(0)});
  ASSERT_OK(kept);
  ASSERT_TRUE(kept->has_value());
  EXPECT_EQ((*kept)->versionstamp, first);
}

TEST_F(PgEngineTest, UniqueViolationsNameTableAndFieldAndRollBackAlone) {
  Client c = client();
  ASSERT_NE(c.engine, nullptr);
  ASSERT_OK(commitOne(*c.engine, {c.monsters.get()}, {}));  // an empty session commits too
  std::vector<EncodedChange> first;
  first.push_back(insertOf(c.monsters.get(), monsterBytes({.name = "a", .email = "a@x"})));
  ASSERT_OK(commitOne(*c.engine, {c.monsters.get()}, std::move(first)));

  auto s = c.engine->beginWrite(std::vector<const TableState*>{c.monsters.get()});
  ASSERT_OK(s);
  std::vector<EncodedChange> same_email;
  same_email.push_back(insertOf(c.monsters.get(), monsterBytes({.name = "b"})));
  same_email.push_back(insertOf(c.monsters.get(), monsterBytes({.name = "c", .email = "a@x"})));
  absl::Status dup = (*s)->apply(0, same_email);
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(text(dup), HasSubstr("table flatstore.test.game.Monster"));
  EXPECT_THAT(text(dup), HasSubstr("unique field 'email' already has value \"a@x\""));

  std::vector<EncodedChange> same_key;
  same_key.push_back(insertOf(c.monsters.get(), monsterBytes({.name = "a"})));
  absl::Status key = (*s)->apply(1, same_key);
  EXPECT_EQ(key.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(text(key), HasSubstr("an object with primary key (\"a\", 0) already exists"));

  // The session goes on: the failed requests left nothing, the next one commits.
  std::vector<EncodedChange> fine;
  fine.push_back(insertOf(c.monsters.get(), monsterBytes({.name = "d", .email = "d@x"})));
  ASSERT_OK((*s)->apply(2, fine));
  ASSERT_OK((*s)->commit());
  auto view = c.engine->snapshot();
  ASSERT_OK(view);
  auto n = (*view)->count(*c.monsters, QuerySpec{}, nullptr);
  ASSERT_OK(n);
  EXPECT_EQ(*n, 2);  // a and d; not b (its request failed)
}

TEST_F(PgEngineTest, DisjointTablesCommitInParallelAndOneTableIsSerial) {
  std::vector<Client> cs = clients(2);
  ASSERT_EQ(cs.size(), 2u);
  Client& a = cs[0];
  Client& b = cs[1];
  // Client a holds the Monster lock in an open transaction.
  auto held = openSession(a, a.monsters.get(), monsterBytes({.name = "held"}));
  ASSERT_OK(held);
  // Client b commits on Event meanwhile, on this thread: it does not wait for a.
  ASSERT_OK(commitObject(b, {b.events.get()}, b.events.get(), eventBytes("beside", 1)));

  // Client b on Monster waits until a commits.
  absl::Notification done;
  absl::StatusOr<Versionstamp> second;
  std::thread waiter([&] {
    second = commitObject(b, {b.monsters.get(), b.events.get()}, b.monsters.get(),
                          monsterBytes({.name = "after"}));
    done.Notify();
  });
  const absl::Time deadline = absl::Now() + kBoundedWait;
  while (!someoneWaitsForLock() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_TRUE(someoneWaitsForLock()) << "the second session on Monster never waited";
  EXPECT_FALSE(done.HasBeenNotified());
  ASSERT_OK((*held)->commit());
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kBoundedWait));
  waiter.join();
  ASSERT_OK(second);
  EXPECT_GT(*second, (*held)->versionstamp(0));
}

TEST_F(PgEngineTest, VersionstampsFollowCommitOrderPerTable) {
  std::vector<Client> cs = clients(2);
  ASSERT_EQ(cs.size(), 2u);
  Client& a = cs[0];
  Client& b = cs[1];
  // Four threads, two clients, overlapping table sets; each commit inserts one object.
  // Under a table's lock rows are inserted in commit order, so per table the rowid order
  // is the commit order, and the versionstamps must follow it.
  constexpr int kCommits = 40;
  ASSERT_EQ(writeConcurrently(a, b, kCommits, [](int t, int) { return std::pair(t != 3, t >= 2); }),
            0);
  for (const char* table : {"fs1", "fs2"}) {
    auto r = admin_->query(absl::StrCat("SELECT vs FROM ", schema_, ".", table, " ORDER BY rowid"));
    ASSERT_OK(r);
    ASSERT_GT(r->rows(), kCommits);
    for (int i = 1; i < r->rows(); ++i) {
      EXPECT_LT(*r->getInt64(i - 1, 0), *r->getInt64(i, 0)) << table << " row " << i;
    }
  }
}

TEST_F(PgEngineTest, ChangesSinceSeesATransactionThatStartedFirstAndCommittedLast) {
  std::vector<Client> cs = clients(2);
  ASSERT_EQ(cs.size(), 2u);
  Client& a = cs[0];
  Client& b = cs[1];
  auto reader = a.engine->snapshot();
  ASSERT_OK(reader);
  auto start = (*reader)->latestVersionstamp();
  ASSERT_OK(start);
  reader->reset();

  // Client a starts first on Monster and stays open; client b commits later on Event.
  auto early = openSession(a, a.monsters.get(), monsterBytes({.name = "late"}));
  ASSERT_OK(early);
  auto quick = commitObject(b, {b.events.get()}, b.events.get(), eventBytes("quick", 1));
  ASSERT_OK(quick);
  EXPECT_LT((*early)->versionstamp(0), *quick);  // started first: the smaller stamp

  // A reader now: b's commit is visible, but the feed stops below a, which still runs.
  // A cursor at b's stamp would skip a forever; this one stays below a.
  auto view = a.engine->snapshot();
  ASSERT_OK(view);
  auto monsters = (*view)->changesSince(*a.monsters, *start);
  ASSERT_OK(monsters);
  EXPECT_TRUE(monsters->changed.empty());
  EXPECT_LT(monsters->through, (*early)->versionstamp(0));
  auto events = (*view)->changesSince(*a.events, *start);
  ASSERT_OK(events);
  EXPECT_LT(events->through, (*early)->versionstamp(0));
  auto latest = (*view)->latestVersionstamp();
  ASSERT_OK(latest);
  EXPECT_LT(*latest, (*early)->versionstamp(0));
  view->reset();

  ASSERT_OK((*early)->commit());
  auto after = a.engine->snapshot();
  ASSERT_OK(after);
  auto late = (*after)->changesSince(*a.monsters, monsters->through);
  ASSERT_OK(late);
  ASSERT_EQ(late->changed.size(), 1u);
  EXPECT_EQ(late->changed[0].versionstamp, (*early)->versionstamp(0));
  auto quick_seen = (*after)->changesSince(*a.events, events->through);
  ASSERT_OK(quick_seen);
  ASSERT_EQ(quick_seen->changed.size(), 1u);
  EXPECT_EQ(quick_seen->changed[0].versionstamp, *quick);
  EXPECT_GE(late->through, *quick);
}

TEST_F(PgEngineTest, ChangesSinceNeverSkipsUnderConcurrentCommitters) {
  std::vector<Client> cs = clients(3);
  ASSERT_EQ(cs.size(), 3u);
  Client& a = cs[0];
  Client& b = cs[1];
  Client& r = cs[2];
  std::atomic<bool> stop{false};
  std::map<std::string, std::set<int64_t>> seen;  // by table: rowids reported
  std::map<std::string, Versionstamp> cursor;
  auto poll = [&](TableState& t) -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<ReadView> v, r.engine->snapshot());
    FLATSTORE_ASSIGN_OR_RETURN(LogChanges ch,
                               v->changesSince(t, cursor[std::string(t.desc.table_name)]));
    for (const RawRow& row : ch.changed) seen[std::string(t.desc.table_name)].insert(row.rowid);
    cursor[std::string(t.desc.table_name)] = ch.through;
    return absl::OkStatus();
  };
  absl::Status reader_status;
  std::thread reader([&] {
    while (!stop.load() && reader_status.ok()) {
      reader_status = poll(*r.monsters);
      if (reader_status.ok()) reader_status = poll(*r.events);
    }
  });
  constexpr int kCommits = 60;
  const int failures = writeConcurrently(a, b, kCommits, [](int t, int i) {
    return std::pair(t == 0 || (t == 2 && i % 2 == 0), t != 0);
  });
  stop = true;
  reader.join();
  ASSERT_OK(reader_status);
  ASSERT_EQ(failures, 0);
  // One last poll from where the reader stopped: a change the reader had passed over
  // without reporting would be missing now.
  ASSERT_OK(poll(*r.monsters));
  ASSERT_OK(poll(*r.events));
  for (const auto& [table, id] : {std::pair<std::string, int>{"flatstore.test.game.Monster", 1},
                                  {"flatstore.test.game.Event", 2}}) {
    auto all = admin_->query(absl::StrCat("SELECT rowid FROM ", schema_, ".fs", id));
    ASSERT_OK(all);
    std::set<int64_t> stored;
    for (int i = 0; i < all->rows(); ++i) stored.insert(*all->getInt64(i, 0));
    std::vector<int64_t> missing, extra;
    std::set_difference(stored.begin(), stored.end(), seen[table].begin(), seen[table].end(),
                        std::back_inserter(missing));
    std::set_difference(seen[table].begin(), seen[table].end(), stored.begin(), stored.end(),
                        std::back_inserter(extra));
    EXPECT_TRUE(missing.empty() && extra.empty())
        << table << ": never reported " << absl::StrJoin(missing, ", ")
        << "; reported but not stored " << absl::StrJoin(extra, ", ");
  }
}

TEST_F(PgEngineTest, ChangesSinceAPrunedVersionstampIsOutOfRange) {
  auto engine = PgEngine::open({.uri = engineUri(), .log_retention = 2});
  ASSERT_OK(engine);
  ASSERT_OK((*engine)->registerTable(*monsters_));
  // Commits spanning more than one pruning span of transaction ids.
  Versionstamp first;
  for (int i = 0; i < 70; ++i) {
    std::vector<EncodedChange> changes;
    changes.push_back(insertOf(monsters_.get(), monsterBytes({.name = absl::StrCat("p", i)})));
    auto vs = commitOne(**engine, {monsters_.get()}, std::move(changes));
    ASSERT_OK(vs);
    if (i == 0) first = *vs;
  }
  auto view = (*engine)->snapshot();
  ASSERT_OK(view);
  auto old = (*view)->changesSince(*monsters_, first);
  EXPECT_EQ(old.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(text(old.status()), HasSubstr("no longer in the change log"));
  auto rows = admin_->query(absl::StrCat("SELECT count(*) FROM ", schema_, ".flatstore_changes"));
  ASSERT_OK(rows);
  EXPECT_LT(*rows->getInt64(0, 0), 70);
}

TEST_F(PgEngineTest, ANewIndexIsBackFilledAndQueriesStayRightMeanwhile) {
  Client c = client();
  ASSERT_NE(c.engine, nullptr);
  std::vector<EncodedChange> changes;
  for (int i = 0; i < 30; ++i) {
    changes.push_back(insertOf(
        c.monsters.get(),
        monsterBytes({.name = absl::StrCat("b", i), .hp = static_cast<int16_t>((i * 13) % 100)})));
  }
  ASSERT_OK(commitOne(*c.engine, {c.monsters.get()}, std::move(changes)));
  // As an older program left it: no index on hp (field 2).
  ASSERT_OK(admin_->execute(absl::StrCat("ALTER TABLE ", schema_, ".fs", c.monsters->id,
                                         " DROP COLUMN \"i2\"; DELETE FROM ", schema_,
                                         ".flatstore_indexes WHERE id_path = '2'")));
  TableState newer(MonsterEntity::description());
  ASSERT_OK(c.engine->registerTable(newer));
  ASSERT_FALSE(newer.indexReady(0));

  QuerySpec spec;
  spec.where =
      cmp(flatstore::test::game::MonsterFields::hp.info(), CompareOp::kGe, Value::integer(50));
  spec.order = {{&flatstore::test::game::MonsterFields::hp.info(), true}};
  auto expect = [&](const char* when) {
    auto view = c.engine->snapshot();
    ASSERT_OK(view);
    auto all = (*view)->query(newer, QuerySpec{}, nullptr);
    ASSERT_OK(all);
    auto got = (*view)->query(newer, spec, nullptr);
    ASSERT_OK(got);
    std::vector<int64_t> ids;
    for (const RawRow& r : *got) ids.push_back(r.rowid);
    EXPECT_EQ(ids, bruteForce(*all, spec)) << when;
    EXPECT_FALSE(ids.empty()) << when;
  };
  expect("before the back-fill");
  int steps = 0;
  while (true) {
    auto more = c.engine->backfillStep(newer, 7);
    ASSERT_OK(more);
    if (!*more) break;
    ASSERT_LT(++steps, 100);
    if (steps == 2) expect("half way");
  }
  EXPECT_TRUE(newer.indexReady(0));
  auto unfilled = admin_->query(
      absl::StrCat("SELECT count(*) FROM ", schema_, ".fs", newer.id, " WHERE \"i2\" IS NULL"));
  ASSERT_OK(unfilled);
  EXPECT_EQ(*unfilled->getInt64(0, 0), 0);
  expect("after the back-fill");
}

TEST_F(PgEngineTest, AnUnrelatedTransactionDoesNotHoldTheFeedBack) {
  Client c = client();
  ASSERT_NE(c.engine, nullptr);
  // A transaction of some other application, with an id, open for as long as it likes.
  std::unique_ptr<PgConnection> other = connect();
  ASSERT_NE(other, nullptr);
  ASSERT_OK(other->execute("BEGIN"));
  auto other_id = other->query("SELECT pg_current_xact_id()::text::bigint");
  ASSERT_OK(other_id);

  auto stamp = commitObject(c, {c.monsters.get()}, c.monsters.get(), monsterBytes({.name = "x"}));
  ASSERT_OK(stamp);
  EXPECT_GT(stamp->commitSequence(), static_cast<uint64_t>(*other_id->getInt64(0, 0)));
  auto view = c.engine->snapshot();
  ASSERT_OK(view);
  auto changes = (*view)->changesSince(*c.monsters, Versionstamp());
  ASSERT_OK(changes);
  ASSERT_EQ(changes->changed.size(), 1u);
  EXPECT_EQ(changes->changed[0].versionstamp, *stamp);
  EXPECT_GE(changes->through, *stamp);
  ASSERT_OK(other->execute("ROLLBACK"));
}

// The frontier of one snapshot, read while three transactions that it saw running end
// before its lock read after it: an unrelated one that rolls back, an unrelated one that
// commits, and a writer of this database that commits. The reads before the snapshot
// and the rolled-back state pass over the first two; the writer holds the frontier. The
// lock read after the snapshot alone passes over only the rolled-back one.
TEST_F(PgEngineTest, TheFrontierPassesOverForeignTransactionsThatEndAfterTheSnapshot) {
  Client c = client();
  ASSERT_NE(c.engine, nullptr);
  auto xidOf = [](PgConnection& conn) -> int64_t {
    EXPECT_OK(conn.execute("BEGIN"));
    auto id = conn.query("SELECT pg_current_xact_id()::text::bigint");
    EXPECT_OK(id);
    return id.ok() ? *id->getInt64(0, 0) : 0;
  };
  std::unique_ptr<PgConnection> aborting = connect();
  std::unique_ptr<PgConnection> committing = connect();
  ASSERT_NE(aborting, nullptr);
  ASSERT_NE(committing, nullptr);
  const int64_t aborted_id = xidOf(*aborting);
  const int64_t committed_id = xidOf(*committing);
  auto writer = openSession(c, c.monsters.get(), monsterBytes({.name = "w"}));
  ASSERT_OK(writer);
  const uint64_t writer_id = (*writer)->versionstamp(0).commitSequence();
  ASSERT_LT(aborted_id, committed_id);
  ASSERT_LT(static_cast<uint64_t>(committed_id), writer_id);
  // A later transaction that ends: the snapshot lists the three as running (it lists
  // only ids below the newest ended one).
  ASSERT_OK(admin_->query("SELECT pg_current_xact_id()"));

  // The reader's snapshot is taken by a statement that then waits for a lock the test
  // holds; meanwhile the three transactions end.
  constexpr int64_t kGate = 4242;
  ASSERT_OK(admin_->query("SELECT pg_advisory_lock($1)", {PgParam::int64(kGate)}));
  auto reader = c.engine->acquire();
  ASSERT_OK(reader);
  PgConnection& r = **reader;
  const int32_t space = pgLockSpace(schema_);
  queueLocksBefore(r, space);
  r.queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  r.queue("SELECT pg_advisory_xact_lock_shared($1)", {PgParam::int64(kGate)});
  absl::StatusOr<uint64_t> both = absl::UnknownError("not read");
  std::vector<PgResult> queued;
  std::thread read([&] { both = frontierOf(r, space, &queued); });
  const absl::Time deadline = absl::Now() + kBoundedWait;
  while (!someoneWaitsForLock(kGate) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_OK(aborting->execute("ROLLBACK"));
  EXPECT_OK(committing->execute("COMMIT"));
  EXPECT_OK((*writer)->commit());
  EXPECT_OK(admin_->query("SELECT pg_advisory_unlock($1)", {PgParam::int64(kGate)}));
  read.join();
  ASSERT_OK(both);
  EXPECT_EQ(queued.size(), 2u);  // the BEGIN's and the gate's
  EXPECT_EQ(*both, writer_id);
  // In the same snapshot, with the lock read after it only.
  auto after = frontierOf(r, space);
  ASSERT_OK(after);
  EXPECT_EQ(*after, static_cast<uint64_t>(committed_id));
  giveBack(c.engine.get(), std::move(*reader));
}

// Unrelated write load on the server while a client commits and at once asks for its
// latest versionstamp and for its changes: another application's short transactions
// (inserts, which wait for their flush, and bare transaction ids, which end at once) and
// a flatstore client of another schema (another lock space), each on its own connection.
// Many of them end between a reader's snapshot and its lock reads. Right after each
// acknowledged commit both answers reach it, and no change is ever skipped.
TEST_F(PgEngineTest, UnrelatedLoadDoesNotHoldTheFrontierBelowAnAcknowledgedCommit) {
  Client c = client();
  ASSERT_NE(c.engine, nullptr);
  const std::string other_schema = absl::StrCat(schema_, "_other");
  const std::string load_schema = absl::StrCat(schema_, "_load");
  ASSERT_OK(admin_->execute(
      absl::StrCat("DROP SCHEMA IF EXISTS ", other_schema, " CASCADE; CREATE SCHEMA ", other_schema,
                   "; DROP SCHEMA IF EXISTS ", load_schema, " CASCADE; CREATE SCHEMA ", load_schema,
                   "; CREATE TABLE ", load_schema, ".load(v bigint)")));
  std::string other_uri = serverUri();
  other_uri = absl::StrCat(other_uri, other_uri.find('?') == std::string::npos ? "?" : "&",
                           "options=-csearch_path%3D", other_schema);
  auto other = PgEngine::open({.uri = other_uri});
  ASSERT_OK(other);
  TableState other_events(EventEntity::description());
  ASSERT_OK((*other)->registerTable(other_events));

  std::atomic<bool> stop{false};
  std::atomic<int> load_failures{0};
  std::atomic<int64_t> load_done[3] = {0, 0, 0};
  std::vector<std::thread> load;
  for (std::string sql : {absl::StrCat("INSERT INTO ", load_schema, ".load VALUES (1)"),
                          std::string("SELECT pg_current_xact_id()")}) {
    const size_t k = load.size();
    load.emplace_back([&, k, sql] {
      auto conn = PgConnection::connect(serverUri());
      if (!conn.ok()) {
        load_failures++;
        return;
      }
      while (!stop.load()) {
        if (!(*conn)->execute(sql).ok()) load_failures++;
        load_done[k]++;
      }
    });
  }
  load.emplace_back([&] {
    for (int i = 0; !stop.load(); ++i) {
      std::vector<EncodedChange> e;
      e.push_back(insertOf(&other_events, eventBytes("load", i)));
      if (!commitOne(**other, {&other_events}, std::move(e)).ok()) load_failures++;
      load_done[2]++;
    }
  });

  // Commits one Monster; returns its rowid and versionstamp.
  auto commit = [&](int i) -> absl::StatusOr<std::pair<int64_t, Versionstamp>> {
    std::vector<EncodedChange> changes;
    changes.push_back(insertOf(c.monsters.get(), monsterBytes({.name = absl::StrCat("r", i)})));
    FLATSTORE_ASSIGN_OR_RETURN(
        std::unique_ptr<WriteSession> s,
        c.engine->beginWrite(std::vector<const TableState*>{c.monsters.get()}));
    FLATSTORE_RETURN_IF_ERROR(s->apply(0, changes));
    FLATSTORE_RETURN_IF_ERROR(s->commit());
    return std::pair(changes[0].rowid, s->versionstamp(0));
  };
  std::map<int64_t, Versionstamp> committed;  // by rowid
  std::map<int64_t, Versionstamp> reported;
  Versionstamp cursor;
  // changesSince from the cursor on a new snapshot; moves the cursor to its `through`.
  auto poll = [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<ReadView> v, c.engine->snapshot());
    FLATSTORE_ASSIGN_OR_RETURN(LogChanges ch, v->changesSince(*c.monsters, cursor));
    for (const RawRow& row : ch.changed) {
      EXPECT_LE(row.versionstamp, ch.through);
      reported[row.rowid] = row.versionstamp;
    }
    cursor = ch.through;
    return absl::OkStatus();
  };
  constexpr int kRounds = 200;
  int latest_behind = 0;
  int through_behind = 0;
  for (int i = 0; i < kRounds; ++i) {
    auto done = commit(i);
    ASSERT_OK(done);
    committed[done->first] = done->second;
    auto view = c.engine->read();
    ASSERT_OK(view);
    auto latest = (*view)->latestVersionstamp();
    ASSERT_OK(latest);
    // Nothing else writes this database: never above the commit.
    ASSERT_LE(*latest, done->second);
    if (*latest < done->second) latest_behind++;
    ASSERT_OK(poll());
    if (cursor < done->second) through_behind++;
  }
  stop = true;
  for (std::thread& t : load) t.join();
  std::cout << "[ frontier ] " << kRounds << " commits under load (" << load_done[0] << " inserts, "
            << load_done[1] << " bare ids, " << load_done[2]
            << " commits of another schema): latestVersionstamp behind " << latest_behind
            << ", changesSince through behind " << through_behind << "\n";
  EXPECT_EQ(load_failures.load(), 0);
  EXPECT_GT(load_done[0].load(), 0);
  EXPECT_GT(load_done[1].load(), 0);
  EXPECT_GT(load_done[2].load(), 0);
  // Without the load, the next poll reaches the last commit; every commit was reported
  // once its stamp was passed.
  ASSERT_OK(poll());
  EXPECT_GE(cursor, committed.rbegin()->second);
  EXPECT_EQ(reported, committed);
  EXPECT_EQ(latest_behind, 0);
  EXPECT_EQ(through_behind, 0);
  EXPECT_OK(admin_->execute(absl::StrCat("DROP SCHEMA ", other_schema, " CASCADE; DROP SCHEMA ",
                                         load_schema, " CASCADE")));
}

TEST_F(PgEngineTest, ALostConnectionFailsTheSessionAndLeavesNothingWritten) {
  Client c = client();
  ASSERT_NE(c.engine, nullptr);
  auto session = openSession(c, c.monsters.get(), monsterBytes({.name = "lost"}));
  ASSERT_OK(session);
  // The server ends the session's backend (found by the table lock it holds).
  auto ended = admin_->query(
      "SELECT pg_terminate_backend(pid, 60000) FROM pg_locks WHERE locktype = 'advisory' AND "
      "granted AND classid = $1::bigint::oid AND objsubid = 2",
      {PgParam::int64(pgLockSpace(schema_))});
  ASSERT_OK(ended);
  ASSERT_EQ(ended->rows(), 1);
  absl::Status commit = (*session)->commit();
  EXPECT_EQ(commit.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(text(commit), HasSubstr("nothing of it was written"));
  session->reset();
  // Nothing of it is there, and the engine goes on with new connections.
  ASSERT_OK(commitObject(c, {c.monsters.get()}, c.monsters.get(), monsterBytes({.name = "next"})));
  auto view = c.engine->snapshot();
  ASSERT_OK(view);
  auto lost = (*view)->rowByKey(*c.monsters, {Value::text("lost"), Value::integer(0)});
  ASSERT_OK(lost);
  EXPECT_FALSE(lost->has_value());
  auto n = (*view)->count(*c.monsters, QuerySpec{}, nullptr);
  ASSERT_OK(n);
  EXPECT_EQ(*n, 1);
}

TEST_F(PgEngineTest, NotifyWakesAListenerOfAnotherClient) {
  std::vector<Client> cs = clients(2);
  ASSERT_EQ(cs.size(), 2u);
  Client& a = cs[0];
  Client& b = cs[1];
  auto feed = b.engine->openCommitFeed();
  ASSERT_OK(feed);
  // Its own commits are not foreign.
  std::vector<EncodedChange> own;
  own.push_back(insertOf(b.events.get(), eventBytes("own", 1)));
  ASSERT_OK(commitOne(*b.engine, {b.events.get()}, std::move(own)));

  std::vector<EncodedChange> e;
  e.push_back(insertOf(a.events.get(), eventBytes("other", 2)));
  auto stamp = commitOne(*a.engine, {a.events.get()}, std::move(e));
  ASSERT_OK(stamp);
  std::vector<ForeignCommit> commits;
  const absl::Time deadline = absl::Now() + kBoundedWait;
  while (commits.empty() && absl::Now() < deadline) {
    auto hint = (*feed)->wait(deadline - absl::Now());
    ASSERT_OK(hint);
    auto read = (*feed)->read();
    ASSERT_OK(read);
    commits = std::move(*read);
  }
  ASSERT_EQ(commits.size(), 1u);
  EXPECT_EQ(commits[0].versionstamp.commitSequence(), stamp->commitSequence());
  EXPECT_EQ(commits[0].origin, a.engine->origin());
  ASSERT_EQ(commits[0].records.size(), 1u);
  EXPECT_EQ(commits[0].records[0].table_id, a.events->id);

  // interrupt() ends a wait early.
  std::thread interrupter([&] { (*feed)->interrupt(); });
  auto woken = (*feed)->wait(kBoundedWait);
  interrupter.join();
  ASSERT_OK(woken);
  EXPECT_FALSE(*woken);
}

TEST_F(PgEngineTest, CompiledQueriesAgreeWithABruteForceFilter) {
  Client c = client();
  ASSERT_NE(c.engine, nullptr);
  const float kNan = std::numeric_limits<float>::quiet_NaN();
  const float kInf = std::numeric_limits<float>::infinity();
  const std::vector<std::string> names = {
      "a", "B", "ab", std::string("n\0ul", 4), "\xc3\xa9lf", "z", "m", "\x7f", "0", ""};
  const std::vector<float> xs = {-1.5f, -0.0f, 0.0f, 0.5f, 2.0f, kInf, -kInf, kNan, 1e30f};
  std::vector<EncodedChange> changes;
  for (int i = 0; i < 90; ++i) {
    MonsterSpec m{.name = names[static_cast<size_t>(i) % names.size()],
                  .realm = i / 10,
                  .hp = static_cast<int16_t>((i * 37) % 200 - 20),
                  .mana = static_cast<int16_t>(i % 7),
                  .color = static_cast<Color>(i % 3),
                  .x = xs[static_cast<size_t>(i) % xs.size()]};
    if (i % 4 != 0) m.email = absl::StrCat(names[static_cast<size_t>(i) % 5], "#", i);
    changes.push_back(insertOf(c.monsters.get(), monsterBytes(m)));
  }
  ASSERT_OK(commitOne(*c.engine, {c.monsters.get()}, std::move(changes)));
  auto view = c.engine->snapshot();
  ASSERT_OK(view);
  auto all = (*view)->query(*c.monsters, QuerySpec{}, nullptr);
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 90u);

  using F = flatstore::test::game::MonsterFields;
  const FieldInfo& name = F::name.info();    // primary key, text
  const FieldInfo& realm = F::realm.info();  // primary key, integer
  const FieldInfo& hp = F::hp.info();        // index, integer
  const FieldInfo& color = F::color.info();  // index, integer
  const FieldInfo& email = F::email.info();  // unique index, text
  const FieldInfo& x = F::pos.x.info();      // index, real
  const FieldInfo& mana = F::mana.info();    // not indexed: in memory
  using K = ExprNode::Kind;
  std::vector<std::shared_ptr<const ExprNode>> predicates = {
      nullptr,
      cmp(hp, CompareOp::kGt, Value::integer(50)),
      cmp(hp, CompareOp::kLe, Value::integer(-3)),
      cmp(realm, CompareOp::kNe, Value::integer(4)),
      cmp(name, CompareOp::kLt, Value::text("b")),
      cmp(name, CompareOp::kEq, Value::text(std::string("n\0ul", 4))),
      cmp(name, CompareOp::kGe, Value::text("\xc3")),
      cmp(x, CompareOp::kLt, Value::real(0.5)),
      cmp(x, CompareOp::kEq, Value::real(0.0)),
      cmp(x, CompareOp::kGe, Value::integer(2)),
      cmp(x, CompareOp::kNe, Value::real(std::nan(""))),  // NaN operand: unknown
      cmp(x, CompareOp::kGt, Value::real(-std::numeric_limits<double>::infinity())),
      isNull(x, false),  // NaN fields are null
      isNull(email, false),
      isNull(email, true),
      cmp(email, CompareOp::kLt, Value::text("m")),
      in(color, {Value::integer(0), Value::integer(2)}, false),
      in(color, {Value::integer(1)}, true),
      in(hp, {}, false),
      in(hp, {}, true),
      in(x, {Value::real(0.5), Value()}, false),
      in(x, {Value::real(0.5), Value()}, true),
      in(name, {Value::text("a"), Value::integer(3)}, false),
      in(name, {Value::integer(3)}, true),
      // Numbers against texts: every number sorts before every text.
      cmp(name, CompareOp::kGt, Value::integer(5)),
      cmp(name, CompareOp::kLt, Value::integer(5)),
      cmp(hp, CompareOp::kLt, Value::text("a")),
      cmp(email, CompareOp::kEq, Value::integer(1)),
      negate(cmp(hp, CompareOp::kLt, Value::integer(30))),
      negate(cmp(email, CompareOp::kGt, Value::text("b"))),
      both(K::kOr, cmp(hp, CompareOp::kLt, Value::integer(0)),
           cmp(color, CompareOp::kEq, Value::integer(1))),
      both(K::kAnd, cmp(mana, CompareOp::kGt, Value::integer(3)),
           cmp(hp, CompareOp::kGt, Value::integer(10))),
      both(K::kOr, cmp(mana, CompareOp::kEq, Value::integer(2)), isNull(email, false)),
  };
  std::vector<std::vector<std::pair<const FieldInfo*, bool>>> orders = {
      {},
      {{&hp, true}},
      {{&x, false}},
      {{&x, true}},
      {{&email, false}},
      {{&name, false}, {&realm, true}},
      {{&mana, false}},
      {{&color, false}, {&hp, true}}};
  int checked = 0;
  for (size_t p = 0; p < predicates.size(); ++p) {
    for (size_t o = 0; o < orders.size(); ++o) {
      for (auto [limit, offset] :
           {std::pair<std::optional<int64_t>, int64_t>{std::nullopt, 0}, {7, 0}, {5, 3}}) {
        QuerySpec spec;
        spec.where = predicates[p];
        spec.order = orders[o];
        spec.limit = limit;
        spec.offset = offset;
        auto got = (*view)->query(*c.monsters, spec, nullptr);
        ASSERT_OK(got);
        std::vector<int64_t> ids;
        for (const RawRow& r : *got) ids.push_back(r.rowid);
        std::vector<int64_t> want = bruteForce(*all, spec);
        EXPECT_EQ(ids, want) << "predicate " << p << " order " << o;
        auto n = (*view)->count(*c.monsters, spec, nullptr);
        ASSERT_OK(n);
        EXPECT_EQ(*n, static_cast<int64_t>(want.size())) << "predicate " << p << " order " << o;
        checked += 1;
      }
    }
  }
  EXPECT_GT(checked, 500);
}

}  // namespace
}  // namespace flatstore::internal
