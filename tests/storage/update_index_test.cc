// Updates that leave the primary key or some indexed fields as they were: submit takes
// the key and index values such a change did not touch from the object it changed
// instead of reading them again, and the index tables must come out exactly as if it
// had read them (the unique index included), also when one transaction changes an
// object twice. Account has no deprecated fields, so it is written without a version
// bridge, the case that takes the values over.
#include <sqlite3.h>

#include <map>
#include <string>

#include "account_flatstore.h"
#include "flatstore/workspace.h"
#include "gtest/gtest.h"
#include "tests/support/status_macros.h"
#include "tests/support/workspace_fixture.h"

namespace flatstore::test::account {
namespace {

using ::flatstore::testing::WorkspaceFixture;
using Rows = std::map<int64_t, std::string>;

// Index tables of Account, by field id.
constexpr char kLevelIndex[] = "flatstore.test.account.Account$1";
constexpr char kEmailIndex[] = "flatstore.test.account.Account$2";
constexpr char kRegionIndex[] = "flatstore.test.account.Account$3";

class UpdateIndexTest : public WorkspaceFixture {
 protected:
  // The rows of index table `table` as committed: object rowid to value as text.
  Rows indexRows(const std::string& table) {
    Rows rows;
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    std::string sql = "SELECT rowid, value FROM \"" + table + "\"";
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    while (sqlite3_step(s) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(s, 1);
      rows[sqlite3_column_int64(s, 0)] =
          text == nullptr ? "null" : reinterpret_cast<const char*>(text);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rows;
  }

  std::shared_ptr<const AccountEntity> get(std::string_view id) {
    auto a = ws_->get<Account>(id);
    EXPECT_OK(a);
    return a.ok() ? *a : nullptr;
  }

  // Creates a (level 10, a@x, north) and b (level 20, b@x, south).
  void createTwo() {
    ASSERT_OK(ws_->performChangesAndWait<Account>([](TransactionContext& txn) -> absl::Status {
      auto a = AccountChangeRequest::creation();
      a.setId("a").setLevel(10).setEmail("a@x").setRegion("north");
      FLATSTORE_RETURN_IF_ERROR(txn.submit(a).status());
      auto b = AccountChangeRequest::creation();
      b.setId("b").setLevel(20).setEmail("b@x").setRegion("south");
      return txn.submit(b).status();
    }));
    a_ = get("a");
    b_ = get("b");
    ASSERT_NE(a_, nullptr);
    ASSERT_NE(b_, nullptr);
  }

  absl::StatusOr<TransactionResult> change(const AccountChangeRequest& r) {
    return ws_->performChangesAndWait<Account>(
        [&](TransactionContext& txn) { return txn.submit(r).status(); });
  }

  absl::Status create(std::string_view id, std::string_view email) {
    return ws_
        ->performChangesAndWait<Account>([&](TransactionContext& txn) {
          auto r = AccountChangeRequest::creation();
          r.setId(id).setEmail(email);
          return txn.submit(r).status();
        })
        .status();
  }

  std::shared_ptr<const AccountEntity> a_, b_;
};

TEST_F(UpdateIndexTest, ChangingOneIndexedFieldLeavesTheOtherIndexesRight) {
  createTwo();
  const int64_t a = a_->rowid(), b = b_->rowid();

  // level changes; region and the unique email do not.
  ASSERT_OK(change(AccountChangeRequest::changeOf(*a_).setLevel(11)));
  EXPECT_EQ(indexRows(kLevelIndex), (Rows{{a, "11"}, {b, "20"}}));
  EXPECT_EQ(indexRows(kEmailIndex), (Rows{{a, "a@x"}, {b, "b@x"}}));
  EXPECT_EQ(indexRows(kRegionIndex), (Rows{{a, "north"}, {b, "south"}}));
  // The unique value a kept is still a's alone.
  auto taken = change(AccountChangeRequest::changeOf(*b_).setEmail("a@x"));
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kAlreadyExists) << taken.status();
  absl::Status dup = create("c", "a@x");
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists) << dup;

