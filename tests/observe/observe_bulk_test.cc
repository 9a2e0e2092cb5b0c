// Live results under commits that change many objects at once.
//
// The observer hub treats some shapes of query specially: a filter whose top-level
// conjunction bounds one field (a range, possibly with other conjuncts left to evaluate)
// only looks at the changed objects inside that range; a full window sorted by its
// range's field first narrows the range further by its last object; an object whose sort
// values did not change is replaced in place; a commit larger than a result is matched
// from the result's side. This test runs subscriptions of each such shape, and of shapes
// that get none of it (||, !, offsets, no filter), through commits of 1 to 2,500
// changes: updates that keep an object's place, updates that move it within, into and
// out of results, deletions and creations. After every commit each subscription's last
// delivery must be what a fresh fetch returns (same rowids in the same order, same
// versionstamps), and every changeset must turn the previous delivery into the next.
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "gtest/gtest.h"
#include "tests/observe/observe_util.h"
#include "tests/support/status_macros.h"
#include "tests/support/workspace_fixture.h"

namespace flatstore::bench {
namespace {

using ::flatstore::testing::checkChangeset;
using ::flatstore::testing::describeRows;
using ::flatstore::testing::sameRows;
using ::flatstore::testing::WorkspaceFixture;
using F = DocFields;
using Ptr = std::shared_ptr<const DocEntity>;

constexpr int kObjects = 3000;
constexpr int kScores = 1000;  // about three objects per score: sort values tie
constexpr int kSteps = 30;

std::string idOf(int n) {
  char id[16];
  std::snprintf(id, sizeof id, "doc-%05d", n);
  return id;
}

struct Shape {
  std::string text;
  std::function<Query<Doc>(Workspace&)> query;
};

std::vector<Shape> shapes() {
  std::vector<Shape> out;
  auto add = [&](std::string text, std::function<Query<Doc>(Workspace&)> query) {
    out.push_back({std::move(text), std::move(query)});
  };
  for (int low : {0, 250, 600}) {
    add(absl::StrCat("score in [", low, ", +200) asc"), [low](Workspace& ws) {
      auto q = ws.fetch<Doc>();
      q.where(F::score >= low && F::score < low + 200).orderBy(F::score.ascending());
      return q;
    });
    add(absl::StrCat("score in [", low, ", +200] desc, rank"), [low](Workspace& ws) {
      auto q = ws.fetch<Doc>();
      q.where(F::score <= low + 200).where(F::score >= low);
      q.orderBy(F::score.descending(), F::rank.ascending());
      return q;
    });
  }
  // Full windows sorted by the range's field, from either end of the range.
  add("score >= 300 asc limit 100", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::score >= 300).orderBy(F::score.ascending()).limit(100);
    return q;
  });
  add("score <= 500 asc limit 40", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::score <= 500).orderBy(F::score.ascending()).limit(40);
    return q;
  });
  add("score <= 400 desc limit 80", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::score <= 400).orderBy(F::score.descending()).limit(80);
    return q;
  });
  add("score > 100 desc limit 60", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::score > 100).orderBy(F::score.descending()).limit(60);
    return q;
  });
  // Equality, `in` lists, residual conjuncts, `!=`.
  add("score == 77 by id", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::score == 77).orderBy(F::id.ascending());
    return q;
  });
  add("score in {5, 500, 995} by rank desc", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::score.in({5, 500, 995})).orderBy(F::rank.descending());
    return q;
  });
  add("score in [100, 600) && rank < 1500 by rank", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::score >= 100 && F::score < 600 && F::rank < 1500).orderBy(F::rank.ascending());
    return q;
  });
  add("score in [0, 900) && score != 450 asc limit 120", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::score >= 0 && F::score < 900 && F::score != 450)
        .orderBy(F::score.ascending())
        .limit(120);
    return q;
  });
  // Ranges on an unindexed field and on the text primary key.
  add("rank in [1000, 1300) by score desc", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::rank >= 1000 && F::rank < 1300).orderBy(F::score.descending());
    return q;
  });
  add("rank >= 2000 by rank limit 30", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::rank >= 2000).orderBy(F::rank.ascending()).limit(30);
    return q;
  });
  add("id in [doc-01000, doc-01500) desc limit 70", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::id >= idOf(1000) && F::id < idOf(1500)).orderBy(F::id.descending()).limit(70);
    return q;
  });
  add("ratio < 0.3 by ratio, score desc", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::ratio < 0.3).orderBy(F::ratio.ascending(), F::score.descending());
    return q;
  });
  add("score > 10 && score < 5 (empty)", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::score > 10 && F::score < 5);
    return q;
  });
  // Shapes without a range.
  add("score < 100 || score >= 900 by score", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::score < 100 || F::score >= 900).orderBy(F::score.ascending());
    return q;
  });
  add("!(score < 500) by size limit 25", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(!(F::score < 500)).orderBy(F::size.ascending()).limit(25);
    return q;
  });
  add("score >= 200 asc limit 20 offset 5", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.where(F::score >= 200).orderBy(F::score.ascending()).limit(20).offset(5);
    return q;
  });
  add("all by size desc limit 15", [](Workspace& ws) {
    auto q = ws.fetch<Doc>();
    q.orderBy(F::size.descending()).limit(15);
    return q;
  });
  return out;
}

// One subscription and what its callback saw.
struct Live {
  Shape shape;
  SubscriptionToken token;
  absl::Mutex mu;
  std::vector<Ptr> last ABSL_GUARDED_BY(mu);
  std::vector<std::string> errors ABSL_GUARDED_BY(mu);
};

