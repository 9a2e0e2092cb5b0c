// Eight processes on one database, as eight application servers sharing it: on
// PostgreSQL (a schema of its own on the server that FLATSTORE_TEST_PG names; skipped
// without one) and, for contrast, on a SQLite file. Of the eight, three increment a
// counter in the Doc table, three one in the Monster table and two both counters in
// one transaction, each increment also creating an entry for the value it wrote. The counters end
// exact, the versionstamps are unique and follow each table's commit order, and this process, a
// ninth client, sees every commit through subscriptions and through changesSince while
// the others write (transactions on disjoint tables commit in parallel, so commits may
// end in another order than their versionstamps).
#include <algorithm>
#include <atomic>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/multiprocess/process_util.h"
#include "tests/support/pg_schema.h"

namespace flatstore::test::game {
namespace {

using ::flatstore::bench::Doc;
using ::flatstore::bench::DocChangeRequest;
using ::flatstore::bench::DocEntity;
using ::flatstore::bench::DocFields;
using ::flatstore::testing::Child;
using ::flatstore::testing::Engine;
using ::flatstore::testing::kBoundedWait;
using ::flatstore::testing::PgTestSchema;
using ::flatstore::testing::readLines;
using ::flatstore::testing::spawnHelper;
using ::flatstore::testing::TempDir;
using ::flatstore::testing::TestDatabase;
using ::testing::IsEmpty;

// What each of the eight processes increments (mp_helper ledger's TABLES): three on
// each table alone, two on both at once.
const char* const kRoles[] = {"doc", "monster", "both", "doc", "monster", "both", "doc", "monster"};
constexpr int kProcesses = static_cast<int>(std::size(kRoles));
// WorkspaceOptions::max_conflict_retries of the processes: the default. After two
// conflicts a closure runs under its tables' locks, where it cannot conflict, so no
// increment may fail however hot the counters.
const char* const kRetries = "default";
constexpr int kIncrements = 60;
constexpr int64_t kTotal = 5 * kIncrements;  // commits per table: 3 alone + 2 on both

// value -> versionstamp of the commit that wrote it, for one table.
using History = std::map<int64_t, Versionstamp>;

// What one client saw of the entries of one table, value -> versionstamp, from one
// source (a subscription or changesSince); the first problem it met, if any.
class Seen {
 public:
  void add(int64_t value, Versionstamp vs, const std::string& source) {
    absl::MutexLock lock(&mu_);
    auto [it, fresh] = entries_.emplace(value, vs);
    if (!fresh && it->second != vs && problem_.empty()) {
      problem_ = absl::StrCat(source, ": entry ", value, " seen at ", it->second.toString(),
                              " and at ", vs.toString());
    }
  }
  void fail(const std::string& problem) {
    absl::MutexLock lock(&mu_);
    if (problem_.empty()) problem_ = problem;
  }
  // Waits until `n` entries were seen; false after `timeout`.
  bool awaitCount(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto full = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return entries_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&full), timeout);
  }
  History entries() const {
    absl::MutexLock lock(&mu_);
    return entries_;
  }
  std::string problem() const {
    absl::MutexLock lock(&mu_);
    return problem_;
  }

 private:
  mutable absl::Mutex mu_;
  History entries_ ABSL_GUARDED_BY(mu_);
  std::string problem_ ABSL_GUARDED_BY(mu_);
};

// The entry value of a Doc ("e<value>"), or -1 for the counter.
int64_t entryOf(const DocEntity& d) {
  std::string id(d.id());
  int64_t value = -1;
  if (id.empty() || id[0] != 'e' || !absl::SimpleAtoi(id.substr(1), &value)) return -1;
  return value;
}
int64_t entryOf(const MonsterEntity& m) { return m.name() == "e" ? m.realm() : -1; }

// A subscription to every object of T: the objects each changeset inserts are recorded,
// so that every entry must pass through one `inserted` (coalesced deliveries included).
template <class T>
SubscriptionToken subscribeAll(Workspace& ws, Seen& seen, const std::string& name) {
  auto initial = ws.fetch<T>().all();
  EXPECT_OK(initial);
  if (!initial.ok()) return SubscriptionToken();
  auto previous = std::make_shared<size_t>(initial->size());
  auto token = ws.subscribe(
      *initial, [&seen, name, previous](const FetchedResult<T>& r, const Changeset& c) {
        if (!c.deleted.empty())
          seen.fail(absl::StrCat(name, ": deletions in an insert-only table"));
        if (*previous + c.inserted.size() != r.size()) {
          seen.fail(absl::StrCat(name, ": ", *previous, " objects + ", c.inserted.size(),
                                 " inserted != ", r.size()));
        }
        *previous = r.size();
        for (size_t i : c.inserted) {
          if (i >= r.size()) {
            seen.fail(absl::StrCat(name, ": inserted index ", i, " of ", r.size()));
            continue;
          }
          int64_t value = entryOf(*r[i]);
          if (value >= 0) seen.add(value, r[i]->versionstamp(), name);
        }
      });
  EXPECT_OK(token);
  return token.ok() ? std::move(*token) : SubscriptionToken();
}

