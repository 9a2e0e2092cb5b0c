// WorkspaceFixture: a test with a fresh workspace in a temporary directory.
#ifndef FLATSTORE_TESTS_SUPPORT_WORKSPACE_FIXTURE_H_
#define FLATSTORE_TESTS_SUPPORT_WORKSPACE_FIXTURE_H_

#include <memory>
#include <string>

#include "flatstore/workspace.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace flatstore::testing {

// Opens `ws_` on the file `file` of a fresh directory before each test. A derived
// fixture passes its file name and options to the constructor; one that overrides
// SetUp() calls WorkspaceFixture::SetUp() first. Members of a derived fixture are
// destroyed before `ws_`: a member the workspace may still call into (an executor, a
// callback's state) belongs in a fixture of its own.
class WorkspaceFixture : public ::testing::Test {
 protected:
  explicit WorkspaceFixture(std::string file = "test.db", WorkspaceOptions options = {});

  void SetUp() override;

  // Opens the workspace at path() with the fixture's options (again, after a test
  // reset `ws_`); a failure to open is fatal to the test.
  void open();
  std::string path() const { return dir_.file(file_); }

  TempDir dir_;
  std::unique_ptr<Workspace> ws_;

 private:
  const std::string file_;
  const WorkspaceOptions options_;
};

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_SUPPORT_WORKSPACE_FIXTURE_H_
