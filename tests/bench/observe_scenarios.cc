// The observer scenarios: what keeping results live costs and what it saves.
//
// Every run starts from a fresh file holding the 10,000 documents of docs10k() (score
// uniform in 0..9999 and indexed, rank a permutation of 0..9999 and not indexed).
// Filling the table, fetching the results and subscribing are not timed; each
// subscription is registered with the hub (awaitObservers) before the clock starts.
// Subscriptions use the default executor, the workspace's notification thread: the
// path the product offers. Their callbacks only note what arrived and when.
//
// Scenarios (the names are read by other tools):
//
//   observe_1000x1000_update_10k
//     1,000 queries of about 1,000 objects each (the mix is in liveQuery()):
//       600 `score` ranges of width 1,000 ordered by score (half ascending, half
//           descending): unlimited results, kept up to date in memory;
//       300 `score` ranges of width 2,000 and `rank` ranges of width 5,000, ordered by
//           the unindexed rank: SQL narrows by the index, the rest is filtered and
//           sorted in memory;
//       100 `score >= x` ordered by score with limit 1,000: full windows, which the hub
//           must re-query when a commit takes members out of them and brings too few in.
//     Then one transaction changes all 10,000 objects: `size` of each, and `score` of
//     every tenth (+3,331 modulo 10,000), so that 1,000 objects move between results.
//     flatstore: all 1,000 results subscribed; timed from submitting the transaction
//       until every callback has the result of that commit. ops are delivered results,
//       latencies each subscriber's arrival time after the submission.
//     requery:   no subscriptions; the same transaction, waited, then the 1,000 queries
//       run again one after the other through ws->fetch on the timing thread. ops are
//       queries, latencies each query's completion time after the submission.
//     Both include the commit (commit_ms, an extra figure, is its share). Checked
//     afterwards: every delivery carries that commit's sequence, every delivered result
//     has the size a fresh count gives, and every tenth equals a fresh fetch object by
//     object (rowid and versionstamp).
//
//   observe_1000_objects_10k_updates
//     1,000 of the documents are followed twice: a single-object result (`id == x`,
//     subscribed) and an object subscription. Ten transactions, each changing `size` of
//     all 1,000 followed objects, are submitted back to back (they commit one after the
//     other, since they share the table): 10,000 updates. Timed until every one of the
//     2,000 subscribers has the version of the last commit; pending deliveries coalesce,
//     so a subscriber need not see every version (deliveries, an extra figure, counts
//     the callbacks that ran). ops are updates, latencies each subscriber's arrival
//     time of the final version after the first submission.
//
//   commit_idle_subs
//     Table Doc0 is filled with another 10,000 documents; flatstore-1000-subs holds 500
//     result subscriptions (score ranges of width 200) and 500 object subscriptions on
//     Doc0, flatstore-0-subs none. Timed: 5,000 one-object transactions on table Doc
//     (performChangesAndWait, `size` of a distinct object each), ops are commits,
//     latencies each commit's wait. The idle subscriptions must get no delivery.
#include <atomic>
#include <mutex>

#include "tests/bench/bench_util.h"