// One changesSince step of T from `*since`: records the entries, advances `*since`.
template <class T>
void readChanges(Workspace& ws, Versionstamp* since, Seen& seen, const std::string& name) {
  auto changes = ws.changesSince<T>(*since);
  if (!changes.ok()) {
    seen.fail(absl::StrCat(name, ": ", changes.status().ToString()));
    return;
  }
  if (!changes->deleted.empty()) seen.fail(absl::StrCat(name, ": deletions listed"));
  for (const auto& object : changes->changed) {
    if (object->versionstamp() <= *since) {
      seen.fail(absl::StrCat(name, ": ", object->versionstamp().toString(), " listed since ",
                             since->toString()));
    }
    int64_t value = entryOf(*object);
    if (value >= 0) seen.add(value, object->versionstamp(), name);
  }
  if (changes->through < *since) {
    seen.fail(absl::StrCat(name, ": through went back from ", since->toString(), " to ",
                           changes->through.toString()));
  }
  *since = changes->through;
}

// What the processes reported, per table ("doc", "monster"): value -> versionstamp,
// each value once, each process's versionstamps rising; `commits` gets the versionstamp
// of every commit.
std::map<std::string, History> reported(const std::vector<std::string>& outputs,
                                        std::set<Versionstamp>* commits) {
  std::map<std::string, History> tables;
  for (const std::string& path : outputs) {
    std::vector<std::string> lines = readLines(path);
    EXPECT_EQ(lines.size(), static_cast<size_t>(kIncrements)) << path;
    Versionstamp previous;
    for (const std::string& line : lines) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      EXPECT_TRUE(parts.size() == 3 || parts.size() == 5) << line;
      auto vs = Versionstamp::parse(parts[0]);
      EXPECT_OK(vs);
      if (!vs.ok()) continue;
      EXPECT_GT(*vs, previous) << path << ": a process's versionstamps must rise";
      previous = *vs;
      EXPECT_TRUE(commits->insert(*vs).second) << "versionstamp " << vs->toString() << " twice";
      for (size_t i = 1; i + 1 < parts.size(); i += 2) {
        int64_t value = 0;
        EXPECT_TRUE(absl::SimpleAtoi(parts[i + 1], &value)) << line;
        EXPECT_TRUE(tables[parts[i]].emplace(value, *vs).second)
            << parts[i] << " value " << value << " written twice";
      }
    }
  }
  return tables;
}

// Values 1..kTotal, one serial history: each value written once and none skipped (so no
// two transactions read the same counter), and in value order the versionstamps rise:
// the later of two commits on one table has the larger versionstamp.
void expectSerial(const History& history, const std::string& table) {
  EXPECT_EQ(history.size(), static_cast<size_t>(kTotal)) << table << ": commits";
  Versionstamp previous;
  int64_t expected = 1;
  for (const auto& [value, vs] : history) {
    EXPECT_EQ(value, expected++) << table << ": values skipped before " << value;
    EXPECT_GT(vs, previous) << table << ": value " << value << " committed at " << vs.toString()
                            << ", not after the value before it at " << previous.toString();
    previous = vs;
  }
}

// What `seen` lacks or dates differently from `want`, the first few; empty when equal.
std::string difference(const History& seen, const History& want) {
  std::vector<std::string> out;
  for (const auto& [value, vs] : want) {
    auto it = seen.find(value);
    if (it == seen.end()) {
      out.push_back(absl::StrCat("missing ", value, " (", vs.toString(), ")"));
    } else if (it->second != vs) {
      out.push_back(absl::StrCat(value, " at ", it->second.toString(), ", not ", vs.toString()));
    }
  }
  for (const auto& [value, vs] : seen) {
    if (!want.contains(value)) out.push_back(absl::StrCat("unknown ", value));
  }
  if (out.size() > 10) out.resize(10);
  return absl::StrJoin(out, "; ");
}

class ManyClients : public ::testing::TestWithParam<Engine> {};

INSTANTIATE_TEST_SUITE_P(Engines, ManyClients,
                         ::testing::Values(Engine::kSqlite, Engine::kPostgres),
                         ::flatstore::testing::engineName);

