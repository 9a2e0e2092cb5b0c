// The read path's reuse of work between reads: query statements kept per connection
// (bounded), a reader connection going back to the thread that used it, and reads that
// end their implicit read transaction however they stop.
#include <sqlite3.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "game_flatstore.h"
#include "gtest/gtest.h"
#include "runtime/catalog.h"
#include "runtime/reader_pool.h"
#include "runtime/sqlite.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"
#include "tests/support/workspace_fixture.h"

namespace flatstore::internal {
namespace {

using ::flatstore::testing::TempDir;

// The statements prepared on `c` and not finalized.
int liveStatements(const Connection& c) {
  int n = 0;
  for (sqlite3_stmt* s = sqlite3_next_stmt(c.db(), nullptr); s != nullptr;
       s = sqlite3_next_stmt(c.db(), s)) {
    n += 1;
  }
  return n;
}

class ConnectionQueryCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Connection::open(dir_.file("cache.db"), /*read_only=*/false);
    ASSERT_OK(c);
    c_ = std::move(*c);
  }
  // A query text of its own for each `i`.
  static std::string query(size_t i) { return absl::StrCat("SELECT ", i, " + ?"); }

  TempDir dir_;
  std::unique_ptr<Connection> c_;
};

TEST_F(ConnectionQueryCacheTest, SameTextIsPreparedOnce) {
  auto first = c_->cachedQuery(query(1));
  ASSERT_OK(first);
  sqlite3_stmt* prepared = (*first)->get();
  auto again = c_->cachedQuery(query(1));
  ASSERT_OK(again);
  EXPECT_EQ((*again)->get(), prepared);
  EXPECT_EQ(liveStatements(*c_), 1);
}

TEST_F(ConnectionQueryCacheTest, KeepsTheMostRecentlyUsedWithinItsBound) {
  constexpr size_t kBound = Connection::kQueryStatements;
  for (size_t i = 0; i < kBound; ++i) ASSERT_OK(c_->cachedQuery(query(i)));
  EXPECT_EQ(liveStatements(*c_), static_cast<int>(kBound));
  // Query 0 used again: query 1 is now the least recently used, and goes first.
  auto zero = c_->cachedQuery(query(0));
  ASSERT_OK(zero);
  sqlite3_stmt* zero_prepared = (*zero)->get();
  auto two = c_->cachedQuery(query(2));
  ASSERT_OK(two);
  sqlite3_stmt* two_prepared = (*two)->get();
  ASSERT_OK(c_->cachedQuery(query(kBound)));
  EXPECT_EQ(liveStatements(*c_), static_cast<int>(kBound));
  auto zero_again = c_->cachedQuery(query(0));
  ASSERT_OK(zero_again);
  EXPECT_EQ((*zero_again)->get(), zero_prepared);
  auto two_again = c_->cachedQuery(query(2));
  ASSERT_OK(two_again);
  EXPECT_EQ((*two_again)->get(), two_prepared);
  // Query 1 was evicted: preparing it again evicts the next least recently used.
  ASSERT_OK(c_->cachedQuery(query(1)));
  EXPECT_EQ(liveStatements(*c_), static_cast<int>(kBound));
}

TEST_F(ConnectionQueryCacheTest, AFailedPrepareKeepsNothing) {
  auto bad = c_->cachedQuery("SELECT * FROM missing_table", "missing_table");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("no such table"), std::string::npos) << bad.status();
  EXPECT_EQ(liveStatements(*c_), 0);
}

TEST(ReaderPoolAffinityTest, AThreadGetsTheConnectionItUsedLastWhenFree) {
  TempDir dir;
  std::string path = dir.file("pool.db");
  auto w = Connection::open(path, /*read_only=*/false);
  ASSERT_OK(w);
  ASSERT_OK(initializeDatabase(**w, /*synchronous_full=*/false));
  auto pool = ReaderPool::open(path, 2, /*metrics=*/nullptr);
  ASSERT_OK(pool);

  auto inThread = [](auto fn) {
    std::thread t(fn);
    t.join();
  };
  // This thread uses a connection and gives it back.
  const Connection* mine = &*(*pool)->checkout();
  // Another thread takes it (the most recently used) and the other one, and gives the
  // other one back last: that one is now the most recently used.
  const Connection* other = nullptr;
  inThread([&] {
    std::optional<ReaderPool::Lease> a((*pool)->checkout());
    ReaderPool::Lease b = (*pool)->checkout();
    EXPECT_EQ(&**a, mine);
    other = &*b;
    a.reset();
  });
  ASSERT_NE(other, mine);
  // A thread that used no connection yet gets the most recently used (and gives it
  // back: it is still the most recently used); this thread gets its own back.
  const Connection* fresh = nullptr;
  inThread([&] { fresh = &*(*pool)->checkout(); });
  EXPECT_EQ(fresh, other);
  EXPECT_EQ(&*(*pool)->checkout(), mine);
}

}  // namespace
}  // namespace flatstore::internal