  // The unique email changes; level and region do not.
  ASSERT_OK(change(AccountChangeRequest::changeOf(*get("a")).setEmail("a2@x")));
  EXPECT_EQ(indexRows(kLevelIndex), (Rows{{a, "11"}, {b, "20"}}));
  EXPECT_EQ(indexRows(kEmailIndex), (Rows{{a, "a2@x"}, {b, "b@x"}}));
  EXPECT_EQ(indexRows(kRegionIndex), (Rows{{a, "north"}, {b, "south"}}));
  // a's old value is free again, its new one is taken.
  ASSERT_OK(change(AccountChangeRequest::changeOf(*get("b")).setEmail("a@x")));
  EXPECT_EQ(indexRows(kEmailIndex), (Rows{{a, "a2@x"}, {b, "a@x"}}));
  dup = create("c", "a2@x");
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists) << dup;

  // No indexed field changes: every index row stays, the object is written.
  auto before = get("a");
  auto note = change(AccountChangeRequest::changeOf(*before).setNote("n"));
  ASSERT_OK(note);
  EXPECT_EQ(note->updated, 1);
  auto after = get("a");
  EXPECT_EQ(after->note(), "n");
  EXPECT_EQ(after->level(), 11);
  EXPECT_GT(after->versionstamp(), before->versionstamp());
  EXPECT_EQ(indexRows(kLevelIndex), (Rows{{a, "11"}, {b, "20"}}));
  EXPECT_EQ(indexRows(kEmailIndex), (Rows{{a, "a2@x"}, {b, "a@x"}}));
  EXPECT_EQ(indexRows(kRegionIndex), (Rows{{a, "north"}, {b, "south"}}));
  auto level11 = ws_->fetch<Account>().where(AccountFields::level == 11).all();
  ASSERT_OK(level11);
  ASSERT_EQ(level11->size(), 1u);
  EXPECT_EQ((*level11)[0]->id(), "a");
}

// A second change of an object in one transaction that leaves the indexed fields (or
// the key) as the first change set them keeps what the first change set.
TEST_F(UpdateIndexTest, ALaterChangeKeepsWhatAnEarlierChangeOfTheTransactionSet) {
  createTwo();
  const int64_t a = a_->rowid(), b = b_->rowid();
  ASSERT_OK(ws_->performChangesAndWait<Account>([&](TransactionContext& txn) -> absl::Status {
    // A committed object: level and email, then a field no index reads.
    auto first = AccountChangeRequest::changeOf(*a_);
    first.setLevel(50).setEmail("a50@x");
    FLATSTORE_RETURN_IF_ERROR(txn.submit(first).status());
    FLATSTORE_ASSIGN_OR_RETURN(auto a1, txn.get<Account>("a"));
    if (a1 == nullptr) return absl::InternalError("a not found in the transaction");
    FLATSTORE_RETURN_IF_ERROR(
        txn.submit(AccountChangeRequest::changeOf(*a1).setNote("x")).status());
    // A committed object: its key, then a field no index reads.
    FLATSTORE_RETURN_IF_ERROR(txn.submit(AccountChangeRequest::changeOf(*b_).setId("b2")).status());
    FLATSTORE_ASSIGN_OR_RETURN(auto b1, txn.get<Account>("b2"));
    if (b1 == nullptr) return absl::InternalError("b2 not found in the transaction");
    FLATSTORE_RETURN_IF_ERROR(
        txn.submit(AccountChangeRequest::changeOf(*b1).setNote("y")).status());
    // An object created here, then a field no index reads.
    auto d = AccountChangeRequest::creation();
    d.setId("d").setLevel(5).setEmail("d@x").setRegion("east");
    FLATSTORE_RETURN_IF_ERROR(txn.submit(d).status());
    FLATSTORE_ASSIGN_OR_RETURN(auto d1, txn.get<Account>("d"));
    if (d1 == nullptr) return absl::InternalError("d not found in the transaction");
    FLATSTORE_RETURN_IF_ERROR(
        txn.submit(AccountChangeRequest::changeOf(*d1).setNote("z")).status());
    // The transaction's own queries see what the first changes set.
    FLATSTORE_ASSIGN_OR_RETURN(auto level50,
                               txn.fetch<Account>().where(AccountFields::level == 50).all());
    EXPECT_EQ(level50.size(), 1u);
    return absl::OkStatus();
  }));
  auto d = get("d");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->note(), "z");
  EXPECT_EQ(get("a")->level(), 50);
  EXPECT_EQ(get("a")->note(), "x");
  EXPECT_EQ(get("b"), nullptr);
  ASSERT_NE(get("b2"), nullptr);
  EXPECT_EQ(get("b2")->note(), "y");
  EXPECT_EQ(get("b2")->rowid(), b);
  const int64_t dr = d->rowid();
  EXPECT_EQ(indexRows(kLevelIndex), (Rows{{a, "50"}, {b, "20"}, {dr, "5"}}));
  EXPECT_EQ(indexRows(kEmailIndex), (Rows{{a, "a50@x"}, {b, "b@x"}, {dr, "d@x"}}));
  EXPECT_EQ(indexRows(kRegionIndex), (Rows{{a, "north"}, {b, "south"}, {dr, "east"}}));
  // The unique value a gave up is free, its new one is taken.
  ASSERT_OK(create("c", "a@x"));
  EXPECT_EQ(create("e", "a50@x").code(), absl::StatusCode::kAlreadyExists);
  // The key the rename freed can be created again; the new one cannot.
  ASSERT_OK(create("b", "b-again@x"));
  EXPECT_EQ(create("b2", "b2@x").code(), absl::StatusCode::kAlreadyExists);
}