namespace flatstore::bench {
namespace {

using F = DocFields;
using DocResult = FetchedResult<Doc>;

constexpr int kLiveQueries = 1000;
constexpr int kScoreRanges = 600;
constexpr int kMixedRanges = 300;  // then kLiveQueries - kScoreRanges - kMixedRanges limited
constexpr int kWindow = 1000;      // the limit of the limited queries
constexpr int kVerifyEvery = 10;   // every tenth delivered result is compared object by object

// Subscription (or re-query) `i` of observe_1000x1000_update_10k.
Query<Doc> liveQuery(Workspace& ws, int i) {
  Query<Doc> q = ws.fetch<Doc>();
  if (i < kScoreRanges) {
    int32_t low = i * 15;  // 0 .. 8985
    q.where(F::score >= low && F::score < low + 1000);
    q.orderBy(i % 2 == 0 ? F::score.ascending() : F::score.descending());
  } else if (i < kScoreRanges + kMixedRanges) {
    int k = i - kScoreRanges;
    int32_t low = k * 8000 / kMixedRanges;
    int32_t rank = (k % 6) * 1000;
    q.where(F::score >= low && F::score < low + 2000 && F::rank >= rank && F::rank < rank + 5000);
    q.orderBy(F::rank.ascending());
  } else {
    int k = i - kScoreRanges - kMixedRanges;
    q.where(F::score >= k * 80).orderBy(F::score.ascending()).limit(kWindow);
  }
  return q;
}

// The update of observe_1000x1000_update_10k: `size` of every held object, and `score`
// of every tenth.
absl::Status updateAll(TransactionContext& txn,
                       const std::vector<std::shared_ptr<const DocEntity>>& held) {
  for (size_t i = 0; i < held.size(); ++i) {
    const DocEntity& o = *held[i];
    auto r = DocChangeRequest::changeOf(o);
    r.setSize(o.size() + 1);
    if (i % 10 == 0) r.setScore((o.score() + 3331) % 10000);
    FLATSTORE_ASSIGN_OR_RETURN(SubmitOutcome outcome, txn.submit(r));
    if (outcome != SubmitOutcome::kUpdated) return absl::InternalError("not updated");
  }
  return absl::OkStatus();
}

// Records when each subscriber got what the run waits for, and lets the timing thread
// wait until all have. Callbacks call arrive() on the notification thread.
class Arrivals {
 public:
  explicit Arrivals(size_t subscribers) : at_(subscribers) {}

  // Subscriber `i` has the awaited state; only its first report counts.
  void arrive(size_t i) {
    Clock::time_point now = Clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    if (at_[i].has_value()) return;
    at_[i] = now;
    arrived_ += 1;
    if (arrived_ == at_.size()) done_.notify_all();
  }
  void waitAll() {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return arrived_ == at_.size(); });
  }
  // Microseconds from `start` to each arrival. REQUIRES: waitAll() returned.
  std::vector<double> latenciesSince(Clock::time_point start) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<double> out;
    out.reserve(at_.size());
    for (const auto& t : at_) {
      out.push_back(std::chrono::duration<double, std::micro>(*t - start).count());
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable done_;
  std::vector<std::optional<Clock::time_point>> at_;
  size_t arrived_ = 0;
};

// The same objects (rowid) at the same versions in the same order.
bool sameObjects(const DocResult& a, const DocResult& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i]->rowid() != b[i]->rowid() || a[i]->versionstamp() != b[i]->versionstamp()) {
      return false;
    }
  }
  return true;
}

// A workspace holding docs10k() in Doc and the 1,000 live queries' results.
struct LiveSetup {
  std::unique_ptr<Workspace> ws;
  std::vector<std::shared_ptr<const DocEntity>> held;  // every object, for the update
  std::vector<DocResult> results;

  explicit LiveSetup(const std::string& path) : ws(openWorkspace(path)) {
    flatInsertAll(*ws, docs10k());
    held = flatAll(*ws);
    results.reserve(kLiveQueries);
    for (int i = 0; i < kLiveQueries; ++i) {
      auto r = liveQuery(*ws, i).all();
      check(r.status(), "live query");
      if (r->empty()) die("live query " + std::to_string(i) + " selects nothing");
      results.push_back(std::move(*r));
    }
  }

  // Submits the update and waits for its commit: its sequence, and the commit's
  // milliseconds since `start`.
  uint64_t update(Clock::time_point start, double* commit_ms) {
    auto done = ws->performChangesAndWait<Doc>(
        [&](TransactionContext& txn) { return updateAll(txn, held); });
    *commit_ms = microsSince(start) / 1000;
    check(done.status(), "update");
    expectCount(done->updated, static_cast<int64_t>(held.size()), "update");
    return done->versionstamp.commitSequence();
  }
};

