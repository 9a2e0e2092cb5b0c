// Strict serializability over two and three tables.
//
// Twelve accounts (four Monsters, four Docs, four Events) hold numbers in six kinds of
// cells. Writer closures move amounts between cells, within a table and across tables,
// some with the amount derived from a cell they only read; reader closures, snapshots
// and plain fetches check four sums that every writer keeps constant:
//
//   I_xy = sum(Monster.score) + sum(Doc.score)    moved within and across Monster, Doc
//   I_yz = sum(Doc.rank) + sum(Event.at)          moved within and across Doc, Event
//   I_m  = sum(Monster.mana)                      moved within Monster only
//   I_d  = sum(Doc.size)                          moved within Doc only
//
// A reader that saw part of a writer's effect, or a lost update from two writers
// overlapping on a table, breaks a sum. Stronger, each writer records every cell it read;
// after each round the writers are replayed serially in versionstamp order from the
// round's starting state, and every recorded read must equal the replayed state at that
// point, and the replayed end state must equal the database. Closures that share a table
// must also commit in real-time order: if one completed before another was submitted,
// or both came from one thread in that order, the first has the smaller versionstamp.
//
// Each round draws its mix of closures from a seed; the failure message prints it.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "tests/concurrency/concurrency_util.h"

namespace flatstore::testing {
namespace {

constexpr int kAccounts = 4;
constexpr int64_t kStart = 1000;
constexpr int kRounds = 200;
constexpr int kSubmitters = 4;

// An account is an object: 0-3 Monsters, 4-7 Docs, 8-11 Events. A cell is one number
// field of an account: account * 4 + field.
enum Field {
  kMonsterScore = 0,
  kMonsterMana = 1,
  kDocScore = 0,
  kDocRank = 1,
  kDocSize = 2,
  kEventAt = 0
};
constexpr int kMonsterBase = 0;
constexpr int kDocBase = kAccounts;
constexpr int kEventBase = 2 * kAccounts;

unsigned tableOf(int account) {
  return account < kDocBase ? kMonsterBit : account < kEventBase ? kDocBit : kEventBit;
}
int cell(int account, int field) { return account * 4 + field; }
int accountOf(int c) { return c / 4; }

std::string cellName(int c) {
  int a = accountOf(c);
  int f = c % 4;
  switch (tableOf(a)) {
    case kMonsterBit:
      return absl::StrCat("Monster", a - kMonsterBase, f == kMonsterScore ? ".score" : ".mana");
    case kDocBit:
      return absl::StrCat("Doc", a - kDocBase,
                          f == kDocScore  ? ".score"
                          : f == kDocRank ? ".rank"
                                          : ".size");
    default:
      return absl::StrCat("Event", a - kEventBase, ".at");
  }
}

using Cells = std::map<int, int64_t>;

std::string monsterName(int account) { return absl::StrCat("acct", account - kMonsterBase); }
std::string docId(int account) { return absl::StrCat("acct", account - kDocBase); }

// The accounts' Event ids, fixed at setup.
struct Bank {
  std::vector<int64_t> event_ids;

  int eventAccount(int64_t id) const {
    auto it = std::find(event_ids.begin(), event_ids.end(), id);
    return it == event_ids.end() ? -1 : kEventBase + static_cast<int>(it - event_ids.begin());
  }

  void addMonster(const MonsterEntity& m, Cells* out) const {
    int a = kMonsterBase + (m.name().back() - '0');
    (*out)[cell(a, kMonsterScore)] = m.score().has_value() ? *m.score() : INT64_MIN;
    (*out)[cell(a, kMonsterMana)] = m.mana();
  }
  void addDoc(const DocEntity& d, Cells* out) const {
    int a = kDocBase + (d.id().back() - '0');
    (*out)[cell(a, kDocScore)] = d.score();
    (*out)[cell(a, kDocRank)] = d.rank();
    (*out)[cell(a, kDocSize)] = d.size();
  }