class ObserveBulkTest : public WorkspaceFixture, public ::testing::WithParamInterface<uint64_t> {
 protected:
  ObserveBulkTest() : WorkspaceFixture("bulk.db") {}

  // Upserts object `n` with random fields.
  absl::Status put(TransactionContext& txn, int n) {
    auto r = DocChangeRequest::upsert();
    r.setId(idOf(n))
        .setScore(static_cast<int32_t>(rng_() % kScores))
        .setRank(static_cast<int32_t>(rng_() % kObjects))
        .setSize(static_cast<int64_t>(rng_() % 1000000))
        .setRatio(static_cast<double>(rng_() % 1000) / 1000)
        .setBody("b");
    return txn.submit(r).status();
  }

  // One transaction over `count` random live objects: most get a new size (they keep
  // their place in score-ordered results), some a new score or rank (they move), some
  // are deleted; and new objects are created.
  absl::Status step(size_t count) {
    std::vector<int> live(live_.begin(), live_.end());
    std::shuffle(live.begin(), live.end(), rng_);
    live.resize(std::min(count, live.size()));
    std::vector<int> created;
    for (size_t i = 0; i < count / 10 + 1; ++i) created.push_back(next_id_++);
    std::vector<int> deleted;
    auto done = ws_->performChangesAndWait<Doc>([&](TransactionContext& txn) -> absl::Status {
      deleted.clear();
      for (int n : live) {
        uint64_t what = rng_() % 100;
        if (what < 70) {
          auto r = DocChangeRequest::upsert();
          r.setId(idOf(n)).setSize(static_cast<int64_t>(rng_() % 1000000));
          FLATSTORE_RETURN_IF_ERROR(txn.submit(r).status());
        } else if (what < 90) {
          auto r = DocChangeRequest::upsert();
          r.setId(idOf(n)).setScore(static_cast<int32_t>(rng_() % kScores));
          FLATSTORE_RETURN_IF_ERROR(txn.submit(r).status());
        } else if (what < 95) {
          auto r = DocChangeRequest::upsert();
          r.setId(idOf(n)).setRank(static_cast<int32_t>(rng_() % kObjects));
          FLATSTORE_RETURN_IF_ERROR(txn.submit(r).status());
        } else {
          FLATSTORE_RETURN_IF_ERROR(txn.submit(DocChangeRequest::deletion(idOf(n))).status());
          deleted.push_back(n);
        }
      }
      for (int n : created) FLATSTORE_RETURN_IF_ERROR(put(txn, n));
      return absl::OkStatus();
    });
    if (!done.ok()) return done.status();
    for (int n : deleted) live_.erase(n);
    live_.insert(created.begin(), created.end());
    return absl::OkStatus();
  }

  // Every subscription's last delivery is what a fresh fetch returns.
  void checkAll(const std::string& where) {
    ws_->awaitObservers();
    for (const auto& live : subs_) {
      auto fresh = live->shape.query(*ws_).all();
      ASSERT_OK(fresh);
      absl::MutexLock lock(&live->mu);
      for (const std::string& e : live->errors) ADD_FAILURE() << live->shape.text << ": " << e;
      live->errors.clear();
      EXPECT_TRUE(sameRows(live->last, fresh->objects()))
          << where << ": " << live->shape.text << " delivered " << describeRows(live->last)
          << ", a fresh fetch returns " << describeRows(fresh->objects());
    }
  }

  std::mt19937_64 rng_{GetParam()};
  std::set<int> live_;
  int next_id_ = kObjects;
  std::vector<std::unique_ptr<Live>> subs_;
};

TEST_P(ObserveBulkTest, LargeCommitsKeepEveryShapeExact) {
  auto filled = ws_->performChangesAndWait<Doc>([&](TransactionContext& txn) -> absl::Status {
    for (int n = 0; n < kObjects; ++n) FLATSTORE_RETURN_IF_ERROR(put(txn, n));
    return absl::OkStatus();
  });
  ASSERT_OK(filled);
  for (int n = 0; n < kObjects; ++n) live_.insert(n);

  for (Shape& shape : shapes()) {
    auto live = std::make_unique<Live>();
    live->shape = std::move(shape);
    auto initial = live->shape.query(*ws_).all();
    ASSERT_OK(initial);
    {
      absl::MutexLock lock(&live->mu);
      live->last = initial->objects();
    }
    Live* l = live.get();
    auto token = ws_->subscribe(
        *initial,
        [l](const FetchedResult<Doc>& latest, const Changeset& cs) {
          absl::MutexLock lock(&l->mu);
          std::string error = checkChangeset(l->last, latest.objects(), cs);
          if (!error.empty()) l->errors.push_back(std::move(error));
          l->last = latest.objects();
        },
        &inlineExecutor());
    ASSERT_OK(token);
    live->token = std::move(*token);
    subs_.push_back(std::move(live));
  }

  constexpr size_t kCounts[] = {1, 3, 40, 400, 2500};
  for (int s = 0; s < kSteps; ++s) {
    size_t count = kCounts[rng_() % std::size(kCounts)];
    ASSERT_OK(step(count));
    ASSERT_NO_FATAL_FAILURE(
        checkAll(absl::StrCat("seed ", GetParam(), " step ", s, " (", count, " changes)")));
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, ObserveBulkTest, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace flatstore::bench
