// Helpers of the concurrency tests: every way to declare the test schemas' tables, a
// counter per table, and the fixture with four closure workers. Bounded waits, seeds
// and the base fixture are tests/support's; every wait in these tests is bounded.
#ifndef FLATSTORE_TESTS_CONCURRENCY_CONCURRENCY_UTIL_H_
#define FLATSTORE_TESTS_CONCURRENCY_CONCURRENCY_UTIL_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "docs_flatstore.h"
#include "flatstore/status.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "gtest/gtest.h"
#include "tests/support/random.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"
#include "tests/support/workspace_fixture.h"

namespace flatstore::testing {

using ::flatstore::bench::Doc;
using ::flatstore::bench::DocChangeRequest;
using ::flatstore::bench::DocEntity;
using ::flatstore::test::game::Event;
using ::flatstore::test::game::EventChangeRequest;
using ::flatstore::test::game::EventEntity;
using ::flatstore::test::game::Monster;
using ::flatstore::test::game::MonsterChangeRequest;
using ::flatstore::test::game::MonsterEntity;

// The three tables of the test schemas, as bits of a set.
enum TableBits : unsigned { kMonsterBit = 1, kDocBit = 2, kEventBit = 4, kAllTables = 7 };

inline std::string tableNames(unsigned tables) {
  std::string out;
  if (tables & kMonsterBit) absl::StrAppend(&out, out.empty() ? "" : "+", "Monster");
  if (tables & kDocBit) absl::StrAppend(&out, out.empty() ? "" : "+", "Doc");
  if (tables & kEventBit) absl::StrAppend(&out, out.empty() ? "" : "+", "Event");
  return out;
}

// Every way these tests declare tables: each non-empty subset of {Monster, Doc, Event} in
// every order, and two with a table named twice. The workspace sorts and deduplicates
// the tables, so no declaration order may matter for ordering or deadlock freedom.
inline constexpr int kDeclarations = 17;

// The set of tables `declaration` names.
inline unsigned declaredTables(int declaration) {
  static constexpr unsigned kSets[kDeclarations] = {kMonsterBit,
                                                    kDocBit,
                                                    kEventBit,
                                                    kMonsterBit | kDocBit,
                                                    kMonsterBit | kDocBit,
                                                    kMonsterBit | kEventBit,
                                                    kMonsterBit | kEventBit,
                                                    kDocBit | kEventBit,
                                                    kDocBit | kEventBit,
                                                    kAllTables,
                                                    kAllTables,
                                                    kAllTables,
                                                    kAllTables,
                                                    kAllTables,
                                                    kAllTables,
                                                    kMonsterBit,
                                                    kDocBit | kEventBit};
  return kSets[declaration];
}

// performChanges with the tables of `declaration`, in that declaration's order.
template <class Fn>
TransactionHandle performDeclared(Workspace& ws, int declaration, Fn&& fn,
                                  TransactionOptions options = {}) {
  switch (declaration) {
    case 0:
      return ws.performChanges<Monster>(std::forward<Fn>(fn), std::move(options));
    case 1:
      return ws.performChanges<Doc>(std::forward<Fn>(fn), std::move(options));
    case 2:
      return ws.performChanges<Event>(std::forward<Fn>(fn), std::move(options));
    case 3:
      return ws.performChanges<Monster, Doc>(std::forward<Fn>(fn), std::move(options));
    case 4:
      return ws.performChanges<Doc, Monster>(std::forward<Fn>(fn), std::move(options));
    case 5:
      return ws.performChanges<Monster, Event>(std::forward<Fn>(fn), std::move(options));
    case 6:
      return ws.performChanges<Event, Monster>(std::forward<Fn>(fn), std::move(options));
    case 7:
      return ws.performChanges<Doc, Event>(std::forward<Fn>(fn), std::move(options));
    case 8:
      return ws.performChanges<Event, Doc>(std::forward<Fn>(fn), std::move(options));
    case 9:
      return ws.performChanges<Monster, Doc, Event>(std::forward<Fn>(fn), std::move(options));
    case 10:
      return ws.performChanges<Monster, Event, Doc>(std::forward<Fn>(fn), std::move(options));
    case 11:
      return ws.performChanges<Doc, Monster, Event>(std::forward<Fn>(fn), std::move(options));
    case 12:
      return ws.performChanges<Doc, Event, Monster>(std::forward<Fn>(fn), std::move(options));
    case 13:
      return ws.performChanges<Event, Monster, Doc>(std::forward<Fn>(fn), std::move(options));
    case 14:
      return ws.performChanges<Event, Doc, Monster>(std::forward<Fn>(fn), std::move(options));
    case 15:
      return ws.performChanges<Monster, Monster>(std::forward<Fn>(fn), std::move(options));
    default:
      return ws.performChanges<Doc, Event, Doc>(std::forward<Fn>(fn), std::move(options));
  }
}

// One counter object per table: Monster ("counter", 0).score, Doc "counter".rank and the
// Event of kind "counter" (.at). Closures bump them through changeOf, a read-modify-write
// that loses counts if two closures on one table ever overlap or one misses the
// previous one's commit.
class Counters {
 public:
  static absl::StatusOr<Counters> create(Workspace& ws) {
    auto created =
        ws.performChangesAndWait<Monster, Doc, Event>([](TransactionContext& txn) -> absl::Status {
          auto m = MonsterChangeRequest::creation();
          m.setName("counter").setRealm(0).setScore(0);
          FLATSTORE_RETURN_IF_ERROR(txn.submit(m).status());
          auto d = DocChangeRequest::creation();
          d.setId("counter").setRank(0);
          FLATSTORE_RETURN_IF_ERROR(txn.submit(d).status());
          auto e = EventChangeRequest::creation();
          e.setKind("counter").setAt(0);
          return txn.submit(e).status();
        });
    FLATSTORE_RETURN_IF_ERROR(created.status());
    FLATSTORE_ASSIGN_OR_RETURN(auto event, ws.fetch<Event>()
                                               .where(::flatstore::test::game::EventFields::kind ==
                                                      std::string_view("counter"))
                                               .first());
    if (event == nullptr) return absl::InternalError("the counter event is missing");
    return Counters(event->rowid());
  }

