// Group commit and failing closures: a closure that fails in the writer (a unique or
// primary-key violation) or in its own code (an error, an exception, an abort) fails
// alone, writes nothing, and releases its tables; everything around it lands.
#include <atomic>
#include <bit>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/concurrency/concurrency_util.h"

namespace flatstore::testing {
namespace {

using ::flatstore::test::game::EventFields;
using ::flatstore::test::game::MonsterFields;
using ::testing::HasSubstr;

absl::Status createMonster(TransactionContext& txn, std::string_view name, int realm,
                           std::string_view email) {
  auto m = MonsterChangeRequest::creation();
  m.setName(name).setRealm(realm).setHp(10);
  if (!email.empty()) m.setEmail(email);
  return txn.submit(m).status();
}
absl::Status createDoc(TransactionContext& txn, std::string_view id, int32_t score) {
  auto d = DocChangeRequest::creation();
  d.setId(id).setScore(score);
  return txn.submit(d).status();
}
absl::Status createEvent(TransactionContext& txn, std::string_view kind, int64_t at) {
  auto e = EventChangeRequest::creation();
  e.setKind(kind).setAt(at);
  return txn.submit(e).status();
}

absl::StatusOr<int64_t> eventsOfKind(Workspace& ws, std::string_view kind) {
  return ws.fetch<Event>().where(EventFields::kind == kind).count();
}

class GroupCommitTest : public ConcurrencyFixture {};

// A closure holding all three tables lets a backlog form behind it on every table; once
// it is released the backlog drains through the writer in groups. Among the backlog four closures
// fail in different ways, each with more changes than the failing one: each must fail with
// AlreadyExists and leave nothing behind, and every other closure must land exactly.
TEST_F(GroupCommitTest, OnlyTheViolatingClosureFailsAndLeavesNothing) {
  constexpr int kBacklog = 30;
  ASSERT_OK(ws_->performChangesAndWait<Monster>([](TransactionContext& txn) -> absl::Status {
    FLATSTORE_RETURN_IF_ERROR(createMonster(txn, "holder", 1, "taken@x"));
    return createMonster(txn, "renamer", 1, "renamer@x");
  }));

  absl::Notification gate;
  auto gate_handle =
      ws_->performChanges<Monster, Doc, Event>([&](TransactionContext&) -> absl::Status {
        if (!gate.WaitForNotificationWithTimeout(kBoundedWait)) {
          return absl::DeadlineExceededError("the gate was never opened");
        }
        return absl::OkStatus();
      });

  struct Submitted {
    TransactionHandle handle;
    unsigned tables;
    std::string name;
    // For a closure that must fail: fragments of its AlreadyExists message.
    std::vector<std::string> failure;
  };
  std::vector<Submitted> submitted;
  for (int i = 0; i < kBacklog; ++i) {
    std::string m = absl::StrCat("m", i);
    submitted.push_back({ws_->performChanges<Monster>([m](TransactionContext& txn) {
                           return createMonster(txn, m, 1, absl::StrCat(m, "@x"));
                         }),
                         kMonsterBit,
                         m,
                         {}});
    std::string d = absl::StrCat("d", i);
    submitted.push_back(
        {ws_->performChanges<Doc>([d, i](TransactionContext& txn) { return createDoc(txn, d, i); }),
         kDocBit,
         d,
         {}});
    std::string e = absl::StrCat("e", i);
    submitted.push_back({ws_->performChanges<Event>(
                             [e, i](TransactionContext& txn) { return createEvent(txn, e, i); }),
                         kEventBit,
                         e,
                         {}});
    if (i == 5) {
      // A unique violation found by the writer, after two good changes of the closure.
      submitted.push_back(
          {ws_->performChanges<Monster, Doc>([](TransactionContext& txn) -> absl::Status {
             FLATSTORE_RETURN_IF_ERROR(createDoc(txn, "bad-doc", -1));
             FLATSTORE_RETURN_IF_ERROR(createMonster(txn, "bad-companion", 1, "companion@x"));
             return createMonster(txn, "dup", 1, "taken@x");
           }),
           kMonsterBit | kDocBit,
           "unique violation on insert",
           {"email", "\"taken@x\""}});
    }
    if (i == 12) {
      // A unique violation by an update, after an insert.
      submitted.push_back(
          {ws_->performChanges<Monster>([](TransactionContext& txn) -> absl::Status {
             FLATSTORE_RETURN_IF_ERROR(createMonster(txn, "extra", 1, "extra@x"));
             FLATSTORE_ASSIGN_OR_RETURN(auto renamer, txn.get<Monster>("renamer", 1));
             if (renamer == nullptr) return absl::NotFoundError("no renamer");
             auto change = MonsterChangeRequest::changeOf(*renamer);
             change.setEmail("taken@x").setHp(99);
             return txn.submit(change).status();
           }),
           kMonsterBit,
           "unique violation on update",
           {"email", "\"taken@x\""}});
    }
    if (i == 20) {
      // A primary-key violation: found by submit, which the closure returns.
      submitted.push_back(
          {ws_->performChanges<Doc, Monster>([](TransactionContext& txn) -> absl::Status {
             FLATSTORE_RETURN_IF_ERROR(createDoc(txn, "pk-doc", -1));
             return createMonster(txn, "holder", 1, "");
           }),
           kMonsterBit | kDocBit,
           "primary-key violation",
           {"(\"holder\", 1)", "already exists"}});
    }
    if (i == 25) {
      // A unique violation between two changes of the same closure.
      submitted.push_back(
          {ws_->performChanges<Event, Monster>([](TransactionContext& txn) -> absl::Status {
             FLATSTORE_RETURN_IF_ERROR(createEvent(txn, "bad-event", -1));
             FLATSTORE_RETURN_IF_ERROR(createMonster(txn, "twin1", 1, "twin@x"));
             return createMonster(txn, "twin2", 1, "twin@x");
           }),
           kMonsterBit | kEventBit,
           "unique violation inside one closure",
           {"email", "\"twin@x\""}});
    }
  }
  gate.Notify();
  std::vector<TransactionHandle> handles = {gate_handle};
  for (const Submitted& s : submitted) handles.push_back(s.handle);
  waitAllOrDie(handles, "the backlog");
  ASSERT_OK(gate_handle.wait());

  // Commit sequence -> the tables of the closures committed in that group.
  std::map<uint64_t, std::vector<unsigned>> groups;
  std::set<Versionstamp> stamps;
  for (const Submitted& s : submitted) {
    auto r = s.handle.wait();
    if (s.failure.empty()) {
      ASSERT_TRUE(r.ok()) << s.name << ": " << r.status();
      EXPECT_EQ(r->inserted, 1) << s.name;
      EXPECT_TRUE(stamps.insert(r->versionstamp).second) << s.name << " shares a versionstamp";
      groups[r->versionstamp.commitSequence()].push_back(s.tables);
    } else {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists)
          << s.name << ": " << r.status();
      for (const std::string& f : s.failure) {
        EXPECT_THAT(std::string(r.status().message()), HasSubstr(f)) << s.name;
      }
    }
  }
  // Closures on one table commit in the order they were submitted. A group may hold
  // several closures on one table: the next one runs once the previous one is in the
  // writer's mailbox (pipelining), and the group applies them in that order.
  int shared_groups = 0;
  int pipelined = 0;
  for (const auto& [seq, tables] : groups) {
    unsigned seen = 0;
    for (unsigned t : tables) {
      if ((seen & t) != 0) ++pipelined;
      seen |= t;
    }
    if (tables.size() > 1) ++shared_groups;
  }
  for (unsigned table : {kMonsterBit, kDocBit, kEventBit}) {
    std::optional<Versionstamp> last;
    std::string last_name;
    for (const Submitted& s : submitted) {
      if ((s.tables & table) == 0 || !s.failure.empty()) continue;
      Versionstamp vs = s.handle.wait()->versionstamp;
      if (last.has_value()) {
        EXPECT_LT(*last, vs) << s.name << " committed before " << last_name
                             << ", submitted earlier";
      }
      last = vs;
      last_name = s.name;
    }
  }
  RecordProperty("groups_with_several_closures", shared_groups);
  RecordProperty("closures_sharing_a_table_in_a_group", pipelined);

