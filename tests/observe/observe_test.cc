// Subscriptions to fetched results and to objects: deliveries, changesets, staleness,
// object lifecycles and cancellation.
#include <sqlite3.h>

#include <atomic>
#include <string>
#include <vector>

#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_macros.h"
#include "tests/support/workspace_fixture.h"

namespace flatstore::test::game {
namespace {

using ::flatstore::testing::WorkspaceFixture;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using F = MonsterFields;

absl::Status put(Workspace& ws, std::string name, int16_t hp) {
  return ws
      .performChangesAndWait<Monster>([&](TransactionContext& txn) {
        auto r = MonsterChangeRequest::upsert();
        r.setName(name).setRealm(0).setHp(hp);
        return txn.submit(r).status();
      })
      .status();
}

absl::Status remove(Workspace& ws, std::string name) {
  return ws
      .performChangesAndWait<Monster>([&](TransactionContext& txn) {
        return txn.submit(MonsterChangeRequest::deletion(name, 0)).status();
      })
      .status();
}

std::vector<std::string> names(const FetchedResult<Monster>& r) {
  std::vector<std::string> out;
  for (const auto& m : r) out.emplace_back(m->name());
  return out;
}

class ObserveTest : public WorkspaceFixture {
 protected:
  ObserveTest() : WorkspaceFixture("observe.db") {}
};

TEST_F(ObserveTest, ResultFollowsCommitsWithChangesets) {
  ASSERT_OK(put(*ws_, "a", 10));
  ASSERT_OK(put(*ws_, "b", 50));
  auto result = ws_->fetch<Monster>().where(F::hp > 20).orderBy(F::hp.ascending()).all();
  ASSERT_OK(result);
  std::vector<FetchedResult<Monster>> seen;
  std::vector<Changeset> changes;
  auto token = ws_->subscribe(
      *result,
      [&](const FetchedResult<Monster>& latest, const Changeset& cs) {
        seen.push_back(latest);
        changes.push_back(cs);
      },
      &inlineExecutor());
  ASSERT_OK(token);

  ASSERT_OK(put(*ws_, "c", 30));  // enters before b
  ws_->awaitObservers();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_THAT(names(seen.back()), ElementsAre("c", "b"));
  EXPECT_THAT(changes.back().inserted, ElementsAre(0));
  EXPECT_TRUE(changes.back().deleted.empty());

  ASSERT_OK(put(*ws_, "b", 55));  // updated in place
  ws_->awaitObservers();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_THAT(changes.back().updated, ElementsAre(1));
  EXPECT_EQ(seen.back()[1]->hp(), 55);
  // The unchanged object is shared with the previous result.
  EXPECT_EQ(seen[0][0].get(), seen[1][0].get());

  ASSERT_OK(put(*ws_, "a", 99));  // enters at the end
  ASSERT_OK(put(*ws_, "c", 5));   // leaves
  ws_->awaitObservers();
  EXPECT_THAT(names(seen.back()), ElementsAre("b", "a"));
  EXPECT_EQ(changes.back().commit_sequence, ws_->lastCommitSequence());

  ASSERT_OK(remove(*ws_, "b"));
  ws_->awaitObservers();
  EXPECT_THAT(names(seen.back()), ElementsAre("a"));

  token->cancel();
  size_t deliveries = seen.size();
  ASSERT_OK(put(*ws_, "d", 70));
  ws_->awaitObservers();
  EXPECT_EQ(seen.size(), deliveries);
}

TEST_F(ObserveTest, LimitedResultRequeriesWhenItLosesMembers) {
  for (int i = 0; i < 10; ++i)
    ASSERT_OK(put(*ws_, "m" + std::to_string(i), static_cast<int16_t>(i * 10)));
  auto top = ws_->fetch<Monster>().orderBy(F::hp.descending()).limit(3).all();
  ASSERT_OK(top);
  FetchedResult<Monster> last = *top;
  auto token = ws_->subscribe(
      *top, [&](const FetchedResult<Monster>& latest, const Changeset&) { last = latest; },
      &inlineExecutor());
  ASSERT_OK(token);
  EXPECT_THAT(names(last), ElementsAre("m9", "m8", "m7"));
  ASSERT_OK(remove(*ws_, "m8"));
  ws_->awaitObservers();
  EXPECT_THAT(names(last), ElementsAre("m9", "m7", "m6"));
  ASSERT_OK(put(*ws_, "m1", 95));
  ws_->awaitObservers();
  EXPECT_THAT(names(last), ElementsAre("m1", "m9", "m7"));
  ASSERT_OK(put(*ws_, "m9", 0));  // drops out of the window
  ws_->awaitObservers();
  EXPECT_THAT(names(last), ElementsAre("m1", "m7", "m6"));
}

TEST_F(ObserveTest, WindowRefillSeesCommitsOfOtherProcessesNotYetObserved) {
  // A window that loses members is refilled with just the matches after those it
  // holds, which is right only if it reflects every commit so far. Here another
  // workspace on the file (another process, as far as the change log tells) deletes a
  // member that this workspace's watcher has not reported yet.
  ws_.reset();
  WorkspaceOptions slow;
  slow.watch_interval = absl::Hours(1);
  auto here = Workspace::open(dir_.file("observe.db"), slow);
  ASSERT_OK(here);
  auto there = Workspace::open(dir_.file("observe.db"));
  ASSERT_OK(there);
  for (int i = 0; i < 10; ++i)
    ASSERT_OK(put(**here, "m" + std::to_string(i), static_cast<int16_t>(i * 10)));
  auto top = (*here)->fetch<Monster>().orderBy(F::hp.descending()).limit(3).all();
  ASSERT_OK(top);
  FetchedResult<Monster> last = *top;
  auto token = (*here)->subscribe(
      *top, [&](const FetchedResult<Monster>& latest, const Changeset&) { last = latest; },
      &inlineExecutor());
  ASSERT_OK(token);
  EXPECT_THAT(names(last), ElementsAre("m9", "m8", "m7"));
  ASSERT_OK(remove(**there, "m8"));
  ASSERT_OK(put(**here, "m9", 0));  // leaves the window, which must be refilled
  (*here)->awaitObservers();
  EXPECT_THAT(names(last), ElementsAre("m7", "m6", "m5"));
}

TEST_F(ObserveTest, StaleResultIsCaughtUpAtOnce) {
  ASSERT_OK(put(*ws_, "a", 10));
  auto old = ws_->fetch<Monster>().all();
  ASSERT_OK(old);
  ASSERT_OK(put(*ws_, "b", 20));
  FetchedResult<Monster> last;
  int calls = 0;
  auto token = ws_->subscribe(
      *old,
      [&](const FetchedResult<Monster>& latest, const Changeset& cs) {
        last = latest;
        calls += 1;
        EXPECT_THAT(cs.inserted, ElementsAre(1));
      },
      &inlineExecutor());
  ASSERT_OK(token);
  ws_->awaitObservers();
  EXPECT_EQ(calls, 1);
  EXPECT_THAT(names(last), ElementsAre("a", "b"));
}

TEST_F(ObserveTest, ObjectSubscriptionAcrossUpdateDeleteAndRecreation) {
  ASSERT_OK(put(*ws_, "a", 10));
  auto a = ws_->get<Monster>("a", 0);
  ASSERT_OK(a);
  std::vector<std::shared_ptr<const MonsterEntity>> versions;
  auto token = ws_->subscribe(
      *a, [&](std::shared_ptr<const MonsterEntity> v) { versions.push_back(v); },
      &inlineExecutor());
  ASSERT_OK(token);
  ASSERT_OK(put(*ws_, "b", 1));  // another object: no delivery
  ASSERT_OK(put(*ws_, "a", 11));
  ws_->awaitObservers();
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_EQ(versions[0]->hp(), 11);
  ASSERT_OK(remove(*ws_, "a"));
  ws_->awaitObservers();
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[1], nullptr);
  EXPECT_FALSE(token->active());
  ASSERT_OK(put(*ws_, "a", 12));  // a new object with the same key: the ended
  ws_->awaitObservers();          // subscription stays ended
  EXPECT_EQ(versions.size(), 2u);
}

TEST_F(ObserveTest, DefaultExecutorAndWorkspaceDestructionWithLiveSubscriptions) {
  ASSERT_OK(put(*ws_, "a", 10));
  auto all = ws_->fetch<Monster>().all();
  ASSERT_OK(all);
  std::atomic<int> calls{0};
  auto token = ws_->subscribe(
      *all, [&](const FetchedResult<Monster>&, const Changeset&) { calls.fetch_add(1); });
  ASSERT_OK(token);
  for (int i = 0; i < 20; ++i) ASSERT_OK(put(*ws_, "a", static_cast<int16_t>(i)));
  ws_.reset();  // the token outlives the workspace
  int after = calls.load();
  EXPECT_GE(after, 1);
  token->cancel();
  EXPECT_EQ(calls.load(), after);
}

// A subscription whose refresh fails (a damaged object: DataLoss) must not go on
// with its last result and apply later commits on top of it: that delivered a result no
// fetch would return. It ends with the error instead, which its token reports.
TEST_F(ObserveTest, FailedRefreshEndsTheSubscriptionWithItsError) {
  auto stale = ws_->fetch<Monster>().all();  // empty, and stale after the puts below
  ASSERT_OK(stale);
  for (int i = 0; i < 5; ++i) ASSERT_OK(put(*ws_, "m" + std::to_string(i), 10));
  {
    sqlite3* db;
    ASSERT_EQ(sqlite3_open(dir_.file("observe.db").c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ASSERT_EQ(sqlite3_exec(db,
                           "UPDATE \"flatstore.test.game.Monster\" SET p = x'0badf00d0badf00d' "
                           "WHERE rowid = (SELECT min(rowid) FROM \"flatstore.test.game.Monster\")",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  ASSERT_EQ(ws_->fetch<Monster>().all().status().code(), absl::StatusCode::kDataLoss);
  std::vector<size_t> delivered_sizes;
  auto token = ws_->subscribe(
      *stale,
      [&](const FetchedResult<Monster>& latest, const Changeset&) {
        delivered_sizes.push_back(latest.size());
      },
      &inlineExecutor());
  ASSERT_OK(token);
  ASSERT_OK(put(*ws_, "late", 10));
  ws_->awaitObservers();
  // Every fresh fetch fails, so no delivered result can equal one.
  EXPECT_TRUE(delivered_sizes.empty()) << "delivered a result of " << delivered_sizes.front();
  EXPECT_FALSE(token->active());
  EXPECT_EQ(token->status().code(), absl::StatusCode::kDataLoss) << token->status();
  EXPECT_THAT(std::string(token->status().message()), HasSubstr("flatstore.test.game.Monster"));
}

}  // namespace
}  // namespace flatstore::test::game