namespace flatstore::test::game {
namespace {

using ::flatstore::testing::WorkspaceFixture;
using F = MonsterFields;

// One reader connection, so that every read below runs on the same one.
class OneReaderTest : public WorkspaceFixture {
 protected:
  OneReaderTest() : WorkspaceFixture("one_reader.db", WorkspaceOptions{.reader_connections = 1}) {}

  absl::Status create(std::string name, int16_t hp, int16_t mana) {
    return ws_
        ->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
          auto r = MonsterChangeRequest::creation();
          r.setName(name).setRealm(1).setHp(hp).setMana(mana);
          return txn.submit(r).status();
        })
        .status();
  }
};

TEST_F(OneReaderTest, AQueryThatStopsEarlyEndsItsReadTransaction) {
  for (int i = 0; i < 10; ++i) ASSERT_OK(create(absl::StrCat("m", i), 10 + i, 7));
  // Ordered in SQL by the indexed hp, filtered in memory on mana: the statement stops
  // stepping once the first match is found, with rows left.
  auto first = ws_->fetch<Monster>().where(F::mana == 7).orderBy(F::hp.ascending()).limit(1).all();
  ASSERT_OK(first);
  ASSERT_EQ(first->size(), 1u);
  EXPECT_EQ((*first)[0]->name(), "m0");
  // A commit after it is seen at once by the next reads on the same connection: the
  // stopped statement holds no snapshot.
  ASSERT_OK(create("new", 1, 7));
  auto got = ws_->get<Monster>("new", 1);
  ASSERT_OK(got);
  EXPECT_NE(*got, nullptr);
  auto again = ws_->fetch<Monster>().where(F::mana == 7).orderBy(F::hp.ascending()).limit(1).all();
  ASSERT_OK(again);
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0]->name(), "new");
  EXPECT_EQ(*ws_->fetch<Monster>().where(F::mana == 7).count(), 11);
}

