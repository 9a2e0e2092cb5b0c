// A PostgreSQL server restarted while two clients write through the public API. The
// test starts a private server of its own (scripts/pg-cluster.sh, the same one CI runs
// the PostgreSQL tests against), so that it may stop it; it runs where those tests run
// (FLATSTORE_TEST_PG set, which CI does only where the server is installed) and skips
// elsewhere.
//
// What a restart must leave, as the guide's "Faults" promise it: every handle completes
// (none waits forever on a connection that is gone); a transaction that fails, fails
// with Unavailable and nothing of it is written (each one writes several objects, so
// part of one would show); every transaction whose handle said OK is in the database; the
// workspaces commit again once the server is back; and a subscription that follows both
// clients' commits either keeps delivering through the restart or ends with an error,
// never goes quiet while still claiming to be active.
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gtest/gtest.h"
#include "tests/support/pg_schema.h"
#include "tests/support/status_macros.h"
#include "tests/support/wait.h"

#ifndef FLATSTORE_PG_CLUSTER_SCRIPT
#error \
    "FLATSTORE_PG_CLUSTER_SCRIPT names scripts/pg-cluster.sh (set by tests/storage/CMakeLists.txt)"
#endif

namespace flatstore::test::game {
namespace {

using ::flatstore::bench::Doc;
using ::flatstore::bench::DocChangeRequest;
using ::flatstore::testing::failStuck;
using ::flatstore::testing::kBoundedWait;
using ::flatstore::testing::PgTestSchema;
using ::flatstore::testing::waitAll;

// A private server in a temporary folder, run by scripts/pg-cluster.sh. stop() and
// start() restart the same server: the port is chosen at the first start and kept, so
// the URI stays the same. The destructor stops it and removes the folder, whatever the
// test did; so does abandon(), for a test about to end the process (failStuck).
class PgServer {
 public:
  PgServer() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/flatstore-restart.XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp " << pattern << " failed";
      return;
    }
    dir_ = pattern;
    // Run as root, the script runs the server as its own user, who must reach the folder.
    ::chmod(dir_.c_str(), 0755);
  }
  ~PgServer() { abandon(); }
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // Starts the server (creating it the first time) and returns its URI.
  absl::StatusOr<std::string> start() {
    absl::MutexLock lock(&mu_);
    if (dir_.empty()) return absl::FailedPreconditionError("no folder for the server");
    // Even a start that failed may have left a server running.
    started_ = true;
    return script("start");
  }

  absl::Status stop() {
    absl::MutexLock lock(&mu_);
    return script("stop").status();
  }

  // Stops the server if this test started one and removes its folder. Idempotent.
  void abandon() {
    absl::MutexLock lock(&mu_);
    if (dir_.empty()) return;
    if (started_) {
      absl::Status stopped = script("stop").status();
      EXPECT_TRUE(stopped.ok()) << stopped;
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }

 private:
  // Runs `pg-cluster.sh command DIR` and returns what it printed (its stderr goes to the
  // test's); an error naming the command when it fails.
  absl::StatusOr<std::string> script(const char* command) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string line =
        absl::StrCat("bash '", FLATSTORE_PG_CLUSTER_SCRIPT, "' ", command, " '", dir_, "'");
    FILE* pipe = ::popen(line.c_str(), "r");
    if (pipe == nullptr) return absl::InternalError(absl::StrCat("cannot run ", line));
    std::string out;
    char buf[512];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
    const int status = ::pclose(pipe);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return absl::UnavailableError(absl::StrCat(line, " failed (status ", status, "): ", out));
    }
    return std::string(absl::StripAsciiWhitespace(out));
  }

  absl::Mutex mu_;
  std::string dir_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
};

// Where the server stood when a transaction was submitted.
enum Phase { kBefore = 0, kRestarting = 1, kAfter = 2 };
constexpr const char* kPhaseNames[] = {"before the restart", "during the restart",
                                       "after the restart"};

// One submitted transaction and how its handle completed.
struct Attempt {
  std::string key;
  int objects;  // how many it writes
  Phase phase;
  absl::Status status;
};

// Each writer thread commits one transaction at a time whose objects are all named by
// its key: a Monster and a Doc (threads of kind kPair), or kEventsPerTransaction Events
// (kind kEvents: on a table of their own, so that a client commits on two connections at
// once, and longer to write, so that the server is more likely to stop in the middle).
enum class Kind { kPair, kEvents };
constexpr int kEventsPerTransaction = 50;

int objectsOf(Kind kind) { return kind == Kind::kPair ? 2 : kEventsPerTransaction; }