  EXPECT_EQ(*ws_->fetch<Monster>().count(), 2 + kBacklog);
  EXPECT_EQ(*ws_->fetch<Doc>().count(), kBacklog);
  EXPECT_EQ(*ws_->fetch<Event>().count(), kBacklog);
  for (const char* absent : {"dup", "bad-companion", "extra", "twin1", "twin2"}) {
    EXPECT_EQ(*ws_->get<Monster>(absent, 1), nullptr) << absent;
  }
  EXPECT_EQ(*ws_->get<Doc>("bad-doc"), nullptr);
  EXPECT_EQ(*ws_->get<Doc>("pk-doc"), nullptr);
  EXPECT_EQ(*eventsOfKind(*ws_, "bad-event"), 0);
  auto renamer = ws_->get<Monster>("renamer", 1);
  ASSERT_OK(renamer);
  ASSERT_NE(*renamer, nullptr);
  EXPECT_EQ((*renamer)->hp(), 10);
  EXPECT_EQ((*renamer)->email(), "renamer@x");
  auto holder = ws_->get<Monster>("holder", 1);
  ASSERT_OK(holder);
  ASSERT_NE(*holder, nullptr);
  EXPECT_EQ((*holder)->email(), "taken@x");
  // The unique index still knows only the committed emails.
  EXPECT_EQ(
      *ws_->fetch<Monster>().where(MonsterFields::email == std::string_view("taken@x")).count(), 1);
  for (int i = 0; i < kBacklog; ++i) {
    auto m = ws_->get<Monster>(absl::StrCat("m", i), 1);
    ASSERT_OK(m);
    ASSERT_NE(*m, nullptr) << "m" << i;
    EXPECT_EQ((*m)->email(), absl::StrCat("m", i, "@x"));
    auto d = ws_->get<Doc>(absl::StrCat("d", i));
    ASSERT_OK(d);
    ASSERT_NE(*d, nullptr) << "d" << i;
    EXPECT_EQ((*d)->score(), i);
    EXPECT_EQ(*eventsOfKind(*ws_, absl::StrCat("e", i)), 1) << "e" << i;
  }
}

// How a closure of the mixed test ends.
enum class Ending {
  kGood,
  kReturnError,
  kThrowStd,
  kThrowOther,
  kAbort,
  kFailedSubmit,
  kUndeclared
};

// Closures that return errors, throw, abort, or fail a submit, running concurrently with
// good ones over random tables. Each first bumps its tables' counters and creates one
// object per table. The failures must report their own error, leave no change behind, and
// release their tables: the good closures after them complete, the counters count exactly
// the good closures, and the objects are exactly the good closures'.
TEST_F(GroupCommitTest, FailingClosuresLeakNoChangesAndReleaseTheirTables) {
  constexpr int kSubmitters = 6;
  constexpr int kPerSubmitter = 30;
  const uint64_t seed = baseSeed();
  SCOPED_TRACE(absl::StrCat("FLATSTORE_SEED=", seed));
  auto counters = Counters::create(*ws_);
  ASSERT_OK(counters);

  struct Submitted {
    int id;
    unsigned tables;
    Ending ending;
    TransactionHandle handle;
  };
  std::vector<std::vector<Submitted>> submitted(kSubmitters);
  std::vector<std::thread> threads;
  for (int t = 0; t < kSubmitters; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 7919 + t);
      for (int s = 0; s < kPerSubmitter; ++s) {
        int id = t * kPerSubmitter + s;
        int declaration = static_cast<int>(rng() % kDeclarations);
        unsigned tables = declaredTables(declaration);
        Ending ending = rng() % 2 == 0 ? Ending::kGood : static_cast<Ending>(1 + rng() % 6);
        if (ending == Ending::kUndeclared && tables == kAllTables) ending = Ending::kReturnError;
        const Counters* c = &*counters;
        auto closure = [id, tables, ending, c](TransactionContext& txn) -> absl::Status {
          FLATSTORE_RETURN_IF_ERROR(c->bump(txn, tables));
          std::string tag = absl::StrCat("c", id);
          if (tables & kMonsterBit) FLATSTORE_RETURN_IF_ERROR(createMonster(txn, tag, 2, ""));
          if (tables & kDocBit) FLATSTORE_RETURN_IF_ERROR(createDoc(txn, tag, id));
          if (tables & kEventBit) FLATSTORE_RETURN_IF_ERROR(createEvent(txn, tag, id));
          switch (ending) {
            case Ending::kGood:
              return absl::OkStatus();
            case Ending::kReturnError:
              return absl::InternalError(absl::StrCat("planned failure ", id));
            case Ending::kThrowStd:
              throw std::runtime_error(absl::StrCat("thrown ", id));
            case Ending::kThrowOther:
              throw 42;
            case Ending::kAbort:
              return txn.abort(absl::StrCat("aborted ", id));
            case Ending::kFailedSubmit:
              if (tables & kMonsterBit) {
                return txn.submit(MonsterChangeRequest::deletion("missing", 9)).status();
              }
              if (tables & kDocBit)
                return txn.submit(DocChangeRequest::deletion("missing")).status();
              return txn.submit(EventChangeRequest::deletion(int64_t{1} << 40)).status();
            case Ending::kUndeclared:
              if ((tables & kMonsterBit) == 0) return createMonster(txn, "undeclared", 3, "");
              if ((tables & kDocBit) == 0) return createDoc(txn, "undeclared", 0);
              return createEvent(txn, "undeclared", 0);
          }
          return absl::InternalError("unknown ending");
        };
        submitted[t].push_back(
            {id, tables, ending, performDeclared(*ws_, declaration, std::move(closure))});
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<TransactionHandle> handles;
  for (const auto& ss : submitted) {
    for (const Submitted& s : ss) handles.push_back(s.handle);
  }
  waitAllOrDie(handles, "closures mixed with failing ones");

  Counters::Values expected;
  std::set<std::string> monsters, docs, events;
  for (const auto& ss : submitted) {
    for (const Submitted& s : ss) {
      auto r = s.handle.wait();
      std::string msg(r.status().message());
      std::string id = absl::StrCat(s.id);
      SCOPED_TRACE(absl::StrCat("closure ", s.id, " on ", tableNames(s.tables)));
      switch (s.ending) {
        case Ending::kGood: {
          ASSERT_OK(r);
          int n = std::popcount(s.tables);
          EXPECT_EQ(r->inserted, n);
          EXPECT_EQ(r->updated, n);
          std::string tag = absl::StrCat("c", s.id);
          if (s.tables & kMonsterBit) {
            ++expected.monster;
            monsters.insert(tag);
          }
          if (s.tables & kDocBit) {
            ++expected.doc;
            docs.insert(tag);
          }
          if (s.tables & kEventBit) {
            ++expected.event;
            events.insert(tag);
          }
          break;
        }
        case Ending::kReturnError:
          EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
          EXPECT_THAT(msg, HasSubstr(absl::StrCat("planned failure ", id)));
          break;
        case Ending::kThrowStd:
          EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
          EXPECT_THAT(msg, HasSubstr(absl::StrCat("thrown ", id)));
          break;
        case Ending::kThrowOther:
          EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
          EXPECT_THAT(msg, HasSubstr("non-standard exception"));
          break;
        case Ending::kAbort:
          EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
          EXPECT_THAT(msg, HasSubstr(absl::StrCat("aborted ", id)));
          break;
        case Ending::kFailedSubmit:
          EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
          EXPECT_THAT(msg, HasSubstr("to delete"));
          break;
        case Ending::kUndeclared:
          EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
          EXPECT_THAT(msg, HasSubstr("was not declared"));
          break;
      }
    }
  }

  // The tables were released: one more closure on all of them runs and commits.
  ASSERT_OK(waitOrDie(ws_->performChanges<Event, Doc, Monster>(
                          [&](TransactionContext& txn) { return counters->bump(txn, kAllTables); }),
                      "a closure after the failing ones"));
  ++expected.monster;
  ++expected.doc;
  ++expected.event;

  auto counts = counters->read(*ws_);
  ASSERT_OK(counts);
  EXPECT_EQ(counts->monster, expected.monster);
  EXPECT_EQ(counts->doc, expected.doc);
  EXPECT_EQ(counts->event, expected.event);

  std::set<std::string> got_monsters, got_docs, got_events;
  auto all_monsters = ws_->fetch<Monster>().all();
  ASSERT_OK(all_monsters);
  for (const auto& m : *all_monsters) {
    if (m->name() != "counter") got_monsters.insert(std::string(m->name()));
  }
  auto all_docs = ws_->fetch<Doc>().all();
  ASSERT_OK(all_docs);
  for (const auto& d : *all_docs) {
    if (d->id() != "counter") got_docs.insert(std::string(d->id()));
  }
  auto all_events = ws_->fetch<Event>().all();
  ASSERT_OK(all_events);
  for (const auto& e : *all_events) {
    if (e->kind() != "counter") got_events.insert(std::string(e->kind()));
  }
  EXPECT_EQ(got_monsters, monsters);
  EXPECT_EQ(got_docs, docs);
  EXPECT_EQ(got_events, events);
}

// Pipelining: a closure runs as soon as the previous closure on its table is in the
// writer's mailbox, on a snapshot without that closure's changes. Here each closure
// reads the orc the previous one wrote, so each run that starts early has read a stale
// orc and must run again after that commit: every closure must see the hp its
// predecessor wrote, and the orc must end at the last one's.
TEST_F(GroupCommitTest, PipelinedClosureThatReadWhatItsPredecessorWritesRunsAgain) {
  constexpr int kChain = 40;
  absl::Notification gate;
  auto gate_handle = ws_->performChanges<Monster>([&](TransactionContext&) -> absl::Status {
    if (!gate.WaitForNotificationWithTimeout(kBoundedWait)) {
      return absl::DeadlineExceededError("the gate was never opened");
    }
    return absl::OkStatus();
  });
  std::vector<int> seen(kChain, -2);  // per closure, the hp of its last run (-1: no orc)
  std::atomic<int> runs{0};
  std::vector<TransactionHandle> handles = {gate_handle};
  for (int i = 0; i < kChain; ++i) {
    handles.push_back(ws_->performChanges<Monster>([&, i](TransactionContext& txn) -> absl::Status {
      runs.fetch_add(1);
      FLATSTORE_ASSIGN_OR_RETURN(auto orc, txn.get<Monster>("orc", 1));
      seen[static_cast<size_t>(i)] = orc == nullptr ? -1 : orc->hp();
      auto r = MonsterChangeRequest::upsert();
      r.setName("orc").setRealm(1).setHp(static_cast<int16_t>(i));
      return txn.submit(r).status();
    }));
  }
  gate.Notify();
  waitAllOrDie(handles, "the chain");
  for (const TransactionHandle& h : handles) ASSERT_OK(h.wait());
  for (int i = 0; i < kChain; ++i) {
    EXPECT_EQ(seen[static_cast<size_t>(i)], i - 1) << "closure " << i;
  }
  auto orc = ws_->get<Monster>("orc", 1);
  ASSERT_OK(orc);
  ASSERT_NE(*orc, nullptr);
  EXPECT_EQ((*orc)->hp(), kChain - 1);
  RecordProperty("runs", runs.load());
}

}  // namespace
}  // namespace flatstore::testing