// Every read path verifies what it reads once, the in-memory filter included, and the
// second run of a query (on its kept statement) as the first.
TEST_F(OneReaderTest, ACorruptObjectIsDataLossOnEveryReadPath) {
  ASSERT_OK(create("good", 10, 7));
  ASSERT_OK(create("bad", 20, 8));
  {
    sqlite3* db;
    ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ASSERT_EQ(sqlite3_exec(db,
                           "UPDATE \"flatstore.test.game.Monster\" SET p = x'0badf00d0badf00d' "
                           "WHERE k0 = 'bad'",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  for (int run = 0; run < 2; ++run) {
    std::vector<absl::Status> reads = {
        ws_->fetch<Monster>().all().status(),
        ws_->fetch<Monster>().where(F::hp >= 15).all().status(),
        // Filtered in memory: the corrupt object fails verification before the filter
        // could drop it.
        ws_->fetch<Monster>().where(F::mana == 7).all().status(),
        ws_->fetch<Monster>()
            .where(F::mana == 8)
            .orderBy(F::hp.ascending())
            .limit(1)
            .all()
            .status(),
        ws_->fetch<Monster>().where(F::mana == 7).count().status(),
        ws_->get<Monster>("bad", 1).status(),
    };
    for (const absl::Status& s : reads) {
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
      EXPECT_NE(s.message().find("flatstore.test.game.Monster"), std::string::npos) << s;
    }
  }
  // The good object is still read.
  auto good = ws_->get<Monster>("good", 1);
  ASSERT_OK(good);
  ASSERT_NE(*good, nullptr);
  EXPECT_EQ((*good)->mana(), 7);
}

TEST_F(OneReaderTest, PagesOfOneQueryShapeAreEachExact) {
  for (int i = 0; i < 9; ++i) ASSERT_OK(create(absl::StrCat("m", i), 100 - i, 1));
  // The same shape with other limits and offsets (bound as parameters, one statement).
  for (int64_t offset = 0; offset < 10; ++offset) {
    for (int64_t limit = 0; limit < 4; ++limit) {
      auto page =
          ws_->fetch<Monster>().orderBy(F::hp.ascending()).limit(limit).offset(offset).all();
      ASSERT_OK(page);
      int64_t expected = std::max<int64_t>(0, std::min<int64_t>(limit, 9 - offset));
      ASSERT_EQ(static_cast<int64_t>(page->size()), expected) << limit << " " << offset;
      for (int64_t i = 0; i < expected; ++i) {
        EXPECT_EQ((*page)[static_cast<size_t>(i)]->hp(), 92 + offset + i);
      }
      EXPECT_EQ(
          *ws_->fetch<Monster>().orderBy(F::hp.ascending()).limit(limit).offset(offset).count(),
          expected);
    }
  }
}

// Queries of one shape share their SQL (it is planned once and its values bound): each
// of many values, nested in AND, OR, NOT and IN lists of several lengths, with terms
// SQLite evaluates (hp, indexed) and terms filtered in memory (mana) in either order,
// gives what a filter over every object gives, outside a transaction and inside one
// with pending changes.
TEST_F(OneReaderTest, QueriesOfOneShapeWithOtherValuesAreEachExact) {
  for (int i = 0; i < 40; ++i) ASSERT_OK(create(absl::StrCat("m", i), 10 + i % 20, i % 7));
  using Check = std::function<bool(const MonsterEntity&)>;
  struct Shape {
    std::function<Predicate<Monster>(int)> where;
    std::function<Check(int)> check;
  };
  std::vector<int16_t> list;
  const std::vector<Shape> shapes = {
      {[](int v) { return F::hp >= v && F::hp < v + 5; },
       [](int v) -> Check {
         return [v](const MonsterEntity& m) { return m.hp() >= v && m.hp() < v + 5; };
       }},
      {[](int v) { return F::mana == v % 7 && F::hp > v; },
       [](int v) -> Check {
         return [v](const MonsterEntity& m) { return m.mana() == v % 7 && m.hp() > v; };
       }},
      {[](int v) { return F::hp > v && F::mana == v % 7; },
       [](int v) -> Check {
         return [v](const MonsterEntity& m) { return m.hp() > v && m.mana() == v % 7; };
       }},
      {[](int v) { return (F::hp == v || !(F::hp <= v + 3)) && F::mana != 2; },
       [](int v) -> Check {
         return [v](const MonsterEntity& m) {
           return (m.hp() == v || !(m.hp() <= v + 3)) && m.mana() != 2;
         };
       }},
      {[&list](int v) {
         list.clear();
         for (int k = 0; k < v % 4; ++k) list.push_back(static_cast<int16_t>(v + 2 * k));
         return F::hp.in(list) || F::hp.notIn({v, v + 1, v + 2});
       },
       [](int v) -> Check {
         return [v](const MonsterEntity& m) {
           bool in = false;
           for (int k = 0; k < v % 4; ++k) in = in || m.hp() == v + 2 * k;
           return in || (m.hp() != v && m.hp() != v + 1 && m.hp() != v + 2);
         };
       }},
  };
  auto all = ws_->fetch<Monster>().all();
  ASSERT_OK(all);
  auto expected = [&](const Check& check) {
    std::vector<std::string> names;
    for (const auto& m : *all) {
      if (check(*m)) names.push_back(std::string(m->name()));
    }
    return names;
  };
  auto names = [](const auto& rows) {
    std::vector<std::string> out;
    for (const auto& m : rows) out.push_back(std::string(m->name()));
    return out;
  };
  for (size_t s = 0; s < shapes.size(); ++s) {
    for (int v = 5; v < 35; ++v) {
      std::vector<std::string> want = expected(shapes[s].check(v));
      auto got = ws_->fetch<Monster>().where(shapes[s].where(v)).all();
      ASSERT_OK(got);
      EXPECT_EQ(names(*got), want) << "shape " << s << " value " << v;
      EXPECT_EQ(*ws_->fetch<Monster>().where(shapes[s].where(v)).count(),
                static_cast<int64_t>(want.size()))
          << "shape " << s << " value " << v;
    }
  }
  // Inside a transaction that has changed an object: every hp of m0 moves to 33.
  auto done = ws_->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
    auto m0 = txn.get<Monster>("m0", 1);
    if (!m0.ok()) return m0.status();
    auto r = MonsterChangeRequest::changeOf(**m0);
    r.setHp(33);
    FLATSTORE_RETURN_IF_ERROR(txn.submit(r).status());
    for (int v = 28; v < 34; ++v) {
      auto got = txn.fetch<Monster>().where(shapes[0].where(v)).all();
      if (!got.ok()) return got.status();
      std::vector<std::string> want;
      for (const auto& m : *all) {
        int hp = m->name() == "m0" ? 33 : m->hp();
        if (hp >= v && hp < v + 5) want.push_back(std::string(m->name()));
      }
      EXPECT_EQ(names(*got), want) << "in the transaction, value " << v;
    }
    return absl::OkStatus();
  });
  ASSERT_OK(done);
}

}  // namespace
}  // namespace flatstore::test::game