Measurement observeLive(const std::string& path) {
  LiveSetup setup(path);
  Workspace& ws = *setup.ws;
  Arrivals arrivals(kLiveQueries);
  std::mutex mu;
  std::vector<uint64_t> delivered_sequence(kLiveQueries, 0);
  std::vector<size_t> delivered_size(kLiveQueries, 0);
  std::vector<DocResult> kept(kLiveQueries);
  int64_t deliveries = 0;
  const uint64_t before = ws.lastCommitSequence();
  std::vector<SubscriptionToken> tokens;
  tokens.reserve(kLiveQueries);
  for (size_t i = 0; i < kLiveQueries; ++i) {
    auto token = ws.subscribe(setup.results[i], [&, i](const DocResult& r, const Changeset&) {
      {
        std::lock_guard<std::mutex> lock(mu);
        deliveries += 1;
        delivered_sequence[i] = r.observedSequence();
        delivered_size[i] = r.size();
        if (i % kVerifyEvery == 0) kept[i] = r;
      }
      if (r.observedSequence() > before) arrivals.arrive(i);
    });
    check(token.status(), "subscribe");
    tokens.push_back(std::move(*token));
  }
  ws.awaitObservers();
  {
    std::lock_guard<std::mutex> lock(mu);
    if (deliveries != 0) die("observe: a delivery before the update (the results were current)");
  }

  Stopwatch timer;
  Clock::time_point start = Clock::now();
  double commit_ms = 0;
  uint64_t sequence = setup.update(start, &commit_ms);
  arrivals.waitAll();
  double s = timer.seconds();
  std::vector<double> lat = arrivals.latenciesSince(start);

  ws.awaitObservers();
  tokens.clear();  // no callback runs after this
  for (int i = 0; i < kLiveQueries; ++i) {
    std::string what = "observe: subscription " + std::to_string(i);
    if (delivered_sequence[i] != sequence) {
      die(what + " has sequence " + std::to_string(delivered_sequence[i]) + ", the commit " +
          std::to_string(sequence));
    }
    expectCount(static_cast<int64_t>(delivered_size[i]), *liveQuery(ws, i).count(), what);
    if (i % kVerifyEvery == 0) {
      auto fresh = liveQuery(ws, i).all();
      check(fresh.status(), what);
      if (!sameObjects(kept[i], *fresh))
        die(what + ": the delivered result is not a fresh fetch's");
    }
  }
  Measurement m = fromLatencies(kLiveQueries, s, std::move(lat));
  m.extra.emplace_back("commit_ms", commit_ms);
  m.extra.emplace_back("deliveries", static_cast<double>(deliveries));
  return m;
}

Measurement requeryLive(const std::string& path) {
  LiveSetup setup(path);
  Workspace& ws = *setup.ws;
  std::vector<double> lat;
  lat.reserve(kLiveQueries);
  std::vector<DocResult> latest(kLiveQueries);

  Stopwatch timer;
  Clock::time_point start = Clock::now();
  double commit_ms = 0;
  uint64_t sequence = setup.update(start, &commit_ms);
  for (int i = 0; i < kLiveQueries; ++i) {
    auto r = liveQuery(ws, i).all();
    check(r.status(), "re-query");
    latest[static_cast<size_t>(i)] = std::move(*r);
    lat.push_back(microsSince(start));
  }
  double s = timer.seconds();

  for (int i = 0; i < kLiveQueries; ++i) {
    const DocResult& r = latest[static_cast<size_t>(i)];
    if (r.observedSequence() < sequence || r.empty()) {
      die("re-query " + std::to_string(i) + " does not reflect the update");
    }
  }
  Measurement m = fromLatencies(kLiveQueries, s, std::move(lat));
  m.extra.emplace_back("commit_ms", commit_ms);
  return m;
}

// ---------------------------------------------------------------------------------------
// observe_1000_objects_10k_updates

constexpr int kFollowed = 1000;
constexpr int kRounds = 10;

