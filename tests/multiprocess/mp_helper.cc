// The other process of the multi-process tests. Started by the tests with fork + exec;
// it opens the database, prints "ready" and then does what its mode says:
//
//   mp_helper counter PATH M OUT RETRIES
//       Waits for a line "go", then runs M read-increment-write transactions on the Doc
//       "counter" (rank + 1). Writes "VERSIONSTAMP RANK" of each successful one to OUT,
//       prints "done FAILURES RUNS MAX_RUNS" (closure runs, re-runs after conflicts
//       included; the most runs one transaction took) and exits 0 when none failed.
//       RETRIES is WorkspaceOptions::max_conflict_retries, or "default".
//   mp_helper ledger PATH M OUT TABLES RETRIES
//       As counter, on the counters of TABLES: "doc" (the
//       Doc "counter", rank), "monster" (the Monster ("counter", 0), hp) or "both" (each
//       transaction increments both). Each increment also creates an entry for the
//       value it wrote (the Doc "e<value>" with that rank, or the Monster ("e", value)),
//       so a reader of a table's changes can tell every commit apart. The lines of OUT
//       are "VERSIONSTAMP doc VALUE", "VERSIONSTAMP monster VALUE" or both pairs on one
//       line. PATH may be a PostgreSQL URI.
//   mp_helper serve PATH RETENTION
//       Answers one line per command line (see serve() below) until "quit" or EOF.
//   mp_helper crash PATH BASE full|normal ACKFILE
//       Commits transactions with sequence numbers BASE, BASE+1, ... until killed; after
//       each successful one appends its number to ACKFILE and fsyncs it.
//   mp_helper chunked PATH
//       Runs (or resumes) the chunked import of chunked_import.h, says "ready" once the
//       file is open, and "done" when the import finished (usually it is killed first).
//
// Every mode arms alarm(), so a helper that hangs dies instead of outliving its test.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"
#include "tests/multiprocess/chunked_import.h"

namespace {

using flatstore::TransactionContext;
using flatstore::TransactionResult;
using flatstore::Versionstamp;
using flatstore::Workspace;
using flatstore::bench::Doc;
using flatstore::bench::DocChangeRequest;
using flatstore::bench::DocEntity;
using flatstore::test::game::Monster;
using flatstore::test::game::MonsterChangeRequest;

// Longer than any test may take, even under ASan.
constexpr unsigned kAlarmSeconds = 170;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "mp_helper[%d]: %s\n", static_cast<int>(::getpid()), what.c_str());
  std::_Exit(2);
}

void say(const std::string& line) { std::cout << line << "\n" << std::flush; }

std::string oneLine(const absl::Status& s) {
  std::string m(s.message());
  for (char& c : m) {
    if (c == '\n') c = ' ';
  }
  return absl::StrCat(absl::StatusCodeToString(s.code()), " ", m);
}

int64_t toInt(const std::string& text) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(text, &v)) die(absl::StrCat("not a number: ", text));
  return v;
}

std::unique_ptr<Workspace> openOrDie(const std::string& path, flatstore::WorkspaceOptions options) {
  auto ws = Workspace::open(path, options);
  if (!ws.ok()) die(absl::StrCat("open ", path, ": ", ws.status().ToString()));
  return std::move(*ws);
}

// ---------------------------------------------------------------------------------------

// The increments of one transaction, inside it: appends what it wrote to `written`
// (the text after the versionstamp on the transaction's line of OUT).
using Increment = std::function<absl::Status(TransactionContext&, std::string& written)>;

// Waits for "go", runs `m` increments, each its own transaction on tables Ts..., writes
// "VERSIONSTAMP WRITTEN" of each successful one to `out_path` and prints "done FAILURES
// RUNS MAX_RUNS". The exit code: 0 when none failed.
template <class... Ts>
int runIncrements(Workspace& ws, int64_t m, const std::string& out_path,
                  const Increment& increment) {
  say("ready");
  std::string go;
  if (!std::getline(std::cin, go) || go != "go") die("expected 'go'");
  std::string out;
  int failures = 0;
  int64_t runs = 0;
  int64_t max_runs = 0;
  for (int64_t i = 0; i < m; ++i) {
    std::string written;
    int64_t runs_before = runs;
    auto r = ws.performChangesAndWait<Ts...>([&](TransactionContext& txn) -> absl::Status {
      runs += 1;
      written.clear();  // the last run (after conflicts) is the one committed
      return increment(txn, written);
    });
    max_runs = std::max(max_runs, runs - runs_before);
    if (!r.ok()) {
      std::fprintf(stderr, "mp_helper[%d] increment: %s\n", static_cast<int>(::getpid()),
                   r.status().ToString().c_str());
      failures += 1;
      continue;
    }
    absl::StrAppend(&out, r->versionstamp.toString(), written, "\n");
  }
  FILE* f = std::fopen(out_path.c_str(), "w");
  if (f == nullptr || std::fwrite(out.data(), 1, out.size(), f) != out.size() ||
      std::fclose(f) != 0) {
    die(absl::StrCat("cannot write ", out_path));
  }
  say(absl::StrCat("done ", failures, " ", runs, " ", max_runs));
  return failures == 0 ? 0 : 1;
}