  // Reads the cells of one account through `src` (a transaction, snapshot or workspace).
  template <class Source>
  absl::Status readAccount(Source& src, int a, Cells* out) const {
    switch (tableOf(a)) {
      case kMonsterBit: {
        FLATSTORE_ASSIGN_OR_RETURN(auto m, src.template get<Monster>(monsterName(a), 7));
        if (m == nullptr) return absl::NotFoundError(absl::StrCat("no ", monsterName(a)));
        addMonster(*m, out);
        return absl::OkStatus();
      }
      case kDocBit: {
        FLATSTORE_ASSIGN_OR_RETURN(auto d, src.template get<Doc>(docId(a)));
        if (d == nullptr) return absl::NotFoundError(absl::StrCat("no Doc ", docId(a)));
        addDoc(*d, out);
        return absl::OkStatus();
      }
      default: {
        FLATSTORE_ASSIGN_OR_RETURN(auto e, src.template get<Event>(event_ids[a - kEventBase]));
        if (e == nullptr) return absl::NotFoundError(absl::StrCat("no Event ", a - kEventBase));
        (*out)[cell(a, kEventAt)] = e->at();
        return absl::OkStatus();
      }
    }
  }

  // Reads every account of `tables` through `src` with one query per table.
  template <class Source>
  absl::StatusOr<Cells> readTables(Source& src, unsigned tables) const {
    Cells out;
    if (tables & kMonsterBit) {
      FLATSTORE_ASSIGN_OR_RETURN(auto all, src.template fetch<Monster>().all());
      if (all.size() != kAccounts) return absl::DataLossError("wrong number of Monsters");
      for (const auto& m : all) addMonster(*m, &out);
    }
    if (tables & kDocBit) {
      FLATSTORE_ASSIGN_OR_RETURN(auto all, src.template fetch<Doc>().all());
      if (all.size() != kAccounts) return absl::DataLossError("wrong number of Docs");
      for (const auto& d : all) addDoc(*d, &out);
    }
    if (tables & kEventBit) {
      FLATSTORE_ASSIGN_OR_RETURN(auto all, src.template fetch<Event>().all());
      if (all.size() != kAccounts) return absl::DataLossError("wrong number of Events");
      for (const auto& e : all) {
        int a = eventAccount(e->rowid());
        if (a < 0) return absl::DataLossError(absl::StrCat("unknown Event ", e->rowid()));
        out[cell(a, kEventAt)] = e->at();
      }
    }
    return out;
  }
};

// The sums of the invariants `tables` covers that differ from their starting value;
// empty when all hold.
std::string brokenInvariants(const Cells& cells, unsigned tables) {
  auto sum = [&](int base, int field) {
    int64_t s = 0;
    for (int i = 0; i < kAccounts; ++i) s += cells.at(cell(base + i, field));
    return s;
  };
  std::string out;
  auto check = [&](const char* name, int64_t got, int64_t want) {
    if (got != want) absl::StrAppend(&out, name, " is ", got, ", not ", want, "; ");
  };
  if ((tables & (kMonsterBit | kDocBit)) == (kMonsterBit | kDocBit)) {
    check("I_xy", sum(kMonsterBase, kMonsterScore) + sum(kDocBase, kDocScore),
          2 * kAccounts * kStart);
  }
  if ((tables & (kDocBit | kEventBit)) == (kDocBit | kEventBit)) {
    check("I_yz", sum(kDocBase, kDocRank) + sum(kEventBase, kEventAt), 2 * kAccounts * kStart);
  }
  if (tables & kMonsterBit) check("I_m", sum(kMonsterBase, kMonsterMana), kAccounts * kStart);
  if (tables & kDocBit) check("I_d", sum(kDocBase, kDocSize), kAccounts * kStart);
  return out;
}

// What one closure does. A move takes `amount` from cell `from` and adds it to cell `to`;
// with `amount_cell` set, the amount is 1 + |value| % 5 of that cell as the closure read
// it instead.
struct Move {
  int from;
  int to;
  int64_t amount;
  int amount_cell = -1;
};
struct Plan {
  bool reader = false;
  int declaration = 0;
  std::vector<Move> moves;
};

// What a writer closure saw and did, for the serial replay.
struct Record {
  Cells observed;
  Cells deltas;
};

// One submitted closure of a round.
struct Closure {
  Plan plan;
  int submitter = 0;
  int index = 0;  // in its submitter's order
  int64_t submitted_tick = 0;
  std::atomic<int64_t> completed_tick{INT64_MAX};
  Record record;  // written by the closure, read after its handle completed
  std::unique_ptr<TransactionHandle> handle;
};

Plan drawPlan(std::mt19937_64& rng) {
  Plan plan;
  plan.reader = rng() % 4 == 0;
  plan.declaration = static_cast<int>(rng() % kDeclarations);
  if (plan.reader) return plan;
  unsigned tables = declaredTables(plan.declaration);
  // The kinds of move the declared tables allow, as (from base, field, to base, field).
  struct Kind {
    int from_base, from_field, to_base, to_field;
  };
  std::vector<Kind> kinds;
  std::vector<Kind> cross;
  if (tables & kMonsterBit) {
    kinds.push_back({kMonsterBase, kMonsterScore, kMonsterBase, kMonsterScore});
    kinds.push_back({kMonsterBase, kMonsterMana, kMonsterBase, kMonsterMana});
  }
  if (tables & kDocBit) {
    kinds.push_back({kDocBase, kDocScore, kDocBase, kDocScore});
    kinds.push_back({kDocBase, kDocRank, kDocBase, kDocRank});
    kinds.push_back({kDocBase, kDocSize, kDocBase, kDocSize});
  }
  if (tables & kEventBit) kinds.push_back({kEventBase, kEventAt, kEventBase, kEventAt});
  if ((tables & kMonsterBit) && (tables & kDocBit)) {
    cross.push_back({kMonsterBase, kMonsterScore, kDocBase, kDocScore});
    cross.push_back({kDocBase, kDocScore, kMonsterBase, kMonsterScore});
  }
  if ((tables & kDocBit) && (tables & kEventBit)) {
    cross.push_back({kDocBase, kDocRank, kEventBase, kEventAt});
    cross.push_back({kEventBase, kEventAt, kDocBase, kDocRank});
  }
  std::set<int> used;  // moves touch distinct cells, so a writer always changes something
  int wanted = 1 + static_cast<int>(rng() % 3);
  for (int attempt = 0; attempt < 20 && static_cast<int>(plan.moves.size()) < wanted; ++attempt) {
    const std::vector<Kind>& from = !cross.empty() && rng() % 2 == 0 ? cross : kinds;
    const Kind& k = from[rng() % from.size()];
    int f = cell(k.from_base + static_cast<int>(rng() % kAccounts), k.from_field);
    int t = cell(k.to_base + static_cast<int>(rng() % kAccounts), k.to_field);
    if (f == t || used.count(f) != 0 || used.count(t) != 0) continue;
    used.insert(f);
    used.insert(t);
    Move m{f, t, 1 + static_cast<int64_t>(rng() % 5)};
    if (rng() % 3 == 0) {
      // The amount comes from a cell of any declared table, possibly one of another
      // table than the move's: a read of A in one table deciding a write in another.
      std::vector<int> candidates;
      for (int a = 0; a < 3 * kAccounts; ++a) {
        if (tables & tableOf(a)) candidates.push_back(cell(a, 0));
      }
      m.amount_cell = candidates[rng() % candidates.size()];
    }
    plan.moves.push_back(m);
  }
  // A writer must write; with no move drawn it reads instead.
  if (plan.moves.empty()) plan.reader = true;
  return plan;
}

// Submits the changed cells of `account` from `values`.
absl::Status writeAccount(TransactionContext& txn, const Bank& bank, int a, const Cells& values) {
  switch (tableOf(a)) {
    case kMonsterBit: {
      FLATSTORE_ASSIGN_OR_RETURN(auto m, txn.get<Monster>(monsterName(a), 7));
      auto c = MonsterChangeRequest::changeOf(*m);
      c.setScore(static_cast<int32_t>(values.at(cell(a, kMonsterScore))))
          .setMana(static_cast<int16_t>(values.at(cell(a, kMonsterMana))));
      return txn.submit(c).status();
    }
    case kDocBit: {
      FLATSTORE_ASSIGN_OR_RETURN(auto d, txn.get<Doc>(docId(a)));
      auto c = DocChangeRequest::changeOf(*d);
      c.setScore(static_cast<int32_t>(values.at(cell(a, kDocScore))))
          .setRank(static_cast<int32_t>(values.at(cell(a, kDocRank))))
          .setSize(values.at(cell(a, kDocSize)));
      return txn.submit(c).status();
    }
    default: {
      FLATSTORE_ASSIGN_OR_RETURN(auto e, txn.get<Event>(bank.event_ids[a - kEventBase]));
      auto c = EventChangeRequest::changeOf(*e);
      c.setAt(values.at(cell(a, kEventAt)));
      return txn.submit(c).status();
    }
  }
}

// Cells of `expected` whose value in `got` differs, described.
std::string differences(const Cells& expected, const Cells& got) {
  std::string out;
  for (const auto& [c, v] : expected) {
    auto it = got.find(c);
    int64_t g = it == got.end() ? INT64_MIN : it->second;
    if (g != v) absl::StrAppend(&out, cellName(c), " is ", g, ", expected ", v, "; ");
  }
  return out;
}

// A writer: reads every account it touches, moves the amounts, writes each account,
// checking after each write that it reads its own writes and that the accounts it has not
// written yet are unchanged (one snapshot for the whole run).
absl::Status runWriter(TransactionContext& txn, const Bank& bank, const Plan& plan,
                       Record* record) {
  std::set<int> accounts;
  std::set<int> written;
  for (const Move& m : plan.moves) {
    accounts.insert(accountOf(m.from));
    accounts.insert(accountOf(m.to));
    written.insert(accountOf(m.from));
    written.insert(accountOf(m.to));
    if (m.amount_cell >= 0) accounts.insert(accountOf(m.amount_cell));
  }
  Cells observed;
  for (int a : accounts) FLATSTORE_RETURN_IF_ERROR(bank.readAccount(txn, a, &observed));
  Cells values = observed;
  Cells deltas;
  for (const Move& m : plan.moves) {
    int64_t amount = m.amount;
    if (m.amount_cell >= 0) amount = 1 + std::abs(observed.at(m.amount_cell)) % 5;
    values[m.from] -= amount;
    values[m.to] += amount;
    deltas[m.from] -= amount;
    deltas[m.to] += amount;
  }
  std::set<int> done;
  for (int a : written) {
    FLATSTORE_RETURN_IF_ERROR(writeAccount(txn, bank, a, values));
    done.insert(a);
    Cells now;
    for (int b : accounts) FLATSTORE_RETURN_IF_ERROR(bank.readAccount(txn, b, &now));
    Cells expected;
    for (const auto& [c, v] : observed) {
      expected[c] = done.count(accountOf(c)) != 0 ? values.at(c) : v;
    }
    std::string diff = differences(expected, now);
    if (!diff.empty()) {
      return absl::DataLossError(
          absl::StrCat("inside the closure, after writing ", cellName(cell(a, 0)), ": ", diff));
    }
  }
  record->observed = std::move(observed);
  record->deltas = std::move(deltas);
  return absl::OkStatus();
}

// A reader: reads its tables with queries, checks the invariants they cover, then reads
// every account again by key and requires the same values (one snapshot).
absl::Status runReader(TransactionContext& txn, const Bank& bank, unsigned tables) {
  FLATSTORE_ASSIGN_OR_RETURN(Cells cells, bank.readTables(txn, tables));
  std::string broken = brokenInvariants(cells, tables);
  if (!broken.empty()) {
    return absl::DataLossError(absl::StrCat("a reader of ", tableNames(tables), " saw ", broken));
  }
  Cells again;
  for (int a = 0; a < 3 * kAccounts; ++a) {
    if (tables & tableOf(a)) FLATSTORE_RETURN_IF_ERROR(bank.readAccount(txn, a, &again));
  }
  std::string diff = differences(cells, again);
  if (!diff.empty()) return absl::DataLossError(absl::StrCat("a reader's reads differ: ", diff));
  return absl::OkStatus();
}

class SerializabilityTest : public ConcurrencyFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ConcurrencyFixture::SetUp());
    auto created = ws_->performChangesAndWait<Monster, Doc, Event>(
        [](TransactionContext& txn) -> absl::Status {
          for (int i = 0; i < kAccounts; ++i) {
            auto m = MonsterChangeRequest::creation();
            m.setName(monsterName(kMonsterBase + i)).setRealm(7).setScore(kStart).setMana(kStart);
            FLATSTORE_RETURN_IF_ERROR(txn.submit(m).status());
            auto d = DocChangeRequest::creation();
            d.setId(docId(kDocBase + i)).setScore(kStart).setRank(kStart).setSize(kStart);
            FLATSTORE_RETURN_IF_ERROR(txn.submit(d).status());
            auto e = EventChangeRequest::creation();
            e.setKind(absl::StrCat("acct", i)).setAt(kStart);
            FLATSTORE_RETURN_IF_ERROR(txn.submit(e).status());
          }
          return absl::OkStatus();
        });
    ASSERT_OK(created);
    auto events = ws_->fetch<Event>().all();
    ASSERT_OK(events);
    ASSERT_EQ(events->size(), static_cast<size_t>(kAccounts));
    bank_.event_ids.resize(kAccounts);
    for (const auto& e : *events) bank_.event_ids[e->kind().back() - '0'] = e->rowid();
  }

  absl::StatusOr<Cells> readAll() {
    Cells cells;
    FLATSTORE_RETURN_IF_ERROR(ws_->snapshot([&](Workspace::Snapshot& s) -> absl::Status {
      FLATSTORE_ASSIGN_OR_RETURN(cells, bank_.readTables(s, kAllTables));
      return absl::OkStatus();
    }));
    return cells;
  }

  // One round: submitters draw and submit closures while a checker takes snapshots and
  // fetches; then the round's writers are replayed. `state` is the state at the start
  // and, on return, at the end.
  void runRound(uint64_t seed, Cells* state);

  Bank bank_;
};