std::string eventKind(const std::string& key, int n) { return absl::StrCat(key, "#", n); }

TransactionHandle submit(Workspace& ws, Kind kind, const std::string& key, int32_t thread) {
  if (kind == Kind::kPair) {
    return ws.performChanges<Monster, Doc>([key, thread](TransactionContext& txn) -> absl::Status {
      auto m = MonsterChangeRequest::creation();
      m.setName(key).setRealm(thread).setHp(1);
      FLATSTORE_RETURN_IF_ERROR(txn.submit(m).status());
      auto d = DocChangeRequest::creation();
      d.setId(key).setScore(thread);
      return txn.submit(d).status();
    });
  }
  return ws.performChanges<Event>([key](TransactionContext& txn) -> absl::Status {
    for (int n = 1; n <= kEventsPerTransaction; ++n) {
      auto e = EventChangeRequest::creation();
      e.setKind(eventKind(key, n)).setAt(n);
      FLATSTORE_RETURN_IF_ERROR(txn.submit(e).status());
    }
    return absl::OkStatus();
  });
}

// The ids of the Docs a subscription delivered last, and how many deliveries came in
// each phase.
class DocFollower {
 public:
  void deliver(const FetchedResult<Doc>& result) {
    std::set<std::string> ids;
    for (const auto& d : result) ids.insert(std::string(d->id()));
    absl::MutexLock lock(&mu_);
    ids_ = std::move(ids);
    deliveries_[phase_] += 1;
  }
  void setPhase(Phase p) {
    absl::MutexLock lock(&mu_);
    phase_ = p;
  }
  // Waits until the latest delivery holds exactly `expected`, while `token` stays
  // active, at most `timeout`. The subscription's end is not signalled to this class, so
  // the wait looks at the token every 100 ms.
  bool awaitIds(const std::set<std::string>& expected, const SubscriptionToken& token,
                absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock lock(&mu_);
    auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ids_ == expected; };
    while (!mu_.AwaitWithTimeout(absl::Condition(&arrived), absl::Milliseconds(100))) {
      if (!token.active() || absl::Now() >= deadline) return false;
    }
    return true;
  }
  std::set<std::string> ids() const {
    absl::MutexLock lock(&mu_);
    return ids_;
  }
  int deliveries(Phase p) const {
    absl::MutexLock lock(&mu_);
    return deliveries_[p];
  }

 private:
  mutable absl::Mutex mu_;
  std::set<std::string> ids_ ABSL_GUARDED_BY(mu_);
  Phase phase_ ABSL_GUARDED_BY(mu_) = kBefore;
  int deliveries_[3] ABSL_GUARDED_BY(mu_) = {0, 0, 0};
};

// The writer threads and what their handles returned. The destructor stops and joins
// them, so an assertion that ends the test early leaves no thread on a workspace that is
// going away.
class Writers {
 public:
  struct Thread {
    Workspace* ws;
    Kind kind;
  };

  // A handle that does not complete within kBoundedWait ends the process (its thread
  // still uses the workspace), after `server` is stopped.
  Writers(std::vector<Thread> threads, PgServer* server) : server_(server) {
    {
      absl::MutexLock lock(&mu_);
      ok_after_.assign(threads.size(), 0);
    }
    for (size_t t = 0; t < threads.size(); ++t) {
      threads_.emplace_back([this, t, spec = threads[t]] { loop(static_cast<int32_t>(t), spec); });
    }
  }
  ~Writers() { stop(); }

  void setPhase(Phase p) {
    absl::MutexLock lock(&mu_);
    phase_ = p;
  }

  // Waits until `n` transactions committed in all, at most kBoundedWait.
  bool awaitCommits(int n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ok_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kBoundedWait);
  }

  // Waits until every thread committed `n` transactions submitted after the restart.
  bool awaitCommitsAfterRestart(int n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (int c : ok_after_) {
        if (c < n) return false;
      }
      return true;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kBoundedWait);
  }

  void stop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  std::vector<Attempt> attempts() const {
    absl::MutexLock lock(&mu_);
    return attempts_;
  }

 private:
  void loop(int32_t thread, Thread spec) {
    for (int i = 0;; ++i) {
      Phase phase;
      {
        absl::MutexLock lock(&mu_);
        if (stop_) return;
        phase = phase_;
      }
      std::string key = absl::StrCat("w", thread, "-", i);
      TransactionHandle handle = submit(*spec.ws, spec.kind, key, thread);
      if (!waitAll({handle}, kBoundedWait)) {
        server_->abandon();
        failStuck(absl::StrCat("the handle of transaction ", key, " (submitted ",
                               kPhaseNames[phase], ") did not complete within ",
                               absl::FormatDuration(kBoundedWait)));
      }
      absl::Status status = handle.wait().status();
      absl::MutexLock lock(&mu_);
      if (status.ok()) {
        ok_ += 1;
        if (phase == kAfter) ok_after_[static_cast<size_t>(thread)] += 1;
      }
      attempts_.push_back({std::move(key), objectsOf(spec.kind), phase, std::move(status)});
    }
  }

  PgServer* const server_;
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  Phase phase_ ABSL_GUARDED_BY(mu_) = kBefore;
  int ok_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int> ok_after_ ABSL_GUARDED_BY(mu_);
  std::vector<Attempt> attempts_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