// rank + 1 on the Doc "counter", appending " RANK" (" doc RANK" with `entries`, which
// also creates the Doc "e<rank>").
absl::Status incrementDoc(TransactionContext& txn, std::string& written, bool entries) {
  auto c = txn.get<Doc>("counter");
  if (!c.ok()) return c.status();
  if (*c == nullptr) return absl::NotFoundError("no counter");
  auto change = DocChangeRequest::changeOf(**c);
  int32_t value = (*c)->rank() + 1;
  change.setRank(value);
  if (auto s = txn.submit(change); !s.ok()) return s.status();
  absl::StrAppend(&written, entries ? " doc " : " ", value);
  if (!entries) return absl::OkStatus();
  auto entry = DocChangeRequest::creation();
  entry.setId(absl::StrCat("e", value)).setRank(value);
  return txn.submit(entry).status();
}

// hp + 1 on the Monster ("counter", 0), and the Monster ("e", hp); appends " monster HP".
absl::Status incrementMonster(TransactionContext& txn, std::string& written) {
  auto c = txn.get<Monster>("counter", 0);
  if (!c.ok()) return c.status();
  if (*c == nullptr) return absl::NotFoundError("no counter");
  auto change = MonsterChangeRequest::changeOf(**c);
  int16_t value = static_cast<int16_t>((*c)->hp() + 1);
  change.setHp(value);
  if (auto s = txn.submit(change); !s.ok()) return s.status();
  absl::StrAppend(&written, " monster ", value);
  auto entry = MonsterChangeRequest::creation();
  entry.setName("e").setRealm(value).setHp(1);
  return txn.submit(entry).status();
}

// The default options, with max_conflict_retries = `retries` unless that is "default".
flatstore::WorkspaceOptions optionsWithRetries(const std::string& retries) {
  flatstore::WorkspaceOptions options;
  if (retries != "default") options.max_conflict_retries = static_cast<int>(toInt(retries));
  return options;
}

int counter(const std::string& path, int64_t m, const std::string& out_path,
            const std::string& retries) {
  auto ws = openOrDie(path, optionsWithRetries(retries));
  return runIncrements<Doc>(*ws, m, out_path, [](TransactionContext& txn, std::string& written) {
    return incrementDoc(txn, written, /*entries=*/false);
  });
}

int ledger(const std::string& path, int64_t m, const std::string& out_path,
           const std::string& tables, const std::string& retries) {
  auto ws = openOrDie(path, optionsWithRetries(retries));
  auto doc = [](TransactionContext& txn, std::string& written) {
    return incrementDoc(txn, written, /*entries=*/true);
  };
  if (tables == "doc") return runIncrements<Doc>(*ws, m, out_path, doc);
  if (tables == "monster") return runIncrements<Monster>(*ws, m, out_path, incrementMonster);
  if (tables == "both") {
    return runIncrements<Doc, Monster>(
        *ws, m, out_path, [&doc](TransactionContext& txn, std::string& written) -> absl::Status {
          if (absl::Status s = doc(txn, written); !s.ok()) return s;
          return incrementMonster(txn, written);
        });
  }
  die(absl::StrCat("ledger TABLES must be doc, monster or both, not ", tables));
}

// ---------------------------------------------------------------------------------------

// Commands (one answer line each):
//   fetch ID          -> "obj VS RANK" | "none": reads ID outside any transaction and keeps it
//   cas               -> "won VS" | "lost CODE MESSAGE": rank + 1 on the kept object,
//                        requiring its versionstamp
//   create ID RANK    -> "won VS" | "lost CODE MESSAGE": a creation with requireAbsent()
//   put ID SCORE RANK -> "ok VS": upsert
//   del ID            -> "ok VS": deletion by key
//   bulk ID N         -> "ok VS": N transactions, each rank + 1 on ID; VS of the last
//   grow PREFIX N     -> "ok VS": N transactions, the i-th creates PREFIX<i> with score i
//   churn N           -> "ok VS": N transactions of mixed changes (see churnOne())
//   latest            -> "vs VS": Workspace::latestVersionstamp()
//   quit
// An unexpected error is answered "error CODE MESSAGE".
std::string answer(const absl::StatusOr<TransactionResult>& r, const char* ok_word) {
  if (r.ok()) return absl::StrCat(ok_word, " ", r->versionstamp.toString());
  return absl::StrCat(std::string(ok_word) == "won" ? "lost " : "error ", oneLine(r.status()));
}

