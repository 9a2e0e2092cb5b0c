// Writes are verified: submit refuses an object that the FlatBuffers verifier rejects
// (tables nested deeper than its limit of 64, a nested_flatbuffer field holding bytes
// that are not a buffer of its type) with InvalidArgument naming the table and what
// failed, before anything reaches the writer; the table stays readable.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "flatstore/workspace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nested_flatstore.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"

namespace flatstore::test::nested {
namespace {

using ::flatstore::testing::TempDir;
using ::testing::HasSubstr;

// A valid Inner buffer, as a nested_flatbuffer field holds it.
std::vector<uint8_t> innerBuffer(int v) {
  flatbuffers::FlatBufferBuilder b;
  InnerT inner;
  inner.v = v;
  b.Finish(Inner::Pack(b, &inner));
  return std::vector<uint8_t>(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
}

// Bytes that are no FlatBuffer: the root offset points past the end.
std::vector<uint8_t> garbage() { return {0xff, 0xff, 0x00, 0x00, 1, 2, 3, 4}; }

// A chain of `depth` nodes; the innermost one's nested buffer is `inner`.
NodeT chain(int depth, std::vector<uint8_t> inner = {}) {
  NodeT root;
  NodeT* node = &root;
  for (int i = 1; i < depth; ++i) {
    node->child = std::make_unique<NodeT>();
    node = node->child.get();
  }
  node->inner = std::move(inner);
  return root;
}

class VerifiedWritesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ws = Workspace::open(dir_.file("verified.db"));
    ASSERT_OK(ws);
    ws_ = std::move(*ws);
    // One valid object to change later.
    ASSERT_OK(ws_->performChangesAndWait<Holder>([](TransactionContext& txn) {
      auto r = HolderChangeRequest::creation();
      r.setId("valid").setInner(innerBuffer(7)).setTree(chain(3, innerBuffer(8)));
      return txn.submit(r).status();
    }));
  }

  // Submits `r` in a closure that then commits; returns submit's status. The closure
  // commits whatever else it submitted.
  absl::Status submitAlone(const HolderChangeRequest& r) {
    absl::Status submitted;
    auto done = ws_->performChangesAndWait<Holder>([&](TransactionContext& txn) {
      submitted = txn.submit(r).status();
      return absl::OkStatus();
    });
    EXPECT_OK(done);
    return submitted;
  }

  // The table is readable and holds exactly `ids`.
  void expectReadable(const std::vector<std::string>& ids) {
    auto all = ws_->fetch<Holder>().all();
    ASSERT_OK(all);
    std::vector<std::string> got;
    for (const auto& h : *all) got.emplace_back(h->id());
    EXPECT_EQ(got, ids);
  }

  TempDir dir_;
  std::unique_ptr<Workspace> ws_;
};

TEST_F(VerifiedWritesTest, NestingDeeperThanTheVerifierLimitIsRefused) {
  // 62 nodes under the root table still verify; 70 do not.
  auto shallow = HolderChangeRequest::creation();
  shallow.setId("shallow").setTree(chain(62));
  EXPECT_OK(submitAlone(shallow));

  auto deep = HolderChangeRequest::creation();
  deep.setId("deep").setTree(chain(70));
  absl::Status s = submitAlone(deep);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("table flatstore.test.nested.Holder"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("fails FlatBuffers verification"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("nest deeper than the verifier's limit of 64"));
  expectReadable({"valid", "shallow"});
}

TEST_F(VerifiedWritesTest, InvalidNestedFlatbufferIsRefused) {
  auto bad = HolderChangeRequest::creation();
  bad.setId("bad").setInner(garbage());
  absl::Status s = submitAlone(bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("table flatstore.test.nested.Holder"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("field inner (nested_flatbuffer of flatstore.test.nested.Inner)"));

  // A nested buffer below nested tables is named by its path.
  auto below = HolderChangeRequest::creation();
  below.setId("below").setTree(chain(2, garbage()));
  s = submitAlone(below);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("field tree.child.inner (nested_flatbuffer"));
  expectReadable({"valid"});
}

// Changes and upserts are checked too, and a refused submit records nothing: the
// closure goes on and commits its other changes.
TEST_F(VerifiedWritesTest, ChangesAndUpsertsAreCheckedAndTheTableStaysReadable) {
  auto done = ws_->performChangesAndWait<Holder>([](TransactionContext& txn) -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(auto valid, txn.get<Holder>("valid"));
    if (valid == nullptr) return absl::NotFoundError("valid");
    auto change = HolderChangeRequest::changeOf(*valid);
    change.setInner(garbage());
    absl::Status s = txn.submit(change).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("field inner"));

    auto upsert = HolderChangeRequest::upsert();
    upsert.setId("valid").setTree(chain(80));
    s = txn.submit(upsert).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("limit of 64"));

    auto fresh = HolderChangeRequest::upsert();
    fresh.setId("fresh").setInner(garbage());
    s = txn.submit(fresh).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;

    auto good = HolderChangeRequest::creation();
    good.setId("good").setInner(innerBuffer(1));
    return txn.submit(good).status();
  });
  ASSERT_OK(done);
  expectReadable({"valid", "good"});
  auto valid = ws_->get<Holder>("valid");
  ASSERT_OK(valid);
  ASSERT_NE(*valid, nullptr);
  ASSERT_NE((*valid)->view().inner_nested_root(), nullptr);
  EXPECT_EQ((*valid)->view().inner_nested_root()->v(), 7);
}

}  // namespace
}  // namespace flatstore::test::nested
