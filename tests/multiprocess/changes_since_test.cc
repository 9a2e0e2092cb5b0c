// Workspace::changesSince and latestVersionstamp across processes: the test process (B)
// reads what mp_helper (A) and B itself changed, from the change log in the shared
// file; a versionstamp the pruned log no longer reaches is OutOfRange.
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/multiprocess/process_util.h"

namespace flatstore::bench {
namespace {

using ::flatstore::testing::Child;
using ::flatstore::testing::spawnHelper;
using ::flatstore::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

// Retention small enough that the pruning (every 256 commits) drops almost everything.
constexpr int64_t kRetention = 10;

Versionstamp parseAnswer(const absl::StatusOr<std::string>& line, const std::string& word) {
  EXPECT_TRUE(line.ok()) << line.status();
  std::string text = line.value_or("");
  EXPECT_THAT(text, StartsWith(word + " "));
  auto vs = Versionstamp::parse(text.size() > word.size() ? text.substr(word.size() + 1) : "");
  EXPECT_TRUE(vs.ok()) << text;
  return vs.value_or(Versionstamp());
}

// id -> (rank, versionstamp) of the changed objects.
std::map<std::string, std::pair<int32_t, Versionstamp>> changedOf(const Changes<Doc>& c) {
  std::map<std::string, std::pair<int32_t, Versionstamp>> out;
  for (const auto& d : c.changed) {
    bool fresh =
        out.emplace(std::string(d->id()), std::make_pair(d->rank(), d->versionstamp())).second;
    EXPECT_TRUE(fresh) << "object " << d->id() << " listed twice";
  }
  return out;
}
std::vector<std::string> deletedOf(const Changes<Doc>& c) {
  std::vector<std::string> out;
  for (const auto& key : c.deleted) {
    EXPECT_EQ(key.size(), 1u);
    if (!key.empty()) out.push_back(key[0].toString());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(MultiProcess, ChangesSinceSeesBothProcessesAndRespectsRetention) {
  TempDir dir;
  std::string path = dir.file("changes.db");
  auto ws = Workspace::open(path, {.change_log_retention = kRetention});
  ASSERT_OK(ws);
  auto seeded = (*ws)->performChangesAndWait<Doc>([](TransactionContext& txn) -> absl::Status {
    for (const char* id : {"a", "b", "c"}) {
      auto r = DocChangeRequest::creation();
      r.setId(id).setRank(1);
      if (auto s = txn.submit(r); !s.ok()) return s.status();
    }
    return absl::OkStatus();
  });
  ASSERT_OK(seeded);
  Versionstamp v0 = seeded->versionstamp;

  auto other = spawnHelper({"serve", path, std::to_string(kRetention)});
  ASSERT_OK(other);
  Child& a = **other;
  Versionstamp v_insert = parseAnswer(a.ask("put d 4 1"), "ok");
  Versionstamp v_update = parseAnswer(a.ask("put a 0 5"), "ok");
  Versionstamp v_delete = parseAnswer(a.ask("del b"), "ok");
  EXPECT_LT(v0, v_insert);
  EXPECT_LT(v_insert, v_update);
  EXPECT_LT(v_update, v_delete);
  // Both processes see the other's last commit as the latest.
  EXPECT_EQ(*(*ws)->latestVersionstamp(), v_delete);
  EXPECT_EQ(parseAnswer(a.ask("latest"), "vs"), v_delete);

  // Since B's seed: A's insert and update (current versions) and A's deletion.
  auto since_v0 = (*ws)->changesSince<Doc>(v0);
  ASSERT_OK(since_v0);
  auto changed = changedOf(*since_v0);
  EXPECT_EQ(changed.size(), 2u);
  EXPECT_EQ(changed["a"], std::make_pair(5, v_update));
  EXPECT_EQ(changed["d"], std::make_pair(1, v_insert));
  EXPECT_THAT(deletedOf(*since_v0), ElementsAre("\"b\""));
  EXPECT_EQ(since_v0->through, v_delete);

  // Since the insert: the insert itself is not "after" it.
  auto since_insert = (*ws)->changesSince<Doc>(v_insert);
  ASSERT_OK(since_insert);
  changed = changedOf(*since_insert);
  EXPECT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed.count("a"), 1u);
  EXPECT_THAT(deletedOf(*since_insert), ElementsAre("\"b\""));

  // B changes c and A changes d twice: the next call from `through` sees only those, d
  // once in its current version; `through` advances to the latest commit of either.
  auto own = (*ws)->performChangesAndWait<Doc>([](TransactionContext& txn) -> absl::Status {
    auto c = txn.get<Doc>("c");
    if (!c.ok()) return c.status();
    auto r = DocChangeRequest::changeOf(**c);
    r.setRank(9);
    return txn.submit(r).status();
  });
  ASSERT_OK(own);
  EXPECT_EQ(*(*ws)->latestVersionstamp(), own->versionstamp);
  EXPECT_EQ(parseAnswer(a.ask("latest"), "vs"), own->versionstamp);
  parseAnswer(a.ask("put d 4 2"), "ok");
  Versionstamp v_d = parseAnswer(a.ask("put d 4 3"), "ok");
  auto next = (*ws)->changesSince<Doc>(since_v0->through);
  ASSERT_OK(next);
  changed = changedOf(*next);
  EXPECT_EQ(changed.size(), 2u);
  EXPECT_EQ(changed["c"], std::make_pair(9, own->versionstamp));
  EXPECT_EQ(changed["d"], std::make_pair(3, v_d));
  EXPECT_THAT(deletedOf(*next), IsEmpty());
  EXPECT_GT(next->through, since_v0->through);
  EXPECT_EQ(next->through, v_d);
  EXPECT_EQ(*(*ws)->latestVersionstamp(), v_d);

  // Nothing since the latest.
  auto nothing = (*ws)->changesSince<Doc>(next->through);
  ASSERT_OK(nothing);
  EXPECT_THAT(nothing->changed, IsEmpty());
  EXPECT_THAT(nothing->deleted, IsEmpty());
  EXPECT_EQ(nothing->through, next->through);

  // More than 256 commits: the writer that commits sequence 256 prunes the log down to
  // the last kRetention commits.
  Versionstamp v_bulk = parseAnswer(a.ask("bulk a 300"), "ok");
  EXPECT_GT(v_bulk.commitSequence(), 256u);
  EXPECT_EQ(*(*ws)->latestVersionstamp(), v_bulk);
  for (Versionstamp old : {v0, v_delete, next->through}) {
    auto gone = (*ws)->changesSince<Doc>(old);
    EXPECT_EQ(gone.status().code(), absl::StatusCode::kOutOfRange) << old.toString();
    EXPECT_THAT(std::string(gone.status().message()), HasSubstr("flatstore.bench.Doc"));
    EXPECT_THAT(std::string(gone.status().message()), HasSubstr("no longer in the change log"));
  }
  // What the log still covers is answered.
  Versionstamp recent = parseAnswer(a.ask("latest"), "vs");
  Versionstamp v_del_c = parseAnswer(a.ask("del c"), "ok");
  auto tail = (*ws)->changesSince<Doc>(recent);
  ASSERT_OK(tail);
  EXPECT_THAT(tail->changed, IsEmpty());
  EXPECT_THAT(deletedOf(*tail), ElementsAre("\"c\""));
  EXPECT_EQ(tail->through, v_del_c);
  auto a_now = (*ws)->get<Doc>("a");
  ASSERT_OK(a_now);
  EXPECT_EQ((*a_now)->rank(), 305);
  EXPECT_EQ((*a_now)->versionstamp(), v_bulk);

  ASSERT_OK(a.send("quit"));
  EXPECT_OK(a.waitSuccess());
}

}  // namespace
}  // namespace flatstore::bench