absl::StatusOr<TransactionResult> churnOne(Workspace& ws, int64_t i) {
  return ws.performChangesAndWait<Doc>([i](TransactionContext& txn) -> absl::Status {
    auto watched = DocChangeRequest::upsert();
    watched.setId("watched").setScore(100).setRank(static_cast<int32_t>(i));
    if (auto s = txn.submit(watched); !s.ok()) return s.status();
    auto c = DocChangeRequest::upsert();
    c.setId(absl::StrCat("c", i % 7))
        .setScore(static_cast<int32_t>((i * 37) % 50))
        .setRank(static_cast<int32_t>(i))
        .setBody(absl::StrCat("churn ", i));
    if (auto s = txn.submit(c); !s.ok()) return s.status();
    if (i % 3 == 0) {
      auto s = txn.submit(DocChangeRequest::deletion(absl::StrCat("c", (i + 3) % 7)));
      if (!s.ok() && !absl::IsNotFound(s.status())) return s.status();
    }
    return absl::OkStatus();
  });
}

int serve(const std::string& path, int64_t retention) {
  auto ws = openOrDie(path, {.change_log_retention = retention});
  say("ready");
  std::shared_ptr<const DocEntity> kept;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::vector<std::string> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (w.empty()) continue;
    const std::string& cmd = w[0];
    if (cmd == "quit") break;
    if (cmd == "fetch" && w.size() == 2) {
      auto got = ws->get<Doc>(w[1]);
      if (!got.ok()) {
        say(absl::StrCat("error ", oneLine(got.status())));
      } else if (*got == nullptr) {
        kept = nullptr;
        say("none");
      } else {
        kept = *got;
        say(absl::StrCat("obj ", kept->versionstamp().toString(), " ", kept->rank()));
      }
    } else if (cmd == "cas" && w.size() == 1) {
      if (kept == nullptr) die("cas without a fetched object");
      auto r = ws->performChangesAndWait<Doc>([&kept](TransactionContext& txn) {
        auto change = DocChangeRequest::changeOf(*kept);
        change.setRank(kept->rank() + 1).requireVersionstamp(kept->versionstamp());
        return txn.submit(change).status();
      });
      say(answer(r, "won"));
    } else if (cmd == "create" && w.size() == 3) {
      int32_t rank = static_cast<int32_t>(toInt(w[2]));
      std::string id = w[1];
      auto r = ws->performChangesAndWait<Doc>([&](TransactionContext& txn) {
        auto creation = DocChangeRequest::creation();
        creation.setId(id).setRank(rank).requireAbsent();
        return txn.submit(creation).status();
      });
      say(answer(r, "won"));
    } else if (cmd == "put" && w.size() == 4) {
      std::string id = w[1];
      int32_t score = static_cast<int32_t>(toInt(w[2]));
      int32_t rank = static_cast<int32_t>(toInt(w[3]));
      auto r = ws->performChangesAndWait<Doc>([&](TransactionContext& txn) {
        auto up = DocChangeRequest::upsert();
        up.setId(id).setScore(score).setRank(rank);
        return txn.submit(up).status();
      });
      say(answer(r, "ok"));
    } else if (cmd == "del" && w.size() == 2) {
      std::string id = w[1];
      auto r = ws->performChangesAndWait<Doc>([&](TransactionContext& txn) {
        return txn.submit(DocChangeRequest::deletion(id)).status();
      });
      say(answer(r, "ok"));
    } else if (cmd == "bulk" && w.size() == 3) {
      std::string id = w[1];
      int64_t n = toInt(w[2]);
      absl::StatusOr<TransactionResult> r = TransactionResult{};
      for (int64_t i = 0; i < n && r.ok(); ++i) {
        r = ws->performChangesAndWait<Doc>([&](TransactionContext& txn) -> absl::Status {
          auto d = txn.get<Doc>(id);
          if (!d.ok()) return d.status();
          if (*d == nullptr) return absl::NotFoundError(absl::StrCat("no doc ", id));
          auto change = DocChangeRequest::changeOf(**d);
          change.setRank((*d)->rank() + 1);
          return txn.submit(change).status();
        });
      }
      say(answer(r, "ok"));
    } else if (cmd == "grow" && w.size() == 3) {
      std::string prefix = w[1];
      int64_t n = toInt(w[2]);
      absl::StatusOr<TransactionResult> r = TransactionResult{};
      for (int64_t i = 1; i <= n && r.ok(); ++i) {
        r = ws->performChangesAndWait<Doc>([&](TransactionContext& txn) {
          auto d = DocChangeRequest::creation();
          d.setId(absl::StrCat(prefix, i)).setScore(static_cast<int32_t>(i));
          return txn.submit(d).status();
        });
      }
      say(answer(r, "ok"));
    } else if (cmd == "churn" && w.size() == 2) {
      int64_t n = toInt(w[1]);
      absl::StatusOr<TransactionResult> r = TransactionResult{};
      for (int64_t i = 1; i <= n && r.ok(); ++i) r = churnOne(*ws, i);
      say(answer(r, "ok"));
    } else if (cmd == "latest" && w.size() == 1) {
      auto vs = ws->latestVersionstamp();
      say(vs.ok() ? absl::StrCat("vs ", vs->toString())
                  : absl::StrCat("error ", oneLine(vs.status())));
    } else {
      die(absl::StrCat("unknown command: ", line));
    }
  }
  absl::Status s = ws->shutdown();
  if (!s.ok()) die(absl::StrCat("shutdown: ", s.ToString()));
  return 0;
}

