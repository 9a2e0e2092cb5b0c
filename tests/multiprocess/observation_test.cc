// Subscriptions in one process following commits of another (design section 7: other
// processes' commits are seen through PRAGMA data_version and the change log). The test
// process is the subscriber (B); mp_helper is the writer (A).
//
// Callbacks run on the inline executor (the workspace's notification thread). They only
// record what they got; the test thread checks it. Every wait is bounded.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/multiprocess/process_util.h"

namespace flatstore::bench {
namespace {

using ::flatstore::testing::Child;
using ::flatstore::testing::kBoundedWait;
using ::flatstore::testing::spawnHelper;
using ::flatstore::testing::TempDir;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using F = DocFields;
using DocPtr = std::shared_ptr<const DocEntity>;

// What identifies an object version in a result.
struct Row {
  std::string id;
  int64_t rowid;
  Versionstamp vs;
  int32_t score;
  int32_t rank;
  bool operator==(const Row&) const = default;
};
std::vector<Row> rowsOf(const std::vector<DocPtr>& objects) {
  std::vector<Row> out;
  for (const DocPtr& d : objects) {
    out.push_back({std::string(d->id()), d->rowid(), d->versionstamp(), d->score(), d->rank()});
  }
  return out;
}
std::string describe(const std::vector<Row>& rows) {
  std::string out;
  for (const Row& r : rows) absl::StrAppend(&out, r.id, "@", r.vs.toString(), " ");
  return out;
}

// Records the deliveries of one result subscription and checks each changeset against
// the result it turns the previous delivery into.
class ResultLog {
 public:
  ResultLog(const FetchedResult<Doc>& initial, bool strict_sequences)
      : strict_(strict_sequences), last_(initial.objects()) {}

  void onDelivery(const FetchedResult<Doc>& latest, const Changeset& cs) {
    absl::MutexLock lock(&mu_);
    deliveries_ += 1;
    // Old result minus `deleted` plus `inserted` must be the new result (by rowid).
    std::vector<int64_t> rowids;
    for (const DocPtr& d : last_) rowids.push_back(d->rowid());
    for (size_t k = cs.deleted.size(); k > 0; --k) {
      size_t i = cs.deleted[k - 1];
      if (i >= rowids.size() || (k > 1 && cs.deleted[k - 2] >= i)) {
        problems_.push_back(absl::StrCat("bad deleted index ", i));
        break;
      }
      rowids.erase(rowids.begin() + static_cast<std::ptrdiff_t>(i));
    }
    for (size_t i : cs.inserted) {
      if (i > rowids.size() || i >= latest.size()) {
        problems_.push_back(absl::StrCat("bad inserted index ", i));
        break;
      }
      rowids.insert(rowids.begin() + static_cast<std::ptrdiff_t>(i), latest[i]->rowid());
    }
    std::vector<int64_t> expected;
    for (const DocPtr& d : latest) expected.push_back(d->rowid());
    if (rowids != expected) {
      problems_.push_back(absl::StrCat(
          "changeset of commit ", cs.commit_sequence, " (", cs.deleted.size(), " deleted, ",
          cs.inserted.size(), " inserted) does not turn the previous result (", last_.size(),
          " objects) into the new one (", latest.size(), " objects)"));
    }
    for (size_t i : cs.updated) {
      if (i >= latest.size()) problems_.push_back(absl::StrCat("bad updated index ", i));
    }
    if (cs.commit_sequence < sequence_ || (strict_ && cs.commit_sequence == sequence_)) {
      problems_.push_back(
          absl::StrCat("commit_sequence ", cs.commit_sequence, " after ", sequence_));
    }
    sequence_ = cs.commit_sequence;
    last_ = latest.objects();
  }

  std::vector<Row> last() const {
    absl::MutexLock lock(&mu_);
    return rowsOf(last_);
  }
  std::vector<std::string> problems() const {
    absl::MutexLock lock(&mu_);
    return problems_;
  }
  int deliveries() const {
    absl::MutexLock lock(&mu_);
    return deliveries_;
  }
  // Waits until the delivered result is `expected`, at most until `deadline`.
  bool awaitRows(const std::vector<Row>& expected, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto equal = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return rowsOf(last_) == expected; };
    return mu_.AwaitWithDeadline(absl::Condition(&equal), deadline);
  }
  // Waits until the delivered result holds at least `n` objects.
  bool awaitSize(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto big = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return last_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&big), timeout);
  }

 private:
  const bool strict_;
  mutable absl::Mutex mu_;
  std::vector<DocPtr> last_ ABSL_GUARDED_BY(mu_);
  uint64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  int deliveries_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> problems_ ABSL_GUARDED_BY(mu_);
};

