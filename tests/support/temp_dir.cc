#include "tests/support/temp_dir.h"

#include <stdlib.h>

#include <filesystem>
#include <system_error>

#include "gtest/gtest.h"

namespace flatstore::testing {

TempDir::TempDir() {
  std::string base = ::testing::TempDir();
  std::string pattern = base + (base.empty() || base.back() == '/' ? "" : "/") + "flatstore-XXXXXX";
  char* made = ::mkdtemp(pattern.data());
  EXPECT_NE(made, nullptr);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace flatstore::testing