// How many of each transaction's objects the database holds, by key.
std::map<std::string, int> objectsByKey(Workspace& ws) {
  std::map<std::string, int> found;
  auto monsters = ws.fetch<Monster>().all();
  EXPECT_OK(monsters);
  if (monsters.ok()) {
    for (const auto& m : *monsters) found[std::string(m->name())] += 1;
  }
  auto docs = ws.fetch<Doc>().all();
  EXPECT_OK(docs);
  if (docs.ok()) {
    for (const auto& d : *docs) found[std::string(d->id())] += 1;
  }
  auto events = ws.fetch<Event>().all();
  EXPECT_OK(events);
  if (events.ok()) {
    for (const auto& e : *events) {
      std::string kind(e->kind());
      found[kind.substr(0, kind.rfind('#'))] += 1;
    }
  }
  return found;
}

TEST(PgRestartTest, EveryAcknowledgedCommitSurvivesARestartAndNoHandleHangs) {
  if (PgTestSchema::serverUri() == nullptr) GTEST_SKIP() << PgTestSchema::kSkipReason;
  // Declared first, so it goes last: the workspaces close while it still runs.
  PgServer server;
  absl::StatusOr<std::string> uri = server.start();
  ASSERT_OK(uri);

  // Long enough to ride out the restart; a transaction waiting for a connection then
  // waits for the server instead of failing.
  const WorkspaceOptions options{.reconnect_limit = absl::Seconds(20)};
  auto a = Workspace::open(*uri, options);
  ASSERT_OK(a);
  auto b = Workspace::open(*uri, options);
  ASSERT_OK(b);

  // Workspace a follows every Doc: its own commits, and b's through the change feed.
  DocFollower follower;
  auto initial = (*a)->fetch<Doc>().all();
  ASSERT_OK(initial);
  auto token = (*a)->subscribe(*initial, [&follower](const FetchedResult<Doc>& r,
                                                     const Changeset&) { follower.deliver(r); });
  ASSERT_OK(token);

  constexpr int kBeforeRestart = 100;    // commits in all before the server stops
  constexpr int kAfterRestartEach = 30;  // commits per thread once it is back
  absl::Time restart_begin;
  absl::Duration restart_took;
  std::vector<Attempt> attempts;
  {
    Writers writers({{a->get(), Kind::kPair},
                     {a->get(), Kind::kEvents},
                     {b->get(), Kind::kPair},
                     {b->get(), Kind::kEvents}},
                    &server);
    ASSERT_TRUE(writers.awaitCommits(kBeforeRestart))
        << "fewer than " << kBeforeRestart << " commits within " << kBoundedWait;

    writers.setPhase(kRestarting);
    follower.setPhase(kRestarting);
    restart_begin = absl::Now();
    ASSERT_OK(server.stop());
    absl::StatusOr<std::string> again = server.start();
    ASSERT_OK(again);
    restart_took = absl::Now() - restart_begin;
    ASSERT_EQ(*again, *uri) << "the restarted server has another URI";
    writers.setPhase(kAfter);
    follower.setPhase(kAfter);

    EXPECT_TRUE(writers.awaitCommitsAfterRestart(kAfterRestartEach))
        << "the workspaces do not commit again after the restart: fewer than " << kAfterRestartEach
        << " commits per thread within " << kBoundedWait;
    writers.stop();
    attempts = writers.attempts();
  }
  std::cout << "server stopped and started again in " << restart_took << "\n";

  // What the handles said, by phase: failures must be Unavailable.
  std::map<std::pair<Phase, std::string>, int> outcomes;
  std::set<std::string> failure_messages;
  for (const Attempt& at : attempts) {
    outcomes[{at.phase, at.status.ok() ? "OK" : absl::StatusCodeToString(at.status.code())}] += 1;
    if (!at.status.ok()) {
      failure_messages.insert(at.status.ToString());
      EXPECT_EQ(at.status.code(), absl::StatusCode::kUnavailable)
          << "transaction " << at.key << " (" << kPhaseNames[at.phase] << "): " << at.status;
    }
  }
  for (const auto& [what, n] : outcomes) {
    std::cout << kPhaseNames[what.first] << ": " << n << " " << what.second << "\n";
  }
  for (const std::string& m : failure_messages) std::cout << "failure: " << m << "\n";

  // A fresh client reads what the server holds: every object of every acknowledged
  // transaction, none of a failed one.
  auto check = Workspace::open(*uri, options);
  ASSERT_OK(check);
  std::map<std::string, int> found = objectsByKey(**check);
  std::set<std::string> submitted;
  int missing = 0, partial = 0, written_after_failure = 0;
  for (const Attempt& at : attempts) {
    submitted.insert(at.key);
    auto it = found.find(at.key);
    const int n = it == found.end() ? 0 : it->second;
    const std::string of = absl::StrCat(n, " of its ", at.objects, " objects are there");
    if (n > 0 && n < at.objects) {
      partial += 1;
      ADD_FAILURE() << "transaction " << at.key << " (" << kPhaseNames[at.phase] << ", "
                    << at.status << ") is partly written: " << of;
    } else if (at.status.ok() && n != at.objects) {
      missing += 1;
      ADD_FAILURE() << "transaction " << at.key << " (" << kPhaseNames[at.phase]
                    << ") was acknowledged, but " << of;
    } else if (!at.status.ok() && n != 0) {
      written_after_failure += 1;
      ADD_FAILURE() << "transaction " << at.key << " (" << kPhaseNames[at.phase] << ") failed with "
                    << at.status << ", but " << of;
    }
  }
  for (const auto& [key, n] : found) {
    EXPECT_TRUE(submitted.contains(key)) << "objects of an unknown transaction: " << key;
  }
  std::cout << attempts.size() << " transactions, " << found.size() << " written; " << missing
            << " acknowledged and missing, " << partial << " partly written, "
            << written_after_failure << " written although they failed\n";

  // The subscription either follows every Doc, its client's and the other's, or has
  // ended with an error; active but stale would be a subscription gone quiet.
  std::set<std::string> docs;
  auto all_docs = (*check)->fetch<Doc>().all();
  ASSERT_OK(all_docs);
  for (const auto& d : *all_docs) docs.insert(std::string(d->id()));
  (*a)->awaitObservers();
  const bool followed = follower.awaitIds(docs, *token, kBoundedWait);
  const std::set<std::string> delivered = follower.ids();
  // What the subscriber's watcher of other clients' commits met on the way.
  const WatcherMetrics watcher = (*a)->metrics().watcher;
  std::cout << "watcher of other clients' commits: " << watcher.errors << " errors"
            << (watcher.errors > 0 ? ", the last: " : "") << watcher.last_error << "\n";
  std::cout << "subscription: " << follower.deliveries(kBefore) << " deliveries before, "
            << follower.deliveries(kRestarting) << " during, " << follower.deliveries(kAfter)
            << " after the restart; " << (token->active() ? "active" : "ended") << " ("
            << token->status() << "), last result " << delivered.size() << " of " << docs.size()
            << " Docs\n";
  if (token->active()) {
    // Which client wrote a Doc the result lacks (threads 0 and 1 write through a, the
    // subscriber; 2 and 3 through b), and when.
    std::map<std::string, const Attempt*> by_key;
    for (const Attempt& at : attempts) by_key[at.key] = &at;
    std::vector<std::string> lacking, extra;
    for (const std::string& id : docs) {
      if (!delivered.contains(id)) {
        const Attempt* at = by_key[id];
        lacking.push_back(absl::StrCat(id, " (", at != nullptr ? kPhaseNames[at->phase] : "?", ", ",
                                       at != nullptr ? at->status.ToString() : "?", ")"));
      }
    }
    for (const std::string& id : delivered) {
      if (!docs.contains(id)) extra.push_back(id);
    }
    EXPECT_TRUE(followed) << "the subscription is active but its result stopped at "
                          << delivered.size() << " of the " << docs.size()
                          << " Docs; it lacks: " << absl::StrJoin(lacking, ", ")
                          << "; it holds Docs that are not there: " << absl::StrJoin(extra, ", ");
  } else {
    EXPECT_FALSE(token->status().ok()) << "the subscription ended without an error";
  }
}

}  // namespace
}  // namespace flatstore::test::game