// Records the versions an object subscription delivers.
class ObjectLog {
 public:
  void onDelivery(const DocPtr& latest) {
    absl::MutexLock lock(&mu_);
    if (latest == nullptr) {
      problems_.push_back("the object was reported deleted");
      return;
    }
    if (!ranks_.empty() &&
        (latest->rank() <= ranks_.back() || latest->versionstamp() <= last_vs_)) {
      problems_.push_back(absl::StrCat("rank ", latest->rank(), " at ",
                                       latest->versionstamp().toString(), " after rank ",
                                       ranks_.back(), " at ", last_vs_.toString()));
    }
    ranks_.push_back(latest->rank());
    last_vs_ = latest->versionstamp();
  }
  // Waits until the object delivered last has versionstamp `vs`, at most until
  // `deadline`.
  bool awaitVersionstamp(Versionstamp vs, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return last_vs_ == vs; };
    return mu_.AwaitWithDeadline(absl::Condition(&reached), deadline);
  }
  std::vector<int32_t> ranks() const {
    absl::MutexLock lock(&mu_);
    return ranks_;
  }
  Versionstamp lastVersionstamp() const {
    absl::MutexLock lock(&mu_);
    return last_vs_;
  }
  std::vector<std::string> problems() const {
    absl::MutexLock lock(&mu_);
    return problems_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<int32_t> ranks_ ABSL_GUARDED_BY(mu_);
  Versionstamp last_vs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> problems_ ABSL_GUARDED_BY(mu_);
};

absl::Status put(Workspace& ws, const std::string& id, int32_t score, int32_t rank) {
  return ws
      .performChangesAndWait<Doc>([&](TransactionContext& txn) {
        auto r = DocChangeRequest::upsert();
        r.setId(id).setScore(score).setRank(rank);
        return txn.submit(r).status();
      })
      .status();
}

Versionstamp parseOk(const std::string& line) {
  EXPECT_THAT(line, StartsWith("ok "));
  auto vs = Versionstamp::parse(line.size() > 3 ? line.substr(3) : "");
  EXPECT_TRUE(vs.ok()) << line;
  return vs.value_or(Versionstamp());
}

class CrossProcessObservation : public ::testing::Test {
 protected:
  static constexpr int kCommits = 40;  // what "churn" does, see mp_helper.cc

  void SetUp() override {
    path_ = dir_.file("observe.db");
    auto ws = Workspace::open(path_);
    ASSERT_OK(ws);
    ws_ = std::move(*ws);
    ASSERT_OK(put(*ws_, "watched", 100, 0));
    for (int i = 0; i < 7; ++i) ASSERT_OK(put(*ws_, absl::StrCat("c", i), i * 7, 0));
  }

  Query<Doc> highQuery() {
    return ws_->fetch<Doc>().where(F::score >= 20).orderBy(F::score.descending());
  }
  // A limited result: losing a member makes the observer re-query.
  Query<Doc> lowQuery() {
    return ws_->fetch<Doc>().where(F::score < 100).orderBy(F::score.ascending()).limit(3);
  }

  // Subscribes to highQuery(), lowQuery() and the object "watched".
  void subscribeAll(bool strict_sequences) {
    auto high = highQuery().all();
    ASSERT_OK(high);
    auto low = lowQuery().all();
    ASSERT_OK(low);
    auto watched = ws_->get<Doc>("watched");
    ASSERT_OK(watched);
    high_ = std::make_unique<ResultLog>(*high, strict_sequences);
    low_ = std::make_unique<ResultLog>(*low, strict_sequences);
    auto t1 = ws_->subscribe(
        *high,
        [this](const FetchedResult<Doc>& r, const Changeset& cs) { high_->onDelivery(r, cs); },
        &inlineExecutor());
    ASSERT_OK(t1);
    auto t2 = ws_->subscribe(
        *low, [this](const FetchedResult<Doc>& r, const Changeset& cs) { low_->onDelivery(r, cs); },
        &inlineExecutor());
    ASSERT_OK(t2);
    auto t3 = ws_->subscribe(
        *watched, [this](std::shared_ptr<const DocEntity> d) { object_.onDelivery(d); },
        &inlineExecutor());
    ASSERT_OK(t3);
    tokens_.push_back(std::move(*t1));
    tokens_.push_back(std::move(*t2));
    tokens_.push_back(std::move(*t3));
  }