TEST_P(ManyClients, EightProcessesCountExactlyAndEveryCommitReachesTheOthers) {
  TestDatabase db(GetParam(), "clients");
  if (!db.available()) GTEST_SKIP() << PgTestSchema::kSkipReason;
  ASSERT_TRUE(db.ok());
  TempDir dir;
  Seen doc_subscribed, doc_read, monster_subscribed, monster_read;
  std::vector<std::string> outputs;
  Versionstamp doc_since, monster_since;
  {
    auto opened = Workspace::open(db.location());
    ASSERT_OK(opened);
    Workspace& ws = **opened;
    auto seeded = ws.performChangesAndWait<Doc, Monster>([](TransactionContext& txn) {
      auto doc = DocChangeRequest::creation();
      doc.setId("counter").setRank(0);
      EXPECT_OK(txn.submit(doc));
      auto m = MonsterChangeRequest::creation();
      m.setName("counter").setRealm(0).setHp(0);
      return txn.submit(m).status();
    });
    ASSERT_OK(seeded);
    doc_since = monster_since = seeded->versionstamp;

    SubscriptionToken doc_token = subscribeAll<Doc>(ws, doc_subscribed, "Doc subscription");
    SubscriptionToken monster_token =
        subscribeAll<Monster>(ws, monster_subscribed, "Monster subscription");

    std::vector<std::unique_ptr<Child>> children;
    for (int p = 0; p < kProcesses; ++p) {
      outputs.push_back(dir.file(absl::StrCat("ledger-", p, ".txt")));
      auto child = spawnHelper({"ledger", db.location(), std::to_string(kIncrements),
                                outputs.back(), kRoles[p], kRetries});
      ASSERT_OK(child);
      children.push_back(std::move(*child));
    }

    // The reader follows both tables' change logs while the processes write, then once
    // more after they finished: an entry skipped on the way is never listed again.
    std::atomic<bool> writing{true};
    std::thread reader([&] {
      while (writing.load()) {
        readChanges<Doc>(ws, &doc_since, doc_read, "Doc changesSince");
        readChanges<Monster>(ws, &monster_since, monster_read, "Monster changesSince");
      }
    });
    for (auto& c : children) EXPECT_OK(c->send("go"));
    for (auto& c : children) {
      auto done = c->readLine();
      EXPECT_OK(done);
      EXPECT_TRUE(absl::StartsWith(done.value_or(""), "done 0 "))
          << "process " << c->pid() << " had failed transactions: " << done.value_or("");
      EXPECT_OK(c->waitSuccess());
    }
    writing.store(false);
    reader.join();
    readChanges<Doc>(ws, &doc_since, doc_read, "Doc changesSince");
    readChanges<Monster>(ws, &monster_since, monster_read, "Monster changesSince");

    // Counters exact.
    auto doc_counter = ws.get<Doc>("counter");
    ASSERT_OK(doc_counter);
    EXPECT_EQ((*doc_counter)->rank(), kTotal);
    auto monster_counter = ws.get<Monster>("counter", 0);
    ASSERT_OK(monster_counter);
    EXPECT_EQ((*monster_counter)->hp(), kTotal);
    EXPECT_EQ(*ws.fetch<Doc>().where(DocFields::id != "counter").count(), kTotal);
    EXPECT_EQ(*ws.fetch<Monster>().where(MonsterFields::name == "e").count(), kTotal);

    // Subscriptions: every entry committed passed through a changeset's inserts, in
    // bounded time (the comparison with what the processes reported comes below).
    const size_t doc_entries = static_cast<size_t>(std::max(0, (*doc_counter)->rank()));
    const size_t monster_entries = static_cast<size_t>(std::max(0, int{(*monster_counter)->hp()}));
    EXPECT_TRUE(doc_subscribed.awaitCount(doc_entries, kBoundedWait))
        << doc_subscribed.entries().size() << " of " << doc_entries;
    EXPECT_TRUE(monster_subscribed.awaitCount(monster_entries, kBoundedWait))
        << monster_subscribed.entries().size() << " of " << monster_entries;
    doc_token.cancel();
    monster_token.cancel();

    // The latest versionstamp and the readers' `through` cover the last commits.
    const Versionstamp last =
        std::max((*doc_counter)->versionstamp(), (*monster_counter)->versionstamp());
    auto latest = ws.latestVersionstamp();
    ASSERT_OK(latest);
    EXPECT_GE(*latest, last);
    EXPECT_GE(doc_since, last);
    EXPECT_GE(monster_since, last);
  }

  std::set<Versionstamp> all_vs;
  std::map<std::string, History> tables = reported(outputs, &all_vs);
  const History& docs = tables["doc"];
  const History& monsters = tables["monster"];
  expectSerial(docs, "Doc");
  expectSerial(monsters, "Monster");
  EXPECT_EQ(all_vs.size(), static_cast<size_t>(kProcesses * kIncrements))
      << "every commit has a versionstamp of its own";

  for (const Seen* seen : {&doc_subscribed, &doc_read, &monster_subscribed, &monster_read}) {
    EXPECT_THAT(seen->problem(), IsEmpty());
  }
  // Every commit seen, at the versionstamp its process was told.
  EXPECT_EQ(difference(doc_read.entries(), docs), "") << "Doc changesSince";
  EXPECT_EQ(difference(monster_read.entries(), monsters), "") << "Monster changesSince";
  EXPECT_EQ(difference(doc_subscribed.entries(), docs), "") << "Doc subscription";
  EXPECT_EQ(difference(monster_subscribed.entries(), monsters), "") << "Monster subscription";
}

}  // namespace
}  // namespace flatstore::test::game