  // Adds one to the counter of every table in `tables`.
  absl::Status bump(TransactionContext& txn, unsigned tables) const {
    if (tables & kMonsterBit) {
      FLATSTORE_ASSIGN_OR_RETURN(auto m, txn.get<Monster>("counter", 0));
      if (m == nullptr) return absl::NotFoundError("no Monster counter");
      auto c = MonsterChangeRequest::changeOf(*m);
      c.setScore(m->score().value_or(0) + 1);
      FLATSTORE_RETURN_IF_ERROR(txn.submit(c).status());
    }
    if (tables & kDocBit) {
      FLATSTORE_ASSIGN_OR_RETURN(auto d, txn.get<Doc>("counter"));
      if (d == nullptr) return absl::NotFoundError("no Doc counter");
      auto c = DocChangeRequest::changeOf(*d);
      c.setRank(d->rank() + 1);
      FLATSTORE_RETURN_IF_ERROR(txn.submit(c).status());
    }
    if (tables & kEventBit) {
      FLATSTORE_ASSIGN_OR_RETURN(auto e, txn.get<Event>(event_id_));
      if (e == nullptr) return absl::NotFoundError("no Event counter");
      auto c = EventChangeRequest::changeOf(*e);
      c.setAt(e->at() + 1);
      FLATSTORE_RETURN_IF_ERROR(txn.submit(c).status());
    }
    return absl::OkStatus();
  }

  struct Values {
    int64_t monster = 0;
    int64_t doc = 0;
    int64_t event = 0;
  };
  // The three counters, read in one snapshot.
  absl::StatusOr<Values> read(Workspace& ws) const {
    Values v;
    FLATSTORE_RETURN_IF_ERROR(ws.snapshot([&](Workspace::Snapshot& s) -> absl::Status {
      FLATSTORE_ASSIGN_OR_RETURN(auto m, s.get<Monster>("counter", 0));
      FLATSTORE_ASSIGN_OR_RETURN(auto d, s.get<Doc>("counter"));
      FLATSTORE_ASSIGN_OR_RETURN(auto e, s.get<Event>(event_id_));
      if (m == nullptr || d == nullptr || e == nullptr) {
        return absl::NotFoundError("a counter is missing");
      }
      v = Values{m->score().value_or(0), d->rank(), e->at()};
      return absl::OkStatus();
    }));
    return v;
  }

 private:
  explicit Counters(int64_t event_id) : event_id_(event_id) {}
  int64_t event_id_;
};

// A fresh workspace in a temporary directory, with four closure workers.
class ConcurrencyFixture : public WorkspaceFixture {
 protected:
  ConcurrencyFixture() : WorkspaceFixture("concurrency.db", {.worker_threads = 4}) {}
};

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_CONCURRENCY_CONCURRENCY_UTIL_H_