  // Once both processes stopped writing: every subscription ends where a fresh fetch
  // is, and no delivery on the way was inconsistent. The watcher hands another process's
  // commits to the observers in batches, so the end is awaited on what was delivered
  // (bounded), not on a commit count.
  void checkFinal() {
    absl::Time deadline = absl::Now() + kBoundedWait;
    auto high = highQuery().all();
    ASSERT_OK(high);
    auto low = lowQuery().all();
    ASSERT_OK(low);
    auto watched = ws_->get<Doc>("watched");
    ASSERT_OK(watched);
    EXPECT_TRUE(high_->awaitRows(rowsOf(high->objects()), deadline))
        << "delivered: " << describe(high_->last())
        << "\nfetched: " << describe(rowsOf(high->objects()));
    EXPECT_TRUE(low_->awaitRows(rowsOf(low->objects()), deadline))
        << "delivered: " << describe(low_->last())
        << "\nfetched: " << describe(rowsOf(low->objects()));
    EXPECT_TRUE(object_.awaitVersionstamp((*watched)->versionstamp(), deadline))
        << "delivered " << object_.lastVersionstamp().toString() << ", fetched "
        << (*watched)->versionstamp().toString();
    EXPECT_THAT(high_->problems(), IsEmpty());
    EXPECT_THAT(low_->problems(), IsEmpty());
    EXPECT_THAT(object_.problems(), IsEmpty());
    EXPECT_GT(high_->deliveries(), 0);
    EXPECT_GT(low_->deliveries(), 0);
  }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<Workspace> ws_;
  std::unique_ptr<ResultLog> high_;
  std::unique_ptr<ResultLog> low_;
  ObjectLog object_;
  std::vector<SubscriptionToken> tokens_;
};

// A commits 40 transactions (each changes "watched" and moves, inserts or deletes other
// documents); B's subscriptions follow them in commit order and end where a fresh fetch
// is.
TEST_F(CrossProcessObservation, ForeignCommitsReachSubscribersInOrder) {
  subscribeAll(/*strict_sequences=*/true);
  auto writer = spawnHelper({"serve", path_, "10000"});
  ASSERT_OK(writer);
  auto done = (*writer)->ask(absl::StrCat("churn ", kCommits));
  ASSERT_OK(done);
  Versionstamp last = parseOk(*done);
  checkFinal();
  EXPECT_EQ(object_.lastVersionstamp(), last);
  ASSERT_FALSE(object_.ranks().empty());
  EXPECT_EQ(object_.ranks().back(), kCommits);
  ASSERT_OK((*writer)->send("quit"));
  EXPECT_OK((*writer)->waitSuccess());
}

// A and B commit at the same time: B's own commits reach its subscriptions from its
// writer at once, A's through the watcher later. The results still end where a fresh
// fetch is, and commit sequences never go back.
TEST_F(CrossProcessObservation, LocalAndForeignCommitsTogether) {
  subscribeAll(/*strict_sequences=*/false);
  auto writer = spawnHelper({"serve", path_, "10000"});
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->send(absl::StrCat("churn ", kCommits)));
  for (int i = 0; i < kCommits; ++i) {
    // B's documents move through both queries' ranges.
    ASSERT_OK(put(*ws_, absl::StrCat("b", i % 5), (i * 13) % 60, i));
  }
  auto done = (*writer)->readLine();
  ASSERT_OK(done);
  parseOk(*done);
  checkFinal();
  ASSERT_OK((*writer)->send("quit"));
  EXPECT_OK((*writer)->waitSuccess());
}