Measurement observeObjects(const std::string& path) {
  auto ws = openWorkspace(path);
  const auto& docs = docs10k();
  flatInsertAll(*ws, docs);
  std::vector<DocResult> results;
  std::vector<std::shared_ptr<const DocEntity>> followed;
  for (int i = 0; i < kFollowed; ++i) {
    const std::string& id = docs[static_cast<size_t>(i) * docs.size() / kFollowed].id;
    auto r = ws->fetch<Doc>().where(F::id == id).all();
    check(r.status(), "fetch by key");
    expectCount(static_cast<int64_t>(r->size()), 1, "fetch " + id);
    followed.push_back((*r)[0]);
    results.push_back(std::move(*r));
  }
  // Round k sets size to the original + k, so the last round's size marks the final
  // version.
  auto final_size = [&](size_t i) { return followed[i]->size() + kRounds; };

  // Subscribers 0..999 follow the results, 1000..1999 the objects.
  Arrivals arrivals(2 * kFollowed);
  std::mutex mu;
  int64_t deliveries = 0;
  std::vector<std::shared_ptr<const DocEntity>> last(2 * kFollowed);
  std::vector<SubscriptionToken> tokens;
  for (size_t i = 0; i < kFollowed; ++i) {
    auto on_result = [&, i](const DocResult& r, const Changeset&) {
      std::shared_ptr<const DocEntity> o = r.size() == 1 ? r[0] : nullptr;
      {
        std::lock_guard<std::mutex> lock(mu);
        deliveries += 1;
        last[i] = o;
      }
      if (o != nullptr && o->size() == final_size(i)) arrivals.arrive(i);
    };
    auto on_object = [&, i](std::shared_ptr<const DocEntity> o) {
      {
        std::lock_guard<std::mutex> lock(mu);
        deliveries += 1;
        last[kFollowed + i] = o;
      }
      if (o != nullptr && o->size() == final_size(i)) arrivals.arrive(kFollowed + i);
    };
    auto result_token = ws->subscribe(results[i], on_result);
    check(result_token.status(), "subscribe result");
    tokens.push_back(std::move(*result_token));
    auto object_token = ws->subscribe(followed[i], on_object);
    check(object_token.status(), "subscribe object");
    tokens.push_back(std::move(*object_token));
  }
  ws->awaitObservers();

  Stopwatch timer;
  Clock::time_point start = Clock::now();
  std::vector<TransactionHandle> handles;
  for (int round = 1; round <= kRounds; ++round) {
    handles.push_back(ws->performChanges<Doc>([&, round](TransactionContext& txn) -> absl::Status {
      for (const auto& o : followed) {
        auto r = DocChangeRequest::changeOf(*o);
        r.setSize(o->size() + round);
        FLATSTORE_RETURN_IF_ERROR(txn.submit(r).status());
      }
      return absl::OkStatus();
    }));
  }
  for (const TransactionHandle& h : handles) {
    auto done = h.wait();
    check(done.status(), "update");
    expectCount(done->updated, kFollowed, "update");
  }
  double commit_ms = microsSince(start) / 1000;
  arrivals.waitAll();
  double s = timer.seconds();
  std::vector<double> lat = arrivals.latenciesSince(start);

  ws->awaitObservers();
  tokens.clear();
  for (size_t i = 0; i < kFollowed; ++i) {
    auto fresh = ws->get<Doc>(followed[i]->id());
    check(fresh.status(), "get");
    for (size_t subscriber : {i, kFollowed + i}) {
      if (last[subscriber] == nullptr ||
          last[subscriber]->versionstamp() != (*fresh)->versionstamp()) {
        die("observe objects: subscriber " + std::to_string(subscriber) +
            " does not end with the stored version");
      }
    }
  }
  Measurement m = fromLatencies(kFollowed * kRounds, s, std::move(lat));
  m.extra.emplace_back("commit_ms", commit_ms);
  m.extra.emplace_back("deliveries", static_cast<double>(deliveries));
  return m;
}

// ---------------------------------------------------------------------------------------
// commit_idle_subs

