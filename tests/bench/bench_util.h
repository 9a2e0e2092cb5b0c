// Shared pieces of flatstore-bench: how a benchmark fails, the flatstore helpers every
// scenario file uses, and the scenario registry the driver (main.cc) runs. Timing and
// statistics are in timing.h, the input data in data.h, the hand-written SQLite peer in
// raw_sqlite.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "tests/bench/data.h"
#include "tests/bench/timing.h"

namespace flatstore::bench {

// Prints "flatstore-bench: MESSAGE" and exits 1: a benchmark that cannot do its work
// must not report a figure.
[[noreturn]] void die(const std::string& message);
// die(what + status) unless `s` is ok.
void check(const absl::Status& s, const std::string& what);

// ---------------------------------------------------------------------------------------
// The flatstore side.

std::unique_ptr<Workspace> openWorkspace(const std::string& path, WorkspaceOptions options = {});

// Creates the table (flatstore creates it at first use) outside the timed region.
template <class T>
void touchTable(Workspace& ws) {
  check(ws.fetch<T>().count().status(), "count");
}

template <class T>
absl::Status submitCreation(TransactionContext& txn, const DocData& d) {
  auto r = EntityTraits<T>::ChangeRequest::creation();
  r.setId(d.id).setScore(d.score).setRank(d.rank).setSize(d.size).setRatio(d.ratio).setBody(d.body);
  auto outcome = txn.submit(r);
  if (!outcome.ok()) return outcome.status();
  if (*outcome != SubmitOutcome::kInserted) return absl::InternalError("not inserted");
  return absl::OkStatus();
}

// Creates `docs` in one waited transaction in table T.
template <class T = Doc>
void flatInsertAll(Workspace& ws, const std::vector<DocData>& docs) {
  auto done = ws.performChangesAndWait<T>([&](TransactionContext& txn) -> absl::Status {
    for (const DocData& d : docs) FLATSTORE_RETURN_IF_ERROR(submitCreation<T>(txn, d));
    return absl::OkStatus();
  });
  check(done.status(), "insert");
  if (done->inserted != static_cast<int64_t>(docs.size())) die("insert: wrong count");
}
std::vector<std::shared_ptr<const DocEntity>> flatAll(Workspace& ws);
// die() unless actual == expected.
void expectCount(int64_t actual, int64_t expected, const std::string& what);

// ---------------------------------------------------------------------------------------
// The scenario registry.

// One system's run of a scenario: gets a fresh database path in the run's temporary
// directory (the file does not exist yet) and returns what it measured.
struct System {
  std::string name;
  std::function<Measurement(const std::string& path)> run;
};

struct Scenario {
  std::string name;
  std::vector<System> systems;
};

// A goal compares one figure of (scenario, system) with the same figure of (base
// scenario, base system), as a ratio: ops_per_s ratios should be at least `bound`,
// latency ratios at most `bound`. Checked when both were run. An absolute goal has no
// base: the figure itself is compared with `bound` (in the figure's own unit).
struct Goal {
  enum class Figure { kOpsPerSecond, kP50, kP99, kMax, kExtra };
  std::string scenario, system;
  std::string base_scenario, base_system;
  Figure figure = Figure::kOpsPerSecond;
  double bound = 1;
  bool at_least = true;    // ratio >= bound, else ratio <= bound
  std::string extra_name;  // the figure's name for kExtra
  bool absolute = false;   // compare the figure with `bound`, not with a base's figure
  // Peers whose same ratio is printed beside flatstore's, for reference: each takes the
  // place of `system`, and of `base_system` where that is `system` too.
  std::vector<std::string> reference_systems;
};

struct Registry {
  std::vector<Scenario> scenarios;
  std::vector<Goal> goals;
};

// Scenario files add their scenarios and goals here; main.cc calls each.
void addCoreScenarios(Registry& r);
void addObserveScenarios(Registry& r);
void addContentionScenarios(Registry& r);

}  // namespace flatstore::bench