// A creates one new document per commit while B keeps fetching and subscribing: each
// time A's next batch of commits reaches B's observers (B's watcher reads several of A's
// commits at once and hands them to the observers one after another), B makes a new
// subscription from a fresh fetch, so new subscriptions keep arriving while earlier
// commits are still being applied. Every delivery to every subscription must be
// consistent (its changeset turns the previous result into the new one) and every
// subscription must end with all documents.
TEST(CrossProcessSubscribe, SubscriptionsMadeWhileAnotherProcessCommitsMissNothing) {
  constexpr int kGrow = 400;
  constexpr size_t kMaxSubscriptions = 150;
  TempDir dir;
  std::string path = dir.file("subscribe.db");
  // Frequent looks for A's commits: more, smaller batches, so more subscriptions are
  // made at different points of A's run.
  auto ws = Workspace::open(path, {.watch_interval = absl::Milliseconds(2)});
  ASSERT_OK(ws);
  ASSERT_OK(put(**ws, "seed", 0, 0));
  auto all = [&] { return (*ws)->fetch<Doc>().orderBy(F::score.ascending()); };
  // The clock: a subscription whose deliveries tell B that more of A's commits arrived.
  auto initial = all().all();
  ASSERT_OK(initial);
  ResultLog clock(*initial, /*strict_sequences=*/true);
  auto clock_token = (*ws)->subscribe(
      *initial,
      [&clock](const FetchedResult<Doc>& r, const Changeset& cs) { clock.onDelivery(r, cs); },
      &inlineExecutor());
  ASSERT_OK(clock_token);

  auto writer = spawnHelper({"serve", path, "10000"});
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->send(absl::StrCat("grow g ", kGrow)));
  std::vector<std::unique_ptr<ResultLog>> logs;
  std::vector<SubscriptionToken> tokens;
  std::vector<size_t> initial_sizes;  // how far A was when each subscription was made
  size_t seen = initial->size();
  while (logs.size() < kMaxSubscriptions && seen < kGrow + 1) {
    ASSERT_TRUE(clock.awaitSize(seen + 1, kBoundedWait)) << "A's commits stopped arriving";
    auto result = all().all();
    ASSERT_OK(result);
    seen = result->size();
    initial_sizes.push_back(seen);
    logs.push_back(std::make_unique<ResultLog>(*result, /*strict_sequences=*/false));
    ResultLog* log = logs.back().get();
    auto token = (*ws)->subscribe(
        *result,
        [log](const FetchedResult<Doc>& r, const Changeset& cs) { log->onDelivery(r, cs); },
        &inlineExecutor());
    ASSERT_OK(token);
    tokens.push_back(std::move(*token));
  }
  auto done = (*writer)->readLine();
  ASSERT_OK(done);
  parseOk(*done);
  auto fresh = all().all();
  ASSERT_OK(fresh);
  ASSERT_EQ(fresh->size(), static_cast<size_t>(kGrow + 1));
  // The clock gets there only with A's last commit (each commit adds a new document);
  // once the observers drained that commit, every subscription has applied everything.
  ASSERT_TRUE(clock.awaitRows(rowsOf(fresh->objects()), absl::Now() + kBoundedWait))
      << "the clock holds " << clock.last().size() << " documents";
  (*ws)->awaitObservers();
  int stale = 0;
  for (size_t i = 0; i < logs.size(); ++i) {
    std::vector<Row> delivered = logs[i]->last();
    EXPECT_THAT(logs[i]->problems(), IsEmpty()) << "subscription " << i;
    if (delivered != rowsOf(fresh->objects())) {
      stale += 1;
      ADD_FAILURE() << "subscription " << i << " of " << logs.size() << " holds "
                    << delivered.size() << " documents, not " << fresh->size();
    }
  }
  EXPECT_THAT(clock.problems(), IsEmpty());
  std::cout << logs.size() << " subscriptions made while A had committed "
            << initial_sizes.front() - 1 << " to " << initial_sizes.back() - 1 << " of " << kGrow
            << "; " << stale << " stale\n";
  ASSERT_OK((*writer)->send("quit"));
  EXPECT_OK((*writer)->waitSuccess());
}

}  // namespace
}  // namespace flatstore::bench