void SerializabilityTest::runRound(uint64_t seed, Cells* state) {
  std::atomic<int64_t> clock{0};
  std::vector<std::vector<std::unique_ptr<Closure>>> closures(kSubmitters);
  absl::Mutex errors_mu;
  std::vector<std::string> errors;
  auto fail = [&](std::string e) {
    absl::MutexLock lock(&errors_mu);
    errors.push_back(std::move(e));
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kSubmitters; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 1000003 + t);
      int count = 2 + static_cast<int>(rng() % 6);
      for (int i = 0; i < count; ++i) {
        auto c = std::make_unique<Closure>();
        c->plan = drawPlan(rng);
        c->submitter = t;
        c->index = i;
        Closure* raw = c.get();
        const Bank* bank = &bank_;
        c->submitted_tick = clock.fetch_add(1);
        TransactionHandle h =
            performDeclared(*ws_, raw->plan.declaration, [raw, bank](TransactionContext& txn) {
              return raw->plan.reader ? runReader(txn, *bank, declaredTables(raw->plan.declaration))
                                      : runWriter(txn, *bank, raw->plan, &raw->record);
            });
        h.onComplete([raw, &clock](const absl::StatusOr<TransactionResult>&) {
          raw->completed_tick.store(clock.fetch_add(1));
        });
        c->handle = std::make_unique<TransactionHandle>(h);
        closures[t].push_back(std::move(c));
        if (rng() % 3 == 0) (void)waitOrDie(h, "a closure of the round");
      }
    });
  }
  // The checker: consistent snapshots across all tables, and single-table fetches.
  threads.emplace_back([&] {
    for (int i = 0; i < 2; ++i) {
      auto all = readAll();
      if (!all.ok()) {
        fail(absl::StrCat("snapshot: ", all.status().ToString()));
      } else if (std::string b = brokenInvariants(*all, kAllTables); !b.empty()) {
        fail(absl::StrCat("a snapshot saw ", b));
      }
      for (unsigned table : {kMonsterBit, kDocBit}) {
        auto one = bank_.readTables(*ws_, table);
        if (!one.ok()) {
          fail(absl::StrCat("fetch: ", one.status().ToString()));
        } else if (std::string b = brokenInvariants(*one, table); !b.empty()) {
          fail(absl::StrCat("a fetch of ", tableNames(table), " saw ", b));
        }
      }
    }
  });
  for (std::thread& t : threads) t.join();
  std::vector<TransactionHandle> handles;
  for (const auto& cs : closures) {
    for (const auto& c : cs) handles.push_back(*c->handle);
  }
  waitAllOrDie(handles, absl::StrCat("the closures of round seed ", seed));
  for (const std::string& e : errors) ADD_FAILURE() << e;

  // Every closure succeeded; collect the writers with their versionstamps.
  struct Committed {
    Versionstamp vs;
    const Closure* closure;
  };
  std::vector<Committed> committed;
  for (const auto& cs : closures) {
    for (const auto& c : cs) {
      auto r = c->handle->wait();
      ASSERT_TRUE(r.ok()) << (c->plan.reader ? "reader" : "writer") << " " << c->submitter << "/"
                          << c->index << " of " << tableNames(declaredTables(c->plan.declaration))
                          << ": " << r.status();
      if (c->plan.reader) continue;
      ASSERT_NE(r->versionstamp, Versionstamp()) << "a writer wrote nothing";
      committed.push_back({r->versionstamp, c.get()});
    }
  }
  std::sort(committed.begin(), committed.end(),
            [](const Committed& a, const Committed& b) { return a.vs < b.vs; });
  for (size_t i = 1; i < committed.size(); ++i) {
    ASSERT_NE(committed[i - 1].vs, committed[i].vs) << "two writers share a versionstamp";
  }

  // Real-time order among writers sharing a table.
  for (const Committed& a : committed) {
    for (const Committed& b : committed) {
      if (a.closure == b.closure) continue;
      unsigned shared =
          declaredTables(a.closure->plan.declaration) & declaredTables(b.closure->plan.declaration);
      if (shared == 0) continue;
      bool before =
          a.closure->completed_tick.load() < b.closure->submitted_tick ||
          (a.closure->submitter == b.closure->submitter && a.closure->index < b.closure->index);
      if (before) {
        EXPECT_LT(a.vs, b.vs) << "writer " << a.closure->submitter << "/" << a.closure->index
                              << " came before " << b.closure->submitter << "/" << b.closure->index
                              << " on " << tableNames(shared) << " but committed after it";
      }
    }
  }

  // The serial replay.
  Cells replay = *state;
  for (const Committed& w : committed) {
    std::string diff = differences(w.closure->record.observed, replay);
    ASSERT_TRUE(diff.empty()) << "writer " << w.closure->submitter << "/" << w.closure->index
                              << " (versionstamp " << w.vs.toString() << ") of "
                              << tableNames(declaredTables(w.closure->plan.declaration))
                              << " read values that differ from the serial order: " << diff;
    for (const auto& [c, d] : w.closure->record.deltas) replay[c] += d;
  }
  auto final_state = readAll();
  ASSERT_OK(final_state);
  std::string diff = differences(replay, *final_state);
  ASSERT_TRUE(diff.empty()) << "the database differs from the serial replay: " << diff;
  EXPECT_EQ(brokenInvariants(*final_state, kAllTables), "");
  *state = std::move(*final_state);
}

TEST_F(SerializabilityTest, RandomMixesOverTwoAndThreeTables) {
  const uint64_t base = baseSeed();
  auto start = readAll();
  ASSERT_OK(start);
  Cells state = *start;
  ASSERT_EQ(brokenInvariants(state, kAllTables), "");
  for (int round = 0; round < kRounds; ++round) {
    uint64_t seed = base + static_cast<uint64_t>(round);
    SCOPED_TRACE(absl::StrCat("round ", round, ", round seed ", seed,
                              "; rerun the same mixes with FLATSTORE_SEED=", base));
    runRound(seed, &state);
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace flatstore::testing
