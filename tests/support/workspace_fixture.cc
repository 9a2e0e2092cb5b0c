#include "tests/support/workspace_fixture.h"

#include <utility>

namespace flatstore::testing {

WorkspaceFixture::WorkspaceFixture(std::string file, WorkspaceOptions options)
    : file_(std::move(file)), options_(std::move(options)) {}

void WorkspaceFixture::SetUp() { ASSERT_NO_FATAL_FAILURE(open()); }

void WorkspaceFixture::open() {
  auto ws = Workspace::open(path(), options_);
  ASSERT_TRUE(ws.ok()) << ws.status();
  ws_ = std::move(*ws);
}

}  // namespace flatstore::testing
