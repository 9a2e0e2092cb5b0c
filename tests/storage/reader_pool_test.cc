// The pools of read-only connections: a growing pool (closures' snapshots) opens a
// connection when none is free and closes those beyond its size once they sat idle.
#include "runtime/reader_pool.h"

#include <memory>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "runtime/catalog.h"
#include "tests/support/temp_dir.h"

namespace flatstore::internal {
namespace {

using ::flatstore::testing::TempDir;

class ReaderPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("pool.db");
    auto c = Connection::open(path_, /*read_only=*/false);
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(initializeDatabase(**c, /*synchronous_full=*/false).ok());
    writer_ = std::move(*c);  // keeps the WAL file in place while readers open
  }

  // Holds `n` leases at once, then returns them all.
  static void leaseAtOnce(ReaderPool& pool, int n) {
    std::vector<ReaderPool::Lease> leases;
    for (int i = 0; i < n; ++i) leases.push_back(pool.checkout());
  }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<Connection> writer_;
};

TEST_F(ReaderPoolTest, GrowingPoolClosesConnectionsIdleBeyondItsSize) {
  auto pool = ReaderPool::open(path_, 1, /*metrics=*/nullptr, /*grows=*/true,
                               /*idle_close=*/absl::Milliseconds(50));
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ((*pool)->connections(), 1);
  // Four closures at once: three more connections, kept while they are in use.
  leaseAtOnce(**pool, 4);
  EXPECT_EQ((*pool)->connections(), 4);
  leaseAtOnce(**pool, 4);
  EXPECT_EQ((*pool)->connections(), 4);
  // Once they sat idle past idle_close, the next returned lease closes all but the
  // pool's size (the one it returns is the most recently used).
  absl::SleepFor(absl::Milliseconds(80));
  leaseAtOnce(**pool, 1);
  EXPECT_EQ((*pool)->connections(), 1);
  // It grows again when needed.
  leaseAtOnce(**pool, 3);
  EXPECT_EQ((*pool)->connections(), 3);
}

}  // namespace
}  // namespace flatstore::internal