// A change that left every indexed field, then one that changes indexed fields, in one
// transaction: the first records the index values once, as old and new; the second's
// new values are written and the unique value given up is free.
TEST_F(UpdateIndexTest, AnIndexedChangeAfterAChangeThatKeptTheIndexes) {
  createTwo();
  const int64_t a = a_->rowid(), b = b_->rowid();
  ASSERT_OK(ws_->performChangesAndWait<Account>([&](TransactionContext& txn) -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(
        txn.submit(AccountChangeRequest::changeOf(*a_).setNote("x")).status());
    FLATSTORE_ASSIGN_OR_RETURN(auto a1, txn.get<Account>("a"));
    if (a1 == nullptr) return absl::InternalError("a not found in the transaction");
    auto second = AccountChangeRequest::changeOf(*a1);
    second.setLevel(60).setEmail("a60@x");
    return txn.submit(second).status();
  }));
  EXPECT_EQ(get("a")->note(), "x");
  EXPECT_EQ(get("a")->level(), 60);
  EXPECT_EQ(indexRows(kLevelIndex), (Rows{{a, "60"}, {b, "20"}}));
  EXPECT_EQ(indexRows(kEmailIndex), (Rows{{a, "a60@x"}, {b, "b@x"}}));
  EXPECT_EQ(indexRows(kRegionIndex), (Rows{{a, "north"}, {b, "south"}}));
  ASSERT_OK(create("c", "a@x"));
  EXPECT_EQ(create("e", "a60@x").code(), absl::StatusCode::kAlreadyExists);
}

// A change that kept the key, then one that changes it, in one transaction: the
// transaction's lookups find the object by its new key only, and the old key is free.
TEST_F(UpdateIndexTest, AKeyChangeAfterAChangeThatKeptTheKey) {
  createTwo();
  const int64_t a = a_->rowid();
  ASSERT_OK(ws_->performChangesAndWait<Account>([&](TransactionContext& txn) -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(
        txn.submit(AccountChangeRequest::changeOf(*a_).setNote("x")).status());
    FLATSTORE_ASSIGN_OR_RETURN(auto a1, txn.get<Account>("a"));
    if (a1 == nullptr) return absl::InternalError("a not found in the transaction");
    FLATSTORE_RETURN_IF_ERROR(txn.submit(AccountChangeRequest::changeOf(*a1).setId("a3")).status());
    FLATSTORE_ASSIGN_OR_RETURN(auto old_key, txn.get<Account>("a"));
    EXPECT_EQ(old_key, nullptr);
    FLATSTORE_ASSIGN_OR_RETURN(auto new_key, txn.get<Account>("a3"));
    EXPECT_NE(new_key, nullptr);
    // The freed key can be taken in the same transaction.
    auto again = AccountChangeRequest::creation();
    again.setId("a").setEmail("again@x");
    FLATSTORE_ASSIGN_OR_RETURN(SubmitOutcome outcome, txn.submit(again));
    EXPECT_EQ(outcome, SubmitOutcome::kInserted);
    return absl::OkStatus();
  }));
  ASSERT_NE(get("a3"), nullptr);
  EXPECT_EQ(get("a3")->rowid(), a);
  EXPECT_EQ(get("a3")->note(), "x");
  ASSERT_NE(get("a"), nullptr);
  EXPECT_EQ(get("a")->email(), "again@x");
}

}  // namespace
}  // namespace flatstore::test::account