// ---------------------------------------------------------------------------------------

// The objects of transaction `seq` (see crash_test.cc): Monsters ("s<seq>", 0) and
// ("s<seq>", 1), Docs "s<seq>-0" and "s<seq>-1" with score seq, and one more on the
// Doc "tally": rank + 1, size = seq.
absl::Status crashTransaction(TransactionContext& txn, int64_t seq) {
  for (int j = 0; j < 2; ++j) {
    auto m = MonsterChangeRequest::creation();
    m.setName(absl::StrCat("s", seq)).setRealm(j).setHp(static_cast<int16_t>(seq % 1000));
    if (auto s = txn.submit(m); !s.ok()) return s.status();
    auto d = DocChangeRequest::creation();
    d.setId(absl::StrCat("s", seq, "-", j))
        .setScore(static_cast<int32_t>(seq))
        .setBody(std::string(100, static_cast<char>('a' + seq % 26)));
    if (auto s = txn.submit(d); !s.ok()) return s.status();
  }
  auto tally = txn.get<Doc>("tally");
  if (!tally.ok()) return tally.status();
  auto t = DocChangeRequest::upsert();
  t.setId("tally").setRank(*tally == nullptr ? 1 : (*tally)->rank() + 1).setSize(seq);
  return txn.submit(t).status();
}

int crash(const std::string& path, int64_t base, const std::string& sync, const std::string& ack) {
  flatstore::WorkspaceOptions options;
  if (sync == "full") {
    options.synchronous = flatstore::Synchronous::kFull;
  } else if (sync != "normal") {
    die(absl::StrCat("synchronous must be full or normal, not ", sync));
  }
  auto ws = openOrDie(path, options);
  // Both tables exist before the kills start.
  if (auto n = ws->fetch<Monster>().count(); !n.ok()) die(n.status().ToString());
  if (auto n = ws->fetch<Doc>().count(); !n.ok()) die(n.status().ToString());
  int fd = ::open(ack.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) die(absl::StrCat("cannot open ", ack));
  say("ready");
  for (int64_t seq = base; seq < base + 1000000; ++seq) {
    auto r = ws->performChangesAndWait<Monster, Doc>(
        [seq](TransactionContext& txn) { return crashTransaction(txn, seq); });
    if (!r.ok()) die(absl::StrCat("transaction ", seq, ": ", r.status().ToString()));
    std::string line = absl::StrCat(seq, "\n");
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
        ::fsync(fd) != 0) {
      die("cannot write the acknowledgement");
    }
  }
  return 0;
}

int chunked(const std::string& path) {
  auto ws = openOrDie(path, {});
  say("ready");
  auto r = ws->performChunked<Doc>(flatstore::testing::kImportName, flatstore::testing::importChunk)
               .wait();
  if (!r.ok()) die(absl::StrCat("import: ", r.status().ToString()));
  say("done");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::alarm(kAlarmSeconds);
  std::vector<std::string> a(argv + 1, argv + argc);
  if (a.size() == 5 && a[0] == "counter") {
    return counter(a[1], toInt(a[2]), a[3], a[4]);
  }
  if (a.size() == 6 && a[0] == "ledger") return ledger(a[1], toInt(a[2]), a[3], a[4], a[5]);
  if (a.size() == 3 && a[0] == "serve") return serve(a[1], toInt(a[2]));
  if (a.size() == 5 && a[0] == "crash") return crash(a[1], toInt(a[2]), a[3], a[4]);
  if (a.size() == 2 && a[0] == "chunked") return chunked(a[1]);
  std::fprintf(
      stderr,
      "usage: mp_helper counter PATH M OUT RETRIES | ledger PATH M OUT doc|monster|both RETRIES |"
      " serve PATH RETENTION |"
      " crash PATH BASE full|normal ACKFILE | chunked PATH\n");
  return 2;
}