constexpr int kIdleResults = 500;
constexpr int kIdleObjects = 500;
constexpr int kIdleCommits = 5000;

Measurement commitWithIdleSubscriptions(const std::string& path, bool subscribe) {
  auto ws = openWorkspace(path);
  flatInsertAll(*ws, docs10k());
  flatInsertAll<Doc0>(*ws, docsForThread(0));
  auto held = flatAll(*ws);
  std::atomic<int64_t> deliveries{0};
  std::vector<SubscriptionToken> tokens;
  if (subscribe) {
    using F0 = Doc0Fields;
    for (int i = 0; i < kIdleResults; ++i) {
      int32_t low = i * 19;  // 0 .. 9481
      auto r = ws->fetch<Doc0>()
                   .where(F0::score >= low && F0::score < low + 200)
                   .orderBy(F0::score.ascending())
                   .all();
      check(r.status(), "fetch Doc0");
      auto token =
          ws->subscribe(*r, [&](const FetchedResult<Doc0>&, const Changeset&) { deliveries += 1; });
      check(token.status(), "subscribe result");
      tokens.push_back(std::move(*token));
    }
    auto objects = ws->fetch<Doc0>().limit(kIdleObjects).all();
    check(objects.status(), "fetch Doc0");
    for (const auto& o : *objects) {
      auto token = ws->subscribe(o, [&](std::shared_ptr<const Doc0Entity>) { deliveries += 1; });
      check(token.status(), "subscribe object");
      tokens.push_back(std::move(*token));
    }
    ws->awaitObservers();
  }

  std::vector<double> lat;
  lat.reserve(kIdleCommits);
  uint64_t first_commit = ws->lastCommitSequence();
  Stopwatch timer;
  for (int i = 0; i < kIdleCommits; ++i) {
    const DocEntity& o = *held[static_cast<size_t>(i) % held.size()];
    auto t0 = Clock::now();
    auto done = ws->performChangesAndWait<Doc>([&](TransactionContext& txn) {
      auto r = DocChangeRequest::changeOf(o);
      r.setSize(o.size() + 1);
      return txn.submit(r).status();
    });
    lat.push_back(microsSince(t0));
    check(done.status(), "update");
    if (done->updated != 1) die("commit_idle_subs: not updated");
  }
  double s = timer.seconds();
  ws->awaitObservers();
  if (deliveries.load() != 0) die("commit_idle_subs: an idle subscription got a delivery");
  Measurement m = fromLatencies(kIdleCommits, s, std::move(lat));
  m.commits = static_cast<int64_t>(ws->lastCommitSequence() - first_commit);
  return m;
}

}  // namespace

void addObserveScenarios(Registry& r) {
  r.scenarios.push_back(
      {"observe_1000x1000_update_10k", {{"flatstore", observeLive}, {"requery", requeryLive}}});
  r.scenarios.push_back({"observe_1000_objects_10k_updates", {{"flatstore", observeObjects}}});
  r.scenarios.push_back(
      {"commit_idle_subs",
       {{"flatstore-0-subs",
         [](const std::string& p) { return commitWithIdleSubscriptions(p, false); }},
        {"flatstore-1000-subs",
         [](const std::string& p) { return commitWithIdleSubscriptions(p, true); }}}});

  // Delivering 1,000 live results after a commit: at least 5x re-running their queries.
  Goal live;
  live.scenario = live.base_scenario = "observe_1000x1000_update_10k";
  live.system = "flatstore";
  live.base_system = "requery";
  live.bound = 5;
  r.goals.push_back(std::move(live));
  // Idle subscriptions on another table cost commits nearly nothing: commits/s without
  // them at most 1.1x commits/s with them.
  Goal idle;
  idle.scenario = idle.base_scenario = "commit_idle_subs";
  idle.system = "flatstore-0-subs";
  idle.base_system = "flatstore-1000-subs";
  idle.bound = 1.1;
  idle.at_least = false;
  r.goals.push_back(std::move(idle));
}

}  // namespace flatstore::bench
