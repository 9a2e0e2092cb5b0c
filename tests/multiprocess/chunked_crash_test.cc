// Chunked background work survives SIGKILL (design section 9): each chunk commits with
// its cursor in one transaction, so after every kill the file holds exactly the objects
// of the chunks whose cursors it holds, and performChunked with the same name resumes
// after the last committed chunk; the import ends with every object created once.
//
// The importer is mp_helper in "chunked" mode (tests/multiprocess/chunked_import.h);
// the delays before the kills come from a seeded RNG, to put the kills at random points
// of the import, not to wait for anything.
#include <csignal>
#include <random>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "docs_flatstore.h"
#include "flatstore/workspace.h"
#include "gtest/gtest.h"
#include "tests/multiprocess/chunked_import.h"
#include "tests/multiprocess/process_util.h"

namespace flatstore {
namespace {

using ::flatstore::bench::Doc;
using ::flatstore::bench::DocFields;
using ::flatstore::testing::Child;
using ::flatstore::testing::importId;
using ::flatstore::testing::integrityCheck;
using ::flatstore::testing::kImportChunk;
using ::flatstore::testing::kImportName;
using ::flatstore::testing::kImportTotal;
using ::flatstore::testing::TempDir;

// The objects a consistent file holds: those of every chunk before its saved cursor
// (all of them once the import finished and its cursor is gone, none before it began).
void expectConsistent(Workspace& ws, bool finished, int* cursor_out) {
  auto saved = ws.dictionary().getString(absl::StrCat("flatstore.chunked.", kImportName));
  ASSERT_OK(saved);
  auto count = ws.fetch<Doc>().count();
  ASSERT_OK(count);
  int cursor = 0;
  if (saved->has_value()) {
    ASSERT_TRUE(absl::SimpleAtoi(**saved, &cursor)) << **saved;
    ASSERT_EQ(cursor % kImportChunk, 0) << "the cursor is not at a chunk boundary";
  } else if (finished || *count > 0) {
    cursor = kImportTotal;  // done: the cursor was removed with the last chunk
  }
  EXPECT_EQ(*count, cursor) << "objects and cursor disagree: a chunk is half committed";
  if (cursor > 0) {
    auto last = ws.get<Doc>(importId(cursor - 1));
    ASSERT_OK(last);
    EXPECT_NE(*last, nullptr);
  }
  if (cursor < kImportTotal) {
    auto next = ws.get<Doc>(importId(cursor));
    ASSERT_OK(next);
    EXPECT_EQ(*next, nullptr);
  }
  *cursor_out = cursor;
}

TEST(ChunkedCrash, KilledImportsResumeAfterTheirLastCommittedChunk) {
  TempDir dir;
  std::string path = dir.file("chunked.db");
  std::mt19937 rng(20241122);
  std::uniform_int_distribution<int> delay_ms(5, 60);
  int kills = 0;
  int cursor = 0;
  bool finished = false;
  for (int round = 0; round < 12 && cursor < kImportTotal; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    auto child = Child::spawn({FLATSTORE_MP_HELPER, "chunked", path});
    ASSERT_OK(child);
    auto ready = (*child)->readLine();
    ASSERT_OK(ready);
    ASSERT_EQ(*ready, "ready");
    absl::SleepFor(absl::Milliseconds(delay_ms(rng)));
    (*child)->kill(SIGKILL);
    auto status = (*child)->waitExit();
    ASSERT_OK(status);
    // The helper either was killed or finished the whole import first.
    finished = WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
    ASSERT_TRUE(finished || (WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL))
        << "the helper " << Child::describeExit(*status);
    kills += finished ? 0 : 1;
    ASSERT_EQ(integrityCheck(path), "ok");
    auto ws = Workspace::open(path);
    ASSERT_OK(ws);
    int now = 0;
    expectConsistent(**ws, finished, &now);
    EXPECT_GE(now, cursor) << "the import went backwards";
    cursor = now;
  }
  std::cout << kills << " kills; the killed imports had reached object " << cursor << " of "
            << kImportTotal << "\n";
  EXPECT_GT(kills, 0);

  // Finish here: the import resumes at the saved cursor, never redoing a chunk (its
  // creations would fail with AlreadyExists).
  auto ws = Workspace::open(path);
  ASSERT_OK(ws);
  if (cursor < kImportTotal) {
    int chunks = 0;
    auto done = (*ws)
                    ->performChunked<Doc>(kImportName,
                                          [&](TransactionContext& txn, std::string& c) {
                                            chunks += 1;
                                            return testing::importChunk(txn, c);
                                          })
                    .wait();
    ASSERT_OK(done);
    EXPECT_EQ(done->inserted, kImportTotal - cursor);
    EXPECT_EQ(chunks, (kImportTotal - cursor + kImportChunk - 1) / kImportChunk);
    int final_cursor = 0;
    expectConsistent(**ws, true, &final_cursor);
    EXPECT_EQ(final_cursor, kImportTotal);
  }
  auto count = (*ws)->fetch<Doc>().where(DocFields::rank >= 0).count();
  ASSERT_OK(count);
  EXPECT_EQ(*count, kImportTotal);
}

}  // namespace
}  // namespace flatstore
